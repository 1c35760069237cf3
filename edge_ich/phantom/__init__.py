"""Synthetic non-contrast head CT with hemorrhages and voxel truth (numpy and scipy only).

- `generator`: one case from a seed (`generate_case`), the case record and subtype codes;
- `anatomy`: skull, brain, ventricles, sulci and the mimics a threshold falls for;
- `lesions`: the hemorrhages (epidural, subdural, intraparenchymal, ventricular, subarachnoid);
- `fields`: the grid, smooth noise, shapes and rotations the others draw with;
- `writers`: a case or a dataset on disk in the DICOM, RSNA, PhysioNet and INSTANCE layouts.
"""

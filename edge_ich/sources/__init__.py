"""Where slices come from: the `SliceSource` contract (`volume`), DICOM series (`dicom/`) and
NIfTI volumes (`nifti`). The pipeline sees only `SliceSource`; a new input format is one module
here that yields HU slices with their geometry.
"""

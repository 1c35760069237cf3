"""INSTANCE 2022: `train/data/NNN.nii.gz` scans and `train/label/NNN.nii.gz` binary hemorrhage masks.

The root may be the challenge folder (holding `train/`), the `train/` folder itself, or any
folder holding `data/` and `label/` (as `edge-ich phantom --layout instance` writes).
INSTANCE has voxel labels only: slice labels are derived from the masks when the dataset is
opened (one read of each mask; this also proves each mask matches its scan's grid).
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

from edge_ich.errors import InputError
from edge_ich.sources.volume import Skipped
from training.data.base import (
    Case,
    CaseList,
    MissingPolicy,
    coerce_enum,
    mask_to_labels,
    refuse_or_skip_orphans,
    require_dir,
)
from training.data.niftiutil import check_label_header, list_nifti, load_label, load_scan, nifti_stem, open_scan


def find_instance_dirs(root: Path) -> tuple[Path, Path]:
    """(data dir, label dir) under root, root/train, or as given."""
    root = require_dir(Path(root), "INSTANCE")
    for base in (root / "train", root):
        if (base / "data").is_dir():
            return base / "data", base / "label"
    raise InputError(f"no INSTANCE data/ folder under {root} (expected train/data/NNN.nii.gz)")


def open_instance(root: Path, missing: str | MissingPolicy = "error", unlabelled: bool = False) -> CaseList:
    """One Case per scan; slice labels from its mask. A scan without a mask is left out (counted)
    unless unlabelled=True; a mask without a scan is an error (or counted with missing='skip')."""
    policy = coerce_enum(MissingPolicy, missing, "missing-image policy")
    data_dir, label_dir = find_instance_dirs(root)
    scans = {nifti_stem(p): p for p in list_nifti(data_dir)}
    labels = {nifti_stem(p): p for p in list_nifti(label_dir)} if label_dir.is_dir() else {}
    cases = CaseList(meta={"dataset": "instance"})
    absent = sorted(set(labels) - set(scans))
    if absent:
        refuse_or_skip_orphans(
            cases,
            policy,
            [f"label/{labels[a].name}" for a in absent],
            "mask without a scan",
            f"INSTANCE label/ has {len(absent)} mask(s) with no scan in data/ (e.g. {absent[0]})",
        )
    for name, path in sorted(scans.items()):
        label = labels.get(name)
        if label is None and not unlabelled:
            cases.skipped.append(Skipped(f"data/{path.name}", "scan without a mask"))
            continue
        cases.append(nifti_case("instance", name, path, label, max_code=1))
    return cases


def nifti_case(dataset: str, case_id: str, path: Path, label: Path | None, max_code: int) -> Case:
    """A Case for a NIfTI scan and its label map on the same grid; labels come from the map."""
    scan = open_scan(path)
    slice_labels = subtype_labels = None
    if label is not None:
        check_label_header(scan, label, case_id)
        mask = load_label(path, label, case_id, max_code=max_code)
        slice_labels, subtype_labels = mask_to_labels(mask, subtype_codes=max_code > 1)
    return Case(
        case_id=case_id,
        load=partial(load_scan, path),
        slice_labels=slice_labels,
        subtype_labels=subtype_labels,
        load_mask=partial(load_label, path, label, case_id, max_code=max_code) if label is not None else None,
        meta={
            "dataset": dataset,
            "file": path.name,
            "mask_file": label.name if label else None,
            "n_slices": int(scan.geometry.shape[0]),
            "shape": list(scan.geometry.shape),
            "spacing": [float(v) for v in scan.geometry.spacing],
        },
    )

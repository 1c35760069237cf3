"""PhysioNet CT-ICH (Hssayeni et al., v1.3.1): `ct_scans/NNN.nii`, `masks/NNN.nii`, a per-slice CSV.

`hemorrhage_diagnosis_raw_ct.csv` has PatientNumber, SliceNumber (1-based, in the file's own
slice order), one 0/1 column per subtype, No_Hemorrhage and Fracture_Yes_No. Masks are 0/255.

Orientation: a raw slice `data[:, :, k]` must be turned by 90 degrees to look like the DICOM
image. With `orientation="affine"` (default) the runtime's NiftiVolume does that from the
header's affine, exactly as `edge-ich run --volume` will at deployment; `orientation="rot90"`
ignores the affine and applies numpy's rot90 to each raw slice, for copies whose affine was
lost (spacing then comes from the header's voxel sizes).
"""

from __future__ import annotations

from enum import Enum
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from edge_ich.errors import InputError
from edge_ich.sources.volume import Skipped
from training.data.base import (
    SUBTYPES,
    Case,
    CaseList,
    MissingPolicy,
    Spacing,
    Subtype,
    check_mask,
    coerce_enum,
    parse_flag,
    parse_int,
    read_table,
    refuse_or_skip_orphans,
    require_dir,
)
from training.data.niftiutil import (
    NIFTI_READ_ERRORS,
    check_label_header,
    input_slice_of_display,
    list_nifti,
    load_label,
    load_scan,
    nifti_stem,
    open_scan,
)

CSV_NAME = "hemorrhage_diagnosis_raw_ct.csv"
#: CSV column of each subtype, in Subtype order.
SUBTYPE_COLUMNS = {
    Subtype.EPIDURAL: "Epidural",
    Subtype.INTRAPARENCHYMAL: "Intraparenchymal",
    Subtype.INTRAVENTRICULAR: "Intraventricular",
    Subtype.SUBARACHNOID: "Subarachnoid",
    Subtype.SUBDURAL: "Subdural",
}
REQUIRED = ["PatientNumber", "SliceNumber", *SUBTYPE_COLUMNS.values(), "No_Hemorrhage"]


class Orientation(str, Enum):
    """How a raw PhysioNet slice is turned into the display frame."""

    AFFINE = "affine"
    ROT90 = "rot90"


def _read_labels(path: Path) -> dict[int, dict[int, np.ndarray]]:
    """PatientNumber -> SliceNumber -> uint8 [6] (five subtypes in Subtype order, then any)."""
    _, rows = read_table(path, REQUIRED, "PhysioNet label CSV")
    if not rows:
        raise InputError(f"PhysioNet label CSV {path.name} has no rows")
    out: dict[int, dict[int, np.ndarray]] = {}
    for n, row in enumerate(rows, start=2):
        where = f"{path.name} line {n}"
        patient = parse_int(row["PatientNumber"], where)
        number = parse_int(row["SliceNumber"], where)
        if number < 1:
            raise InputError(f"{where}: SliceNumber must start at 1")
        sub = [parse_flag(row[SUBTYPE_COLUMNS[s]], where) for s in SUBTYPES]
        no_hem = parse_flag(row["No_Hemorrhage"], where)
        label = np.array(sub + [max(max(sub), 1 - no_hem)], dtype=np.uint8)
        slices = out.setdefault(patient, {})
        if number in slices and not np.array_equal(slices[number], label):
            raise InputError(f"{where}: patient {patient} slice {number} is listed twice with different labels")
        slices[number] = label
    return out


def open_physionet(
    root: Path,
    orientation: str | Orientation = "affine",
    missing: str | MissingPolicy = "error",
    labels: Path | None = None,
) -> CaseList:
    """One Case per scan in `ct_scans/`, labels from the diagnosis CSV, masks from `masks/`."""
    root = require_dir(Path(root), "PhysioNet CT-ICH")
    orient = coerce_enum(Orientation, orientation, "orientation")
    policy = coerce_enum(MissingPolicy, missing, "missing-image policy")
    scans_dir = require_dir(root / "ct_scans", "PhysioNet ct_scans")
    masks_dir = root / "masks"
    table = _read_labels(Path(labels) if labels is not None else root / CSV_NAME)
    scans: dict[int, Path] = {}
    for p in list_nifti(scans_dir):
        try:
            scans[int(nifti_stem(p))] = p
        except ValueError:
            raise InputError(f"PhysioNet scan name {p.name} is not a patient number (NNN.nii)") from None
    cases = CaseList(meta={"dataset": "physionet", "orientation": orient.value})
    absent = sorted(set(table) - set(scans))
    if absent:
        refuse_or_skip_orphans(
            cases,
            policy,
            [f"ct_scans/{a:03d}.nii" for a in absent],
            "labelled scan not on disk",
            f"{CSV_NAME} labels {len(absent)} patient(s) with no scan in ct_scans/ (e.g. {absent[0]:03d}.nii)",
        )
    for number, path in sorted(scans.items()):
        if number not in table:
            cases.skipped.append(Skipped(f"ct_scans/{path.name}", "scan without labels in the CSV"))
            continue
        cases.append(_case(number, path, masks_dir, table[number], orient))
    return cases


def _mask_path(masks_dir: Path, scan: Path) -> Path | None:
    if not masks_dir.is_dir():
        return None
    for cand in (
        masks_dir / scan.name,
        masks_dir / (nifti_stem(scan) + ".nii"),
        masks_dir / (nifti_stem(scan) + ".nii.gz"),
    ):
        if cand.is_file():
            return cand
    raise InputError(f"PhysioNet scan {scan.name} has no mask in masks/")


def _case(number: int, path: Path, masks_dir: Path, slices: dict[int, np.ndarray], orient: Orientation) -> Case:
    case_id = f"{number:03d}"
    scan = open_scan(path)
    nz = scan.geometry.shape[0]
    if sorted(slices) != list(range(1, nz + 1)):
        have = sorted(slices)
        raise InputError(
            f"PhysioNet scan {case_id}: the CSV lists slices {have[0]}..{have[-1]} ({len(have)} rows) "
            f"but the scan has {nz} slices"
        )
    mask_path = _mask_path(masks_dir, path)
    if mask_path is not None:
        check_label_header(scan, mask_path, case_id)
    if orient is Orientation.AFFINE:
        k_of_z = input_slice_of_display(scan)
    else:
        k_of_z = np.arange(scan.input_shape[2])
    rows = np.stack([slices[int(k) + 1] for k in k_of_z])
    if orient is Orientation.AFFINE:
        load, load_mask = (
            partial(load_scan, path),
            partial(load_label, path, mask_path, case_id, max_code=1, scale_255=True),
        )
    else:
        load, load_mask = partial(_rot90_scan, path), partial(_rot90_mask, mask_path, case_id)
    return Case(
        case_id=case_id,
        load=load,
        slice_labels=rows[:, 5].copy(),
        subtype_labels=rows[:, :5].copy(),
        load_mask=load_mask if mask_path is not None else None,
        meta={
            "dataset": "physionet",
            "patient_number": number,
            "file": path.name,
            "n_slices": int(len(rows)),
            "shape": [int(len(rows)), *_plane_shape(scan, orient)],
            "orientation": orient.value,
            "mask_file": mask_path.name if mask_path else None,
            "file_slice_of_display_slice": [int(k) for k in k_of_z],
        },
    )


def _plane_shape(scan: Any, orient: Orientation) -> list[int]:
    """(rows, cols) of a display slice under the chosen orientation."""
    if orient is Orientation.AFFINE:
        return [int(v) for v in scan.geometry.shape[1:]]
    return [int(scan.input_shape[1]), int(scan.input_shape[0])]


def _rot90_read(path: Path) -> tuple[np.ndarray, Spacing]:
    """Raw [i, j, k] -> [k, rot90 rows, cols] ignoring the affine; spacing from the voxel sizes."""
    from edge_ich.errors import require

    nib = require("nibabel")
    try:
        img = nib.load(str(path))
        raw = np.asarray(img.dataobj, dtype=np.float32)
    except NIFTI_READ_ERRORS as exc:  # a broken file: its class name only
        raise InputError(f"cannot read {path.name} as NIfTI: {type(exc).__name__}") from None
    if raw.ndim == 4 and raw.shape[3] == 1:
        raw = raw[..., 0]
    if raw.ndim != 3:
        raise InputError(f"{path.name} is not a 3D volume")
    dx, dy, dz = (float(v) for v in img.header.get_zooms()[:3])
    vol = np.ascontiguousarray(np.rot90(raw, k=1, axes=(0, 1)).transpose(2, 0, 1))
    return vol, (dz, dy, dx)


def _rot90_mask(path: Path, case_id: str) -> np.ndarray:
    raw, _ = _rot90_read(path)
    return check_mask((raw > 0).astype(np.float32), tuple(raw.shape), case_id, 1)


def _rot90_scan(path: Path) -> tuple[np.ndarray, Spacing]:
    vol, spacing = _rot90_read(path)
    if not np.all(np.isfinite(vol)):
        raise InputError(f"{path.name} holds non-finite values")
    return vol, spacing

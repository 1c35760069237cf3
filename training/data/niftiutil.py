"""NIfTI scans and their label maps through the runtime's `NiftiVolume` (the `edge-ich run --volume` path).

Scans are read slice by slice with `NiftiVolume.read_hu`, so training sees the display frame
the runtime sees. A label map shares its scan's voxel grid (it was drawn on it), so it is put
into the display frame with the *scan's* orientation, whatever its own header says, and the
result is checked against the runtime's inverse (`NiftiVolume.to_input_grid`).
"""

from __future__ import annotations

import zlib
from pathlib import Path
from typing import Any

import numpy as np
from nibabel.filebasedimages import ImageFileError

from edge_ich.errors import InputError
from training.data.base import Spacing, check_mask, stack_slices

#: What nibabel raises on a broken or truncated file (a user's data problem, not a bug).
NIFTI_READ_ERRORS = (ImageFileError, OSError, EOFError, ValueError, zlib.error)


def open_scan(path: Path) -> Any:
    """The runtime's NiftiVolume for a scan (header only; pixels stay on disk)."""
    from edge_ich.sources.nifti import open_volume

    try:
        return open_volume(path)
    except InputError as exc:  # the runtime's line, told which of many files it is about
        raise InputError(f"{Path(path).name}: {exc}") from None


def _to_display_ornt(scan: Any) -> np.ndarray:
    from nibabel.orientations import axcodes2ornt, io_orientation, ornt_transform

    from edge_ich.sources.nifti import DISPLAY_AXCODES

    return ornt_transform(io_orientation(scan.input_affine), axcodes2ornt(DISPLAY_AXCODES))


def input_slice_of_display(scan: Any) -> np.ndarray:
    """For each display slice z (ascending), the index along the file's own third axis (k).

    Label tables such as PhysioNet's count slices in the file's k order; this maps them.
    """
    ornt = _to_display_ornt(scan)
    axis = int(np.nonzero(ornt[:, 0] == 2)[0][0])
    if axis != 2:
        raise InputError(
            f"{scan.path.name} is not stored as axial slices along its third axis; "
            f"slice numbers in the label table cannot be mapped"
        )
    n = scan.geometry.shape[0]
    z = np.arange(n)
    return (n - 1 - z) if ornt[axis, 1] < 0 else z


def load_scan(path: Path) -> tuple[np.ndarray, Spacing]:
    """HU float32 [Z, Y, X] in the display frame, ascending, and spacing (slice, row, col) mm."""
    scan = open_scan(path)
    try:
        vol = stack_slices(scan.read_hu, scan.geometry.shape[0])
    except InputError as exc:
        raise InputError(f"{Path(path).name}: {exc}") from None
    return vol, tuple(float(v) for v in scan.geometry.spacing)  # type: ignore[return-value]


def check_label_header(scan: Any, label_path: Path, case_id: str) -> None:
    """Refuse a label map whose voxel grid differs from the scan's (header only, cheap)."""
    nib = _nib()
    try:
        img = nib.load(str(label_path))
    except NIFTI_READ_ERRORS as exc:  # a broken file: its class name is enough
        raise InputError(
            f"case {case_id}: cannot read label map {label_path.name} as NIfTI: {type(exc).__name__}"
        ) from None
    shape = tuple(int(v) for v in img.shape)
    if shape != tuple(scan.input_shape):
        raise InputError(f"case {case_id}: label map shape {shape} does not match scan shape {tuple(scan.input_shape)}")


def _nib() -> Any:
    from edge_ich.errors import require

    return require("nibabel")


def load_label(scan_path: Path, label_path: Path, case_id: str, max_code: int, scale_255: bool = False) -> np.ndarray:
    """A label map as uint8 [Z, Y, X] in the scan's display frame (codes 0..max_code).

    scale_255 maps a 0/255 mask (PhysioNet) to 0/1.
    """
    from nibabel.orientations import apply_orientation

    scan = open_scan(scan_path)
    check_label_header(scan, label_path, case_id)
    nib = _nib()
    try:
        raw = np.asanyarray(nib.load(str(label_path)).dataobj)
    except NIFTI_READ_ERRORS as exc:  # truncated gzip, bad header: one line
        raise InputError(f"case {case_id}: cannot read label map {label_path.name}: {type(exc).__name__}") from None
    if raw.ndim == 4:
        raw = raw[..., 0]
    raw = np.asarray(raw, dtype=np.float32)
    if scale_255:
        values = np.unique(raw)
        if not set(values.tolist()) <= {0.0, 255.0, 1.0}:
            raise InputError(f"case {case_id}: mask values are not 0/255")
        raw = (raw > 0).astype(np.float32)
    disp = np.transpose(apply_orientation(raw, _to_display_ornt(scan)), (2, 1, 0))
    mask = check_mask(np.ascontiguousarray(disp), tuple(scan.geometry.shape), case_id, max_code)
    back = scan.to_input_grid(mask)  # the runtime's inverse must give the file's voxels back
    if not np.array_equal(back.reshape(raw.shape), np.rint(raw).astype(np.uint8)):
        raise AssertionError("label map reorientation disagrees with NiftiVolume.to_input_grid")
    return mask


def nifti_stem(path: Path) -> str:
    """File name without .nii or .nii.gz."""
    name = Path(path).name
    for ext in (".nii.gz", ".nii"):
        if name.lower().endswith(ext):
            return name[: -len(ext)]
    return Path(path).stem


def list_nifti(folder: Path) -> list[Path]:
    """.nii and .nii.gz files in a folder (not recursive), sorted by name."""
    return sorted(
        p
        for p in Path(folder).iterdir()
        if p.is_file()
        and (p.name.lower().endswith(".nii") or p.name.lower().endswith(".nii.gz"))
        and not p.name.startswith(".")
    )

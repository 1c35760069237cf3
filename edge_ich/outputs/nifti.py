"""NIfTI mask writer: the mask overlays its input in any viewer (ITK-SNAP, 3D Slicer, FSLeyes, nibabel).

DICOM input: voxel (x=col, y=row, z=sorted slice) with the series' native affine in RAS
(LPS -> RAS flips the first two world axes). NIfTI input: the mask goes back to the input's
own array layout and affine, so it has exactly the input's shape and affine.
"""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

import numpy as np

from edge_ich.errors import require
from edge_ich.outputs.atomic import write_bytes_atomic
from edge_ich.sources.volume import lps_to_ras

NIFTI_XFORM_SCANNER_ANAT = 1
DESCRIPTION = b"edge-ich hemorrhage mask (research use)"
#: Fast gzip: a mostly-empty mask is already tiny at level 1 (40 slices of 512x512: ~50 KB, ~4x faster than level 6).
GZIP_LEVEL = 1


def _as_uint8(mask_zyx: np.ndarray) -> np.ndarray:
    """bool -> 0/1, uint8 kept (a 0..255 probability map stays one); anything else is a caller bug."""
    mask = np.asarray(mask_zyx)
    if mask.ndim != 3:
        raise ValueError(f"mask must be [Z, Y, X], got shape {mask.shape}")
    if mask.dtype == np.bool_:
        return mask.astype(np.uint8)
    if mask.dtype != np.uint8:
        raise ValueError(f"mask must be bool or uint8, got {mask.dtype}")
    return mask


def mask_image(mask_zyx: np.ndarray, source: Any) -> Any:
    """The nibabel Nifti1Image for `mask_zyx` on `source`'s grid (see module docstring)."""
    nib = require("nibabel")
    mask = _as_uint8(mask_zyx)
    if source.kind == "dicom":
        if tuple(mask.shape) != tuple(source.geometry.shape):
            raise ValueError(f"mask shape {mask.shape} does not match the series {tuple(source.geometry.shape)}")
        # [z, y, x] -> (x=col, y=row, z=slice) as a view: a C-ordered [z, y, x] array is already in
        # NIfTI's on-disk (Fortran, x fastest) order, so no copy is made before writing.
        data = np.ascontiguousarray(mask).transpose(2, 1, 0)
        affine = lps_to_ras(np.asarray(source.geometry.affine_lps, dtype=float))
    elif source.kind == "nifti":
        data = np.asarray(source.to_input_grid(mask))
        if tuple(data.shape) != tuple(source.input_shape):
            raise ValueError(f"to_input_grid gave {data.shape}, the input is {tuple(source.input_shape)}")
        data = data.astype(np.uint8, copy=False)
        affine = np.asarray(source.input_affine, dtype=float)
    else:
        raise ValueError(f"unknown source kind {source.kind!r}")
    img = nib.Nifti1Image(data, affine)
    img.set_sform(affine, code=NIFTI_XFORM_SCANNER_ANAT)
    img.set_qform(affine, code=NIFTI_XFORM_SCANNER_ANAT)  # nearest rigid form if sheared (gantry tilt); sform is exact
    hdr = img.header
    hdr.set_data_dtype(np.uint8)
    hdr.set_xyzt_units("mm")
    hdr["descrip"] = DESCRIPTION
    if int(data.max(initial=0)) <= 1:
        hdr.set_intent("label")
    return img


def write_mask_nifti(path: Path, mask_zyx: np.ndarray, source: Any) -> None:
    """Write the mask as .nii or .nii.gz (by `path`'s suffix) atomically, on `source`'s grid."""
    path = Path(path)
    name = path.name.lower()
    if not (name.endswith((".nii", ".nii.gz"))):
        raise ValueError(f"NIfTI mask path must end in .nii or .nii.gz: {path.name}")
    payload = mask_image(mask_zyx, source).to_bytes()
    if name.endswith(".gz"):
        payload = gzip.compress(payload, compresslevel=GZIP_LEVEL, mtime=0)
    write_bytes_atomic(path, payload)

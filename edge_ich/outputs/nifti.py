"""NIfTI mask writer: the mask overlays its input in any viewer (ITK-SNAP, 3D Slicer, FSLeyes, nibabel).

DICOM input: voxel (x=col, y=row, z=sorted slice) with the series' native affine in RAS
(LPS -> RAS flips the first two world axes). NIfTI input: the mask goes back to the input's
own array layout and affine, so it has exactly the input's shape and affine.
"""

from __future__ import annotations

import io
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from edge_ich.analysis.masks import SliceMask
from edge_ich.errors import OutputError, require
from edge_ich.outputs.atomic import atomic_path
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


def mask_image(mask_zyx: np.ndarray | SliceMask, source: Any) -> Any:
    """The nibabel Nifti1Image for `mask_zyx` on `source`'s grid (see module docstring).

    For a SliceMask on a DICOM grid the image holds a zero-stride stand-in of the right shape
    (no memory): its header is the real one, its data are written by `write_mask_nifti`.
    """
    nib = require("nibabel")
    if isinstance(mask_zyx, SliceMask):
        if source.kind != "dicom":
            mask_zyx = np.asarray(mask_zyx)  # a NIfTI input's own grid: the volume is in memory anyway
        elif tuple(mask_zyx.shape) != tuple(source.geometry.shape):
            raise ValueError(f"mask shape {mask_zyx.shape} does not match the series {tuple(source.geometry.shape)}")
        else:
            z, y, x = mask_zyx.shape
            return _image(nib, np.broadcast_to(np.uint8(0), (x, y, z)), source.geometry.affine_lps, label=True)
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
    if source.kind == "dicom":
        return _image(nib, data, source.geometry.affine_lps, label=int(data.max(initial=0)) <= 1)
    return _finish_image(nib.Nifti1Image(data, affine), affine, label=int(data.max(initial=0)) <= 1)


def _image(nib: Any, data: np.ndarray, affine_lps: np.ndarray, label: bool) -> Any:
    affine = lps_to_ras(np.asarray(affine_lps, dtype=float))
    return _finish_image(nib.Nifti1Image(data, affine), affine, label)


def _finish_image(img: Any, affine: np.ndarray, label: bool) -> Any:
    img.set_sform(affine, code=NIFTI_XFORM_SCANNER_ANAT)
    img.set_qform(affine, code=NIFTI_XFORM_SCANNER_ANAT)  # nearest rigid form if sheared (gantry tilt); sform is exact
    hdr = img.header
    hdr.set_data_dtype(np.uint8)
    hdr.set_xyzt_units("mm")
    hdr["descrip"] = DESCRIPTION
    if label:
        hdr.set_intent("label")
    return img


class _Forward(io.RawIOBase):
    """A write-only stream that moves forward only (nibabel seeks to the data offset): a gap is
    written as zeros; subclasses take the bytes in `_take`."""

    def __init__(self) -> None:
        super().__init__()
        self._pos = 0

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = 0) -> int:
        target = offset if whence == 0 else self._pos + offset
        if whence not in (0, 1) or target < self._pos:
            raise io.UnsupportedOperation("a NIfTI stream only moves forward")
        if target > self._pos:
            self.write(bytes(target - self._pos))
        return self._pos

    def write(self, data: Any) -> int:
        b = memoryview(data).cast("B")
        self._take(b)
        self._pos += len(b)
        return len(b)

    def _take(self, b: memoryview) -> None:
        raise NotImplementedError


class _Stream(_Forward):
    """Where the NIfTI bytes go: straight to the file (.nii) or through one gzip stream (.nii.gz).

    The gzip stream is zlib's with the gzip wrapper (mtime 0), so the file is the bytes
    `gzip.compress(whole, GZIP_LEVEL, mtime=0)` gave, without ever holding `whole`."""

    def __init__(self, fileobj: Any, gz: bool) -> None:
        super().__init__()
        self._f = fileobj
        self._z = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 31) if gz else None

    def _take(self, b: memoryview) -> None:
        self._f.write(self._z.compress(b) if self._z is not None else b)

    def finish(self) -> None:
        if self._z is not None:
            self._f.write(self._z.flush())


class _Header(_Forward):
    """Keeps what nibabel writes before the data (the header), counts and drops the rest."""

    def __init__(self, keep: int = 1 << 16) -> None:
        super().__init__()
        self.head = bytearray()
        self._keep = keep

    def _take(self, b: memoryview) -> None:
        room = self._keep - len(self.head)
        if room > 0:
            self.head += b[:room]


def write_mask_nifti(path: Path, mask_zyx: np.ndarray | SliceMask, source: Any) -> None:
    """Write the mask as .nii or .nii.gz (by `path`'s suffix) atomically, on `source`'s grid.

    Streamed: nibabel writes a dense mask slice by slice into the (gzip) stream, a SliceMask is
    written slice by slice after its header, so no whole-volume copy is made either way.
    """
    path = Path(path)
    name = path.name.lower()
    if not (name.endswith((".nii", ".nii.gz"))):
        raise ValueError(f"NIfTI mask path must end in .nii or .nii.gz: {path.name}")
    img = mask_image(mask_zyx, source)
    sparse = isinstance(mask_zyx, SliceMask) and source.kind == "dicom"
    if sparse:
        probe = _Header()
        img.to_stream(probe)  # the zero stand-in: header, then zeros that are only counted
        z, y, x = mask_zyx.shape
        header = bytes(probe.head[: probe.tell() - x * y * z])
    try:
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            stream = _Stream(f, gz=name.endswith(".gz"))
            if sparse:
                stream.write(header)
                empty = bytes(y * x)
                for k in range(z):
                    stream.write(mask_zyx[k].tobytes() if mask_zyx.box(k) is not None else empty)  # type: ignore[union-attr]
            else:
                img.to_stream(stream)
            stream.finish()
    except OSError as exc:
        raise OutputError(f"cannot write {path.name} in {path.parent}: {exc.strerror or exc}") from None

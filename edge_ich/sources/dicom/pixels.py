"""DICOM pixel data -> Hounsfield units (float32), with the known vendor fixes.

Decoding goes through pydicom's pixel backends (pylibjpeg: JPEG 2000, JPEG-LS, JPEG lossless;
RLE natively). Slope/intercept may be multi-valued in the wild: the first value is used.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edge_ich.errors import InputError


def _first_float(value: Any, default: float) -> float:
    """First value of a possibly multi-valued numeric tag, or default when absent/empty."""
    if value is None or value == "":
        return default
    if isinstance(value, (list, tuple)) or hasattr(value, "__getitem__") and not isinstance(value, (str, bytes)):
        try:
            value = value[0]
        except (IndexError, TypeError):
            return default
    try:
        v = float(value)
    except (TypeError, ValueError):
        return default
    return v if np.isfinite(v) else default


def rescale_of(ds: Any) -> tuple[float, float]:
    """(slope, intercept) of a CT image: first value when multi-valued, (1, 0) when absent."""
    slope = _first_float(ds.get("RescaleSlope"), 1.0)
    if slope == 0.0:
        slope = 1.0
    return slope, _first_float(ds.get("RescaleIntercept"), 0.0)


def has_rsna_quirk(ds: Any, intercept: float) -> bool:
    """The RSNA 2019 12-bit shift: BitsStored 12, unsigned, intercept > -100 (values stored 1000 too low, wrapped)."""
    try:
        bits = int(ds.get("BitsStored", 0) or 0)
        rep = int(ds.get("PixelRepresentation", 0) or 0)
    except (TypeError, ValueError):
        return False
    return bits == 12 and rep == 0 and intercept > -100


def _decode(ds: Any) -> np.ndarray:
    """Stored values of a single-frame image, as pydicom decodes them."""
    if "PixelData" not in ds:
        raise InputError("slice has no pixel data")
    try:
        arr = ds.pixel_array
    except (
        ValueError,
        RuntimeError,
        NotImplementedError,
        OSError,
        EOFError,
        KeyError,
        AttributeError,
        TypeError,
    ) as exc:
        ts = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
        name = getattr(ts, "name", None) or str(ts or "unknown transfer syntax")
        raise InputError(f"pixel data could not be decoded ({name}): {type(exc).__name__}") from None
    return np.asarray(arr)


def hu_from_dataset(ds: Any) -> np.ndarray:
    """Hounsfield units of one single-frame CT image, float32 [rows, cols]."""
    arr = _decode(ds)
    rows, cols = int(ds.Rows), int(ds.Columns)
    if arr.shape != (rows, cols):
        raise InputError(f"pixel data shape {tuple(arr.shape)} is not a single {rows}x{cols} grey image")
    slope, intercept = rescale_of(ds)
    if has_rsna_quirk(ds, intercept):
        work = arr.astype(np.int32) + 1000
        work[work >= 4096] -= 4096
        intercept = -1000.0
        arr = work
    hu = arr.astype(np.float32)
    if slope != 1.0:
        hu *= np.float32(slope)
    if intercept != 0.0:
        hu += np.float32(intercept)
    return hu

"""DICOM pixel data -> Hounsfield units (float32), with the known vendor fixes.

Decoding goes through pydicom's pixel backends (pylibjpeg: JPEG 2000, JPEG-LS, JPEG lossless;
RLE natively). Slope/intercept may be multi-valued in the wild: the first value is used.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edge_ich.errors import InputError
from edge_ich.sources.dicom import elements


def rescale_present(ds: Any) -> bool:
    """Whether both RescaleSlope and RescaleIntercept are stated (validated in `elements`)."""
    return elements.first(ds, "RescaleSlope") is not None and elements.first(ds, "RescaleIntercept") is not None


def rescale_of(ds: Any) -> tuple[float, float]:
    """(slope, intercept) of a CT image: first value when multi-valued, (1, 0) when absent.

    The (1, 0) assumption is stated in the report and checked against the pixels by the
    assessability gate (`edge_ich.assess`); a slope of 0 (every pixel one value) is refused here.
    """
    slope = elements.first(ds, "RescaleSlope")
    intercept = elements.first(ds, "RescaleIntercept")
    if slope == 0.0:
        raise InputError("RescaleSlope is 0: every pixel would have the same HU")
    return (1.0 if slope is None else float(slope)), (0.0 if intercept is None else float(intercept))


def has_rsna_quirk(ds: Any, intercept: float) -> bool:
    """The RSNA 2019 12-bit shift: BitsStored 12, unsigned, intercept > -100 (values stored 1000 too low, wrapped)."""
    try:
        bits = elements.first(ds, "BitsStored") or 0
        rep = elements.first(ds, "PixelRepresentation") or 0
    except elements.ElementError:
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
    rows, cols = int(elements.required(ds, "Rows")[0]), int(elements.required(ds, "Columns")[0])
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

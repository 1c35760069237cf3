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


#: Transfer syntaxes whose pixel data `native_stored` may read: little endian, not encapsulated.
_NATIVE_LE = ("1.2.840.10008.1.2", "1.2.840.10008.1.2.1")
_PIXEL_TAG_LE = b"\xe0\x7f\x10\x00"


def native_stored(path: Any, header: Any) -> np.ndarray | None:
    """Stored values of a native 16-bit grey image read straight from the file, exactly as pydicom's
    `pixel_array` gives them (unused high bits cleared, or the sign extended from BitsStored), or None
    when the file is anything else: the caller then decodes it with pydicom.

    Discovery (`discover.read_header`) noted where the pixel data's value lies; the tag and length
    there are checked again, so a file rewritten since falls back to pydicom.
    """
    at = getattr(header, "_edge_ich_native_pixels", None)
    meta = getattr(header, "file_meta", None)
    ts = str(meta.get("TransferSyntaxUID", "")) if meta is not None else ""
    if at is None or ts not in _NATIVE_LE:
        return None
    try:
        rows, cols = elements.first(header, "Rows"), elements.first(header, "Columns")
        bits, stored = elements.first(header, "BitsAllocated"), elements.first(header, "BitsStored")
        rep, spp = elements.first(header, "PixelRepresentation"), elements.first(header, "SamplesPerPixel")
        frames = elements.first(header, "NumberOfFrames")
        photometric = elements.first(header, "PhotometricInterpretation")
    except elements.ElementError:
        return None
    tag_at, value_at, length = at
    if (
        bits != 16
        or rep not in (0, 1)
        or spp not in (None, 1)
        or frames not in (None, 1)
        or photometric not in ("MONOCHROME1", "MONOCHROME2")
        or not isinstance(stored, int)
        or not 1 <= stored <= 16
        or not rows
        or not cols
        or length != int(rows) * int(cols) * 2
    ):
        return None
    try:
        with open(path, "rb") as fp:
            fp.seek(tag_at)
            head = fp.read(value_at - tag_at)
            data = fp.read(length)
    except OSError:
        return None  # gone or unreadable since discovery: pydicom's read says so in its own words
    if head[:4] != _PIXEL_TAG_LE or head[-4:] != length.to_bytes(4, "little") or len(data) != length:
        return None
    raw = np.frombuffer(data, dtype="<u2").astype(np.uint16, copy=False).reshape(int(rows), int(cols))
    if rep == 0:
        return raw if stored == 16 else raw & np.uint16((1 << stored) - 1)
    signed = raw.view(np.int16)
    if stored == 16:
        return signed
    shift = 16 - stored
    return (raw << np.uint16(shift)).view(np.int16) >> np.int16(shift)


def hu_from_dataset(ds: Any, stored: np.ndarray | None = None) -> np.ndarray:
    """Hounsfield units of one single-frame CT image, float32 [rows, cols]; `stored`: its stored
    values when already read (`native_stored`), else pydicom decodes them from `ds`."""
    arr = _decode(ds) if stored is None else stored
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

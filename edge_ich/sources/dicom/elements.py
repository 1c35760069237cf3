"""Every DICOM header element edge-ich reads, validated in one place: presence, multiplicity, range.

A file's elements are checked once during discovery (`problems`); readers then get values through
the getters here, which validate again and never return an unchecked value. Messages name the
element and what is wrong with it, never its value (a value may carry patient data).

Critical elements decide where a slice lies or what its pixels mean: a bad one makes the file
unusable (skipped with the reason, or the series refused). The others are informational (body
part, kernel, compression, dose): a bad one is ignored, and the report says which was ignored.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from edge_ich.errors import InputError

_UID = re.compile(r"^[0-9A-Za-z._\-]{1,64}$")
_CODE = re.compile(r"^[A-Za-z0-9_ ]{0,16}$")


@dataclass(frozen=True)
class Spec:
    """What one element must look like: kind, number of values (min, max; None = any), range."""

    keyword: str
    kind: str  # "float", "int", "code", "uid", "text"
    vm: tuple[int, int | None] = (1, 1)
    lo: float | None = None
    hi: float | None = None
    critical: bool = True


SPECS: dict[str, Spec] = {
    s.keyword: s
    for s in (
        Spec("SOPClassUID", "uid"),
        Spec("SOPInstanceUID", "uid"),
        Spec("SeriesInstanceUID", "uid"),
        Spec("StudyInstanceUID", "uid", critical=False),
        Spec("FrameOfReferenceUID", "uid", critical=False),
        Spec("Modality", "code"),
        Spec("ImageType", "text", (1, None), critical=False),
        Spec("Rows", "int", lo=1, hi=8192),
        Spec("Columns", "int", lo=1, hi=8192),
        Spec("NumberOfFrames", "int", lo=1, hi=1_000_000),
        Spec("ImagePositionPatient", "float", (3, 3), -1e5, 1e5),
        Spec("ImageOrientationPatient", "float", (6, 6), -1.0001, 1.0001),
        Spec("PixelSpacing", "float", (2, 2), 1e-3, 100.0),
        Spec("SliceThickness", "float", lo=0.0, hi=100.0, critical=False),
        Spec("BitsAllocated", "int", lo=1, hi=64),
        Spec("BitsStored", "int", lo=1, hi=64),
        Spec("HighBit", "int", lo=0, hi=63, critical=False),
        Spec("PixelRepresentation", "int", lo=0, hi=1),
        Spec("SamplesPerPixel", "int", lo=1, hi=4),
        Spec("PhotometricInterpretation", "code"),
        Spec("RescaleSlope", "float", (1, None), -1e4, 1e4),  # multi-valued in the wild: first used
        Spec("RescaleIntercept", "float", (1, None), -1e5, 1e5),
        Spec("BodyPartExamined", "code", critical=False),
        Spec("LossyImageCompression", "code", critical=False),
        Spec("LossyImageCompressionRatio", "float", (1, None), 0.0, 1e5, critical=False),
        Spec("ConvolutionKernel", "text", (1, None), critical=False),
        Spec("GantryDetectorTilt", "float", lo=-90.0, hi=90.0, critical=False),
        Spec("CTDIvol", "float", lo=0.0, hi=1e4, critical=False),
        Spec("KVP", "float", lo=0.0, hi=1000.0, critical=False),
        Spec("ContrastBolusAgent", "text", critical=False),
    )
}
_CRITICAL = tuple(k for k, spec in SPECS.items() if spec.critical)


class ElementError(InputError):
    """A header element is missing, has the wrong number of values, or a value out of range."""

    def __init__(self, keyword: str, problem: str) -> None:
        super().__init__(f"{problem} {keyword}" if problem == "missing" else f"invalid {keyword} ({problem})")
        self.keyword = keyword
        self.problem = problem


def _raw_values(value: Any) -> list[Any]:
    """The values of an element as a list (pydicom gives a scalar, a MultiValue, a str or bytes)."""
    if isinstance(value, (str, bytes, bytearray)):
        text = value.decode("latin-1") if isinstance(value, (bytes, bytearray)) else value
        return text.split("\\") if text.strip() else []
    if isinstance(value, Iterable):
        return list(value)
    return [value]


def _convert(spec: Spec, v: Any) -> Any:
    """One value of `spec`'s kind, or ValueError with a short reason (never the value)."""
    if spec.kind in ("float", "int"):
        if isinstance(v, (bytes, bytearray)):
            raise ValueError("not a number")
        try:
            f = float(v.strip() if isinstance(v, str) else v)
        except (TypeError, ValueError, OverflowError):
            raise ValueError("not a number") from None
        if not math.isfinite(f):
            raise ValueError("not a finite number")
        if spec.kind == "int":
            if f != int(f):
                raise ValueError("not a whole number")
            f = int(f)
        if (spec.lo is not None and f < spec.lo) or (spec.hi is not None and f > spec.hi):
            raise ValueError(f"out of range {spec.lo:g} to {spec.hi:g}")
        return f
    text = str(v).strip() if v is not None else ""
    if spec.kind == "uid":
        if not _UID.match(text):
            raise ValueError("not a UID")
        return text
    if spec.kind == "code":
        if not _CODE.match(text):
            raise ValueError("not a code string")
        return text.upper()
    if any(ord(ch) < 32 for ch in text) or len(text) > 256:
        raise ValueError("not plain text")
    return text


def values(ds: Any, keyword: str) -> list[Any] | None:
    """Validated values of `keyword` in `ds`: None when absent or empty; ElementError when invalid."""
    spec = SPECS[keyword]
    try:
        raw = ds.get(keyword)
    except Exception:  # pydicom failed to convert the stored bytes
        raise ElementError(keyword, "unreadable value") from None
    if raw is None:
        return None
    items = _raw_values(raw)
    if spec.kind in ("code", "text", "uid"):
        items = [v for v in items if str(v).strip()] if len(items) > 1 else items
    if not items or (len(items) == 1 and str(items[0]).strip() == ""):
        return None
    lo, hi = spec.vm
    if len(items) < lo or (hi is not None and len(items) > hi):
        want = f"{lo}" if lo == hi else f"{lo} or more" if hi is None else f"{lo} to {hi}"
        raise ElementError(keyword, f"{len(items)} value(s) where {want} expected")
    try:
        return [_convert(spec, v) for v in items]
    except ValueError as exc:
        raise ElementError(keyword, str(exc)) from None


def first(ds: Any, keyword: str) -> Any | None:
    """First validated value of `keyword`, or None when absent."""
    v = values(ds, keyword)
    return v[0] if v else None


def required(ds: Any, keyword: str) -> list[Any]:
    """Validated values of an element that must be present."""
    v = values(ds, keyword)
    if v is None:
        raise ElementError(keyword, "missing")
    return v


def optional(ds: Any, keyword: str) -> Any | None:
    """First value of an informational element; None when absent OR invalid (callers list it via `problems`)."""
    try:
        return first(ds, keyword)
    except ElementError:
        return None


def optional_all(ds: Any, keyword: str) -> list[Any] | None:
    """All values of an informational element; None when absent OR invalid."""
    try:
        return values(ds, keyword)
    except ElementError:
        return None


def problems(ds: Any) -> list[ElementError]:
    """Every element of the table that is present but invalid in `ds` (critical ones first)."""
    found = []
    for keyword in SPECS:
        try:
            values(ds, keyword)
        except ElementError as exc:
            found.append(exc)
    found.sort(key=lambda e: not SPECS[e.keyword].critical)
    return found


def first_critical_problem(ds: Any) -> ElementError | None:
    """The first invalid critical element of a header (in the table's order), or None."""
    for keyword in _CRITICAL:
        try:
            values(ds, keyword)
        except ElementError as exc:
            return exc
    return None


def ignored(headers: Iterable[Any]) -> dict[str, int]:
    """Informational elements that were invalid and so ignored: keyword -> number of slices."""
    out: dict[str, int] = {}
    for ds in headers:
        for exc in problems(ds):
            if not SPECS[exc.keyword].critical:
                out[exc.keyword] = out.get(exc.keyword, 0) + 1
    return out

"""Assessability from the headers: is this a head CT of a kind the model was validated on?

`candidate_problem` runs during discovery on every candidate series (so a folder's head CT is
chosen before a neck or a 16x16 test series); `header_checks` runs on the chosen series and
adds the warnings that do not stop an answer (lossy compression, kernel, slice thickness,
contrast, ignored elements, rescale assumed). All values come through `sources.dicom.elements`.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from typing import Any

from edge_ich.sources.dicom import elements
from edge_ich.sources.findings import Check, Warn

#: BodyPartExamined codes that contain one of these words are a head.
HEAD_WORDS = ("HEAD", "BRAIN", "SKULL", "CRAN")
#: Field of view per side (mm): below the smallest head, above the largest scanner bore.
MIN_FOV_MM = 100.0
MAX_FOV_MM = 500.0
#: Matrix per side and pixel size: coarser cannot show a bleed of reportable size.
MIN_MATRIX = 64
MAX_PIXEL_MM = 4.0
#: Transfer syntaxes whose compression is or may be lossy.
LOSSY_SYNTAXES = {
    "1.2.840.10008.1.2.4.50": "JPEG baseline",
    "1.2.840.10008.1.2.4.51": "JPEG extended",
    "1.2.840.10008.1.2.4.81": "JPEG-LS near-lossless",
    "1.2.840.10008.1.2.4.91": "JPEG 2000 (lossy allowed)",
    "1.2.840.10008.1.2.4.93": "JPEG 2000 Part 2 (lossy allowed)",
    "1.2.840.10008.1.2.4.203": "HTJ2K (lossy allowed)",
}
_SIEMENS = re.compile(r"^[HBJQU][RNVA]?(\d{2})")  # Siemens: H30s, J40s, B60f, Hr38, Br64, Qr40
_SHARP_WORDS = ("BONE", "LUNG", "SHARP", "EDGE", "DETAIL", "HIGH", "ULTRA")
_SOFT_WORDS = ("STANDARD", "SOFT", "SMOOTH", "BRAIN", "HEAD", "STND")


def _common(headers: Sequence[Any], keyword: str) -> Any | None:
    """The most common valid value of an informational element over the headers (None if none)."""
    vals = [elements.optional(h, keyword) for h in headers]
    counts = Counter(v for v in vals if v not in (None, ""))
    return counts.most_common(1)[0][0] if counts else None


def body_part_problem(headers: Sequence[Any]) -> str | None:
    """Non-None when BodyPartExamined names something other than the head."""
    part = _common(headers, "BodyPartExamined")
    if part is None or any(w in str(part) for w in HEAD_WORDS):
        return None
    return f"BodyPartExamined is {part}, not head"


def grid_problem(ds: Any) -> str | None:
    """Non-None when matrix, pixel size or field of view of one slice are not those of a head CT."""
    try:
        rows, cols = int(elements.required(ds, "Rows")[0]), int(elements.required(ds, "Columns")[0])
        ps = elements.required(ds, "PixelSpacing")
    except elements.ElementError:
        return None  # geometry refuses such a slice with the element's name
    return grid_problem_of(rows, cols, float(ps[0]), float(ps[1]))


def grid_problem_of(rows: int, cols: int, row_mm: float, col_mm: float) -> str | None:
    """The matrix / pixel-size / field-of-view rule on numbers (DICOM and NIfTI alike)."""
    if min(rows, cols) < MIN_MATRIX:
        return f"matrix {rows} x {cols} is too coarse for head CT (at least {MIN_MATRIX} x {MIN_MATRIX})"
    if max(row_mm, col_mm) > MAX_PIXEL_MM:
        return f"pixels of {max(row_mm, col_mm):.2f} mm are too coarse (at most {MAX_PIXEL_MM:g} mm)"
    fov = (rows * row_mm, cols * col_mm)
    if min(fov) < MIN_FOV_MM:
        return f"field of view {fov[0]:.0f} x {fov[1]:.0f} mm is smaller than a head (at least {MIN_FOV_MM:g} mm)"
    if max(fov) > MAX_FOV_MM:
        return f"field of view {fov[0]:.0f} x {fov[1]:.0f} mm is larger than any CT field (at most {MAX_FOV_MM:g} mm)"
    return None


def candidate_problem(headers: Sequence[Any]) -> str | None:
    """Why a candidate series is not assessable from its headers alone (body part, grid), or None."""
    if not headers:
        return None
    return body_part_problem(headers) or grid_problem(headers[0])


def kernel_class(name: str) -> str:
    """'soft', 'sharp' or 'unknown' for a ConvolutionKernel name (GE words, Siemens letter+number)."""
    text = name.strip().upper()
    if any(w in text for w in _SHARP_WORDS):
        return "sharp"
    if any(w in text for w in _SOFT_WORDS):
        return "soft"
    m = _SIEMENS.match(text)
    if m:
        num = int(m.group(1))
        return "sharp" if num >= 60 else "soft" if num <= 45 else "unknown"
    return "unknown"


def _transfer_syntax(ds: Any) -> str:
    meta = getattr(ds, "file_meta", None)
    return str(meta.get("TransferSyntaxUID", "") or "") if meta is not None else ""


def rescale_state(headers: Sequence[Any]) -> tuple[str, int]:
    """('present' | 'absent' | 'mixed' | 'zero', slices concerned) for RescaleSlope/RescaleIntercept."""
    zero = absent = 0
    for h in headers:
        slope, intercept = elements.first(h, "RescaleSlope"), elements.first(h, "RescaleIntercept")
        if slope == 0.0:
            zero += 1
        if slope is None or intercept is None:
            absent += 1
    if zero:
        return "zero", zero
    if absent == len(headers):
        return "absent", absent
    if absent:
        return "mixed", absent
    return "present", len(headers)


def header_checks(headers: Sequence[Any], card_range: dict[str, Any]) -> tuple[str | None, list[Check], list[Warn]]:
    """(reason not assessable or None, checks done, warnings) for the chosen series' headers."""
    checks: list[Check] = []
    warns: list[Warn] = []
    n = len(headers)
    problem = candidate_problem(headers)
    part = _common(headers, "BodyPartExamined")
    checks.append(Check("modality", True, "CT"))
    checks.append(
        Check("body part", body_part_problem(headers) is None, str(part) if part else "absent: pixels decide")
    )
    checks.append(Check("matrix and field of view", grid_problem(headers[0]) is None, grid_problem(headers[0]) or "ok"))
    state, count = rescale_state(headers)
    if state == "zero":
        problem = problem or f"RescaleSlope is 0 on {count} of {n} slice(s): every pixel would have the same HU"
    elif state == "mixed":
        problem = problem or f"RescaleSlope/RescaleIntercept absent on {count} of {n} slice(s) only"
    checks.append(Check("rescale", state in ("present", "absent"), state))
    if state == "absent":
        warns.append(
            Warn(
                "rescale_assumed",
                "RescaleSlope/RescaleIntercept absent: stored values taken as HU (slope 1, intercept 0); "
                "checked against air, brain and bone in the pixels",
                "rescale assumed 1/0 (checked)",
            )
        )
    lossy = [h for h in headers if str(elements.optional(h, "LossyImageCompression") or "") == "01"]
    maybe = Counter(
        LOSSY_SYNTAXES[ts]
        for h in headers
        if (ts := _transfer_syntax(h)) in LOSSY_SYNTAXES and str(elements.optional(h, "LossyImageCompression")) != "00"
    )
    if lossy or maybe:
        how = ", ".join(sorted(maybe)) if maybe else "LossyImageCompression 01"
        warns.append(
            Warn(
                "lossy_compression",
                f"lossy compression ({how}) on {max(len(lossy), sum(maybe.values()))} of {n} slice(s): "
                "small or faint bleeds may be blurred away or mimicked",
                "lossy compression",
            )
        )
    checks.append(Check("compression", not (lossy or maybe), "lossy" if lossy or maybe else "lossless or none"))
    kernels = sorted({str(k) for h in headers if (k := elements.optional(h, "ConvolutionKernel"))})
    allowed = [str(k) for k in card_range.get("kernels", [])]
    classes = {k: kernel_class(k) for k in kernels}
    outside = [k for k, c in classes.items() if c != "unknown" and allowed and c not in allowed]
    if outside:
        warns.append(
            Warn(
                "kernel_outside_card",
                f"reconstruction kernel {', '.join(_safe(k) for k in outside)} is {classes[outside[0]]}; "
                f"the model card covers {', '.join(allowed)} kernels",
                f"{classes[outside[0]]} kernel",
            )
        )
    checks.append(
        Check("kernel", not outside, ", ".join(f"{_safe(k)}: {c}" for k, c in classes.items()) or "not stated")
    )
    lo_hi = card_range.get("slice_thickness_mm")
    thick = _common(headers, "SliceThickness")
    if thick and lo_hi and not (float(lo_hi[0]) <= float(thick) <= float(lo_hi[1])):
        warns.append(
            Warn(
                "thickness_outside_card",
                f"slice thickness {float(thick):g} mm is outside the {lo_hi[0]:g}-{lo_hi[1]:g} mm the model card covers",
                f"thickness {float(thick):g} mm outside {lo_hi[0]:g}-{lo_hi[1]:g} mm",
            )
        )
    checks.append(Check("slice thickness", True, f"{float(thick):g} mm" if thick else "not stated"))
    if any(elements.optional(h, "ContrastBolusAgent") for h in headers):
        warns.append(
            Warn(
                "contrast",
                "a contrast agent is recorded: the model is validated on non-contrast CT (contrast mimics blood)",
                "contrast recorded",
            )
        )
    ignored = elements.ignored(headers)
    if ignored:
        what = ", ".join(f"{k} ({v} slice(s))" for k, v in sorted(ignored.items()))
        warns.append(
            Warn("element_ignored", f"invalid informational element(s) ignored: {what}", "header values ignored")
        )
    ctdi = _common(headers, "CTDIvol")
    checks.append(Check("CTDIvol", True, f"{float(ctdi):g} mGy" if ctdi is not None else "not stated"))
    return problem, checks, warns


def _safe(text: str) -> str:
    """A kernel name reduced to safe characters (it is a vendor code, never patient data)."""
    return "".join(ch for ch in text if ch.isalnum() or ch in " -_.")[:24]

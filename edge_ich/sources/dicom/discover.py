"""Find the CT axial image series in a folder: walk it, read headers only, group by SeriesInstanceUID.

Every file that is left out gets a reason (never patient data). Pixel data are not decoded here;
a short peek after the header tells whether pixel data are present and fit in the file.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from edge_ich.errors import InputError, NotAssessable
from edge_ich.sources.dicom import elements
from edge_ich.sources.dicom.shared import ElementPool
from edge_ich.sources.volume import Skipped

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
ENHANCED_CT_STORAGE = "1.2.840.10008.5.1.4.1.1.2.1"
LEGACY_ENHANCED_CT_STORAGE = "1.2.840.10008.5.1.4.1.1.2.2"
MEDIA_STORAGE_DIRECTORY = "1.2.840.10008.1.3.10"

#: |slice normal . patient z| at or above this counts as axial (allows ~45 degrees of gantry/oblique tilt).
AXIAL_MIN_COS = 0.7

_PIXEL_TAG = (0x7FE0, 0x0010)
_ITEM = (0xFFFE, 0xE000)
_SEQ_DELIM = (0xFFFE, 0xE0DD)
_UNDEFINED = 0xFFFFFFFF


class SkipReason(str, Enum):
    """Why a file is not part of any candidate series (closed set, safe to print)."""

    NOT_DICOM = "not DICOM"
    UNREADABLE = "unreadable DICOM header"
    DICOMDIR = "DICOMDIR index file"
    NO_SERIES_UID = "no SeriesInstanceUID"
    NOT_CT = "not CT"
    NOT_IMAGE = "not a CT image object"
    ENHANCED = "Enhanced/multi-frame CT is not supported (export as single-frame CT Image Storage)"
    MULTI_FRAME = "multi-frame image"
    LOCALIZER = "localizer/scout image"
    NOT_AXIAL = "not axial"
    NO_PIXELS = "no pixel data"
    TRUNCATED = "truncated pixel data"
    INVALID_ELEMENT = "invalid header element"


@dataclass
class SeriesCandidate:
    """One CT axial image series found under the root."""

    series_uid: str
    study_uid: str | None
    frame_of_reference_uid: str | None
    files: list[Path]
    modality: str
    n_files: int
    slice_thickness: float | None = None
    derived: bool = False
    headers: dict[Path, Any] = field(default_factory=dict, repr=False, compare=False)
    problem: str | None = None  # why the series is not assessable from its headers alone (gate.header)


@dataclass
class DiscoveryResult:
    """Candidates (CT axial image series, most plausible first) and the files left out, with reasons."""

    candidates: list[SeriesCandidate]
    skipped: list[Skipped]
    other_modalities: dict[str, int] = field(default_factory=dict)  # image files of another modality, by code


def _rel(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.name


def iter_files(root: Path) -> list[Path]:
    """All regular files under root (recursively, sorted, hidden folders included, symlinked dirs not followed)."""
    if root.is_file():
        return [root]
    out: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            p = Path(dirpath) / name
            if p.is_file():
                out.append(p)
    return out


def _pixel_status(
    fp: BinaryIO, size: int, little: bool, implicit: bool
) -> tuple[SkipReason | None, tuple[int, int, int] | None]:
    """Peek at what follows the header: (None if pixel data are present and fit in the file, else why
    not; (tag offset, value offset, length) when the pixel data are native, None when encapsulated or absent)."""
    start = fp.tell()
    head = fp.read(8)
    if len(head) < 8:
        return SkipReason.NO_PIXELS, None
    end = "<" if little else ">"
    group, elem = struct.unpack(end + "HH", head[:4])
    if (group, elem) != _PIXEL_TAG:
        return SkipReason.NO_PIXELS, None  # float pixel data or something else: not a CT image we can read
    if implicit:
        length = struct.unpack(end + "I", head[4:8])[0]
        value_at = start + 8
    else:
        vr = head[4:6]
        if vr in (b"OB", b"OW", b"OF", b"OD", b"OL", b"OV", b"UN", b"UT", b"SQ", b"UC", b"UR"):
            more = fp.read(4)
            if len(more) < 4:
                return SkipReason.TRUNCATED, None
            length = struct.unpack(end + "I", more)[0]
            value_at = start + 12
        else:
            length = struct.unpack(end + "H", head[6:8])[0]
            value_at = start + 8
    if length == 0:
        return SkipReason.NO_PIXELS, None
    if length != _UNDEFINED:
        return (None, (start, value_at, length)) if value_at + length <= size else (SkipReason.TRUNCATED, None)
    # Encapsulated: walk the item headers (offset table + fragments) up to the sequence delimiter.
    pos = value_at
    for _ in range(100000):
        fp.seek(pos)
        item = fp.read(8)
        if len(item) < 8:
            return SkipReason.TRUNCATED, None
        g, e, ln = struct.unpack(end + "HHI", item)
        if (g, e) == _SEQ_DELIM:
            return None, None
        if (g, e) != _ITEM or ln == _UNDEFINED:
            return SkipReason.TRUNCATED, None
        pos += 8 + ln
        if pos > size:
            return SkipReason.TRUNCATED, None
    return SkipReason.TRUNCATED, None


def read_header(path: Path) -> tuple[Any | None, SkipReason | None, str]:
    """Header (no pixel data) of one file, or why it cannot be used; the str adds a safe detail."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    size = path.stat().st_size
    has_magic = False
    try:
        with path.open("rb") as fp:
            preamble = fp.read(132)
            fp.seek(0)
            has_magic = len(preamble) == 132 and preamble[128:132] == b"DICM"
            try:
                ds = pydicom.dcmread(fp, stop_before_pixels=True, force=not has_magic and _looks_raw(preamble))
            except InvalidDicomError:
                return None, SkipReason.NOT_DICOM, ""
            if not has_magic and "SOPClassUID" not in ds and "SeriesInstanceUID" not in ds:
                return None, SkipReason.NOT_DICOM, ""
            cut = fp.tell() >= size and _cut_short(ds)  # before conversion: raw values show a short read
            meta = getattr(ds, "file_meta", None)
            ts = str(meta.get("TransferSyntaxUID", "")) if meta is not None else ""
            if (
                str(getattr(meta, "MediaStorageSOPClassUID", "")) == MEDIA_STORAGE_DIRECTORY
                or str(ds.get("SOPClassUID", "")) == MEDIA_STORAGE_DIRECTORY
            ):
                return None, SkipReason.DICOMDIR, ""
            if ts == "1.2.840.10008.1.2.1.99":  # deflated: no cheap peek, decode decides later
                status = None if "PixelData" in pydicom.dcmread(path, force=True) else SkipReason.NO_PIXELS
            else:
                implicit, little = _encoding(ds, ts)
                status, native_at = _pixel_status(fp, size, little, implicit)
                if native_at is not None and little:
                    ds._edge_ich_native_pixels = native_at  # where `pixels.native_stored` reads the values later
                if status is SkipReason.NO_PIXELS and cut:
                    return ds, SkipReason.TRUNCATED, "file ends inside the header"
    except PermissionError as exc:
        return None, SkipReason.UNREADABLE, type(exc).__name__
    except Exception as exc:
        # Keep the class name only (no values, which could hold patient data).
        return None, (SkipReason.UNREADABLE if has_magic else SkipReason.NOT_DICOM), type(exc).__name__
    if status is not None:
        return ds, status, ""
    return ds, None, ""


def _cut_short(ds: Any) -> bool:
    """pydicom returns what it could read of a cut file: a short last value or missing key tags mean truncation."""
    if not all(k in ds for k in ("SOPClassUID", "SeriesInstanceUID", "Modality")):
        return True
    last = ds.get_item(max(ds.keys()))
    value = getattr(last, "value", None)
    length = getattr(last, "length", None)
    return isinstance(value, (bytes, bytearray)) and length is not None and length != _UNDEFINED and len(value) < length


def _looks_raw(head: bytes) -> bool:
    """A preamble-less DICOM file starts with a group 0x0002 or 0x0008 tag (little endian)."""
    if len(head) < 8:
        return False
    group = struct.unpack("<H", head[:2])[0]
    return group in (0x0002, 0x0008)


def _encoding(ds: Any, ts: str) -> tuple[bool, bool]:
    """(implicit VR, little endian) of the dataset as read from the file."""
    enc = getattr(ds, "original_encoding", None)
    if enc is not None and enc[0] is not None and enc[1] is not None:
        return bool(enc[0]), bool(enc[1])
    return ts == "1.2.840.10008.1.2", ts != "1.2.840.10008.1.2.2"


def axial_normal(ds: Any) -> np.ndarray | None:
    """Unit slice normal (row cosine x column cosine) or None when ImageOrientationPatient is absent/invalid."""
    try:
        iop = elements.values(ds, "ImageOrientationPatient")
    except elements.ElementError:
        return None
    if iop is None:
        return None
    v = np.asarray(iop, dtype=float)
    n = np.cross(v[:3], v[3:])
    norm = float(np.linalg.norm(n))
    if not np.isfinite(norm) or norm < 1e-3:
        return None
    return n / norm


def modality_of(ds: Any) -> str:
    """The Modality code ('' when absent or not a valid code string)."""
    return str(elements.optional(ds, "Modality") or "")


def classify(ds: Any) -> tuple[SkipReason | None, str]:
    """Is this header a single-frame CT axial image? (reason, safe detail) when not."""
    sop = str(elements.optional(ds, "SOPClassUID") or "")
    if not elements.optional(ds, "SeriesInstanceUID"):
        return SkipReason.NO_SERIES_UID, ""
    if sop in (ENHANCED_CT_STORAGE, LEGACY_ENHANCED_CT_STORAGE):
        return SkipReason.ENHANCED, ""
    modality = modality_of(ds)
    if modality != "CT":
        return SkipReason.NOT_CT, f"modality {_safe_code(modality) or 'missing or invalid'}"
    if sop and sop != CT_IMAGE_STORAGE:
        return SkipReason.NOT_IMAGE, f"SOP class {sop}"
    bad = elements.first_critical_problem(ds)
    if bad is not None:
        return SkipReason.INVALID_ELEMENT, str(bad)
    if elements.first(ds, "Rows") is None or elements.first(ds, "Columns") is None:
        return SkipReason.NOT_IMAGE, "no Rows/Columns"
    image_type = [str(x).upper() for x in (elements.optional_all(ds, "ImageType") or [])]
    if "LOCALIZER" in image_type or "SCOUT" in image_type or "TOPOGRAM" in image_type:
        return SkipReason.LOCALIZER, ""
    frames = int(elements.first(ds, "NumberOfFrames") or 1)
    if frames > 1:
        return SkipReason.MULTI_FRAME, f"{frames} frames"
    n = axial_normal(ds)
    if n is not None and abs(n[2]) < AXIAL_MIN_COS:
        plane = "sagittal" if abs(n[0]) >= abs(n[1]) else "coronal"
        return SkipReason.NOT_AXIAL, f"{plane}-like orientation"
    return None, ""


def _safe_code(text: str) -> str:
    """A short code string (modality) reduced to safe characters."""
    return "".join(ch for ch in text if ch.isalnum())[:16]


def _thickness(ds: Any) -> float | None:
    v = elements.optional(ds, "SliceThickness")
    return float(v) if v else None


def _rank_key(c: SeriesCandidate) -> tuple:
    """The stated choice rule: assessable headers first, original before derived, then most files,
    then thinnest slices, then UID."""
    return (
        c.problem is not None,
        c.derived,
        -c.n_files,
        c.slice_thickness if c.slice_thickness is not None else 1e9,
        c.series_uid,
    )


CHOICE_RULE = (
    "head CT by its headers before other series, original before derived images, then most slices, "
    "then thinnest slices, then SeriesInstanceUID"
)


def discover(root: Path) -> DiscoveryResult:
    """Walk root, group CT axial single-frame images by SeriesInstanceUID; list every other file with a reason."""
    root = Path(root)
    if not root.exists():
        raise InputError("the input folder does not exist")
    skipped: list[Skipped] = []
    groups: dict[str, SeriesCandidate] = {}
    others: dict[str, int] = {}
    pool = ElementPool()
    for path in iter_files(root):
        rel = _rel(path, root)
        if path.name.upper() == "DICOMDIR":
            skipped.append(Skipped(rel, SkipReason.DICOMDIR.value))
            continue
        ds, bad, detail = read_header(path)
        if ds is None or bad is not None:
            # A readable header that is not a CT axial image: say that first (but a cut file is a cut file).
            if ds is not None and not (bad is SkipReason.TRUNCATED and detail):
                why, det = classify(ds)
                if why is not None:
                    bad, detail = why, det
            skipped.append(Skipped(rel, _reason(bad, detail), _uid_of(ds)))
            continue
        pool.share(ds)
        why, det = classify(ds)
        if why is not None:
            if why is SkipReason.NOT_CT:  # an image of another modality: the series is not assessable
                code = _safe_code(modality_of(ds)) or "missing"
                others[code] = others.get(code, 0) + 1
            skipped.append(Skipped(rel, _reason(why, det), _uid_of(ds)))
            continue
        add_to_group(groups, path, ds)
    return DiscoveryResult(candidates=rank(groups.values()), skipped=skipped, other_modalities=others)


def _uid_of(ds: Any) -> str | None:
    return None if ds is None else elements.optional(ds, "SeriesInstanceUID")


def add_to_group(groups: dict[str, SeriesCandidate], path: Path, ds: Any) -> SeriesCandidate:
    """Add one classified CT image header to its series candidate (created on first sight)."""
    uid = str(elements.required(ds, "SeriesInstanceUID")[0])
    cand = groups.get(uid)
    if cand is None:
        image_type = [str(x).upper() for x in (elements.optional_all(ds, "ImageType") or [])]
        cand = groups[uid] = SeriesCandidate(
            series_uid=uid,
            study_uid=elements.optional(ds, "StudyInstanceUID"),
            frame_of_reference_uid=elements.optional(ds, "FrameOfReferenceUID"),
            files=[],
            modality="CT",
            n_files=0,
            slice_thickness=_thickness(ds),
            derived=bool(image_type) and image_type[0] == "DERIVED",
        )
    cand.files.append(path)
    cand.headers[path] = ds
    cand.n_files += 1
    return cand


def rank(candidates: Any) -> list[SeriesCandidate]:
    """Candidates in the order of `CHOICE_RULE`, each with its header-level assessability problem set."""
    from edge_ich.sources.dicom.checks import candidate_problem

    out = list(candidates)
    for c in out:
        c.problem = candidate_problem(list(c.headers.values()))
    return sorted(out, key=_rank_key)


def _reason(reason: SkipReason | None, detail: str) -> str:
    if reason is SkipReason.INVALID_ELEMENT and detail:
        return detail  # "invalid <Element> (<what is wrong>)": names the element, never its value
    text = reason.value if reason is not None else "unusable"
    return f"{text} ({detail})" if detail else text


def choose_series(result: DiscoveryResult, series_uid: str | None) -> tuple[SeriesCandidate, list[dict]]:
    """Pick one candidate (by `CHOICE_RULE`, or the asked UID); describe the others and why not chosen."""
    if not result.candidates:
        n = len(result.skipped)
        if n == 0:
            raise InputError("no files found in the input folder")
        counts: dict[str, int] = {}
        for s in result.skipped:
            key = s.reason.split(" (")[0]
            counts[key] = counts.get(key, 0) + 1
        top = ", ".join(f"{k}: {v}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1])[:4])
        if result.other_modalities:
            mods = ", ".join(sorted(result.other_modalities))
            raise NotAssessable(
                f"modality {mods}, not CT: the model is validated on non-contrast head CT only",
                {"kind": "dicom", "skipped": [{"path": s.path, "reason": s.reason} for s in result.skipped]},
            )
        raise InputError(f"no usable CT axial image series in the input folder ({n} file(s) skipped; {top})")
    if series_uid is not None:
        chosen = next((c for c in result.candidates if c.series_uid == series_uid), None)
        if chosen is None:
            raise InputError(
                f"the requested SeriesInstanceUID is not among the {len(result.candidates)} CT axial series found"
            )
        why_not = "another SeriesInstanceUID was requested"
    else:
        chosen = result.candidates[0]
        why_not = f"not first by the rule: {CHOICE_RULE}"
    others = [
        {"series_uid": c.series_uid, "n_files": c.n_files, "reason_not_chosen": why_not}
        for c in result.candidates
        if c is not chosen
    ]
    return chosen, others

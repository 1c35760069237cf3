"""DICOM Segmentation of the hemorrhage mask, referencing the source CT slices.

Written with pydicom alone (`segwriter`, `build_seg_dataset`): the dataset highdicom builds,
without the 0.4 s and 67 MiB highdicom's standard tables cost a cold run. highdicom stays the
reference: `build_seg` builds the same SEG with it, and the tests compare the two attribute by
attribute, read every written SEG back with highdicom (`read_seg_mask`) and check it with dciodvfy.

Frame policy: frames are written only for source slices where the mask is non-empty
(highdicom's `omit_empty_frames`). The SEG still references every source slice in its
ReferencedSeriesSequence, so a reader reconstructs the empty slices as zeros (see
`read_seg_mask`), and the file stays small and fast to write and to send to PACS. An all-empty
mask is written with all frames, since a SEG needs at least one frame.

Frame of reference: highdicom needs a FrameOfReferenceUID. When no source slice carries one
(some anonymised datasets drop it, e.g. the CQ500 slice in pydicom-data), the SEG uses a UID
derived deterministically from the study and series UIDs (same series -> same UID) and logs a
warning; frames still reference their source slices by SOP Instance UID, which is what viewers
match on. Slices that disagree are refused. A missing SliceThickness (highdicom needs it for
the pixel measures) is filled with the slice spacing measured from the positions.
"""

from __future__ import annotations

import logging
import re
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edge_ich.analysis.masks import SliceMask
from edge_ich.errors import InputError, OutputError, require
from edge_ich.outputs.atomic import atomic_path

if TYPE_CHECKING:
    import pydicom

log = logging.getLogger(__name__)

MANUFACTURER = "edge-ich"
SEGMENT_LABEL = "Hemorrhage"
SERIES_DESCRIPTION = "edge-ich hemorrhage segmentation (research use only)"
CONTENT_DESCRIPTION = "Intracranial hemorrhage mask"
_CS_PATTERN = re.compile(r"^[A-Z0-9_ ]{1,16}$")
_NO_METHOD = "not stated in the source images"


def _package_version() -> str:
    try:
        from importlib.metadata import version

        return version("edge-ich")
    except Exception:  # not installed as a distribution (source checkout)
        return "0+unknown"


def _check_mask(mask_zyx: np.ndarray, headers: Sequence[pydicom.Dataset]) -> np.ndarray:
    """The mask [Z, Y, X] (as given, no copy; non-zero = inside) checked against the headers;
    a mismatch is a caller bug (ValueError), an unusable header an InputError."""
    mask = mask_zyx if isinstance(mask_zyx, SliceMask) else np.asarray(mask_zyx)
    if mask.ndim != 3:
        raise ValueError(f"mask must be [Z, Y, X], got shape {mask.shape}")
    if mask.shape[0] != len(headers):
        raise ValueError(f"mask has {mask.shape[0]} slices but {len(headers)} source headers were given")
    for h in headers:
        if int(h.get("NumberOfFrames", 1) or 1) > 1:
            raise InputError("multi-frame source images are not supported for the DICOM Segmentation")
        for kw in (
            "Rows",
            "Columns",
            "SOPInstanceUID",
            "SOPClassUID",
            "ImagePositionPatient",
            "ImageOrientationPatient",
            "PixelSpacing",
        ):
            if kw not in h or h[kw].value in (None, ""):
                raise InputError(f"a source slice lacks {kw}; cannot build a DICOM Segmentation")
        if (int(h.Rows), int(h.Columns)) != mask.shape[1:]:
            raise ValueError(f"mask slice {mask.shape[1:]} does not match a source slice of {h.Rows}x{h.Columns}")
    if len({str(h.SOPInstanceUID) for h in headers}) != len(headers):
        raise InputError("the source slices repeat a SOPInstanceUID; cannot build a DICOM Segmentation")
    if len({str(h.get("SeriesInstanceUID", "")) for h in headers}) != 1:
        raise InputError("the source slices come from more than one series; a SEG references one")
    if len({str(h.get("StudyInstanceUID", "")) for h in headers}) != 1:
        raise InputError("the source slices come from more than one study; a SEG references one")
    iop = headers[0].ImageOrientationPatient
    if any(h.ImageOrientationPatient != iop for h in headers):
        raise InputError("the source slices do not share one orientation; cannot build a DICOM Segmentation")
    return mask


def derived_frame_of_reference_uid(header: pydicom.Dataset) -> str:
    """A FrameOfReferenceUID derived from the study and series UIDs: same series, same UID."""
    from pydicom.uid import generate_uid

    sources = [
        "edge-ich frame of reference",
        str(header.get("StudyInstanceUID", "")),
        str(header.get("SeriesInstanceUID", "")),
    ]
    return str(generate_uid(entropy_srcs=sources))


#: Type 2 patient and study attributes highdicom copies from the source into the SEG.
_TYPE2 = {
    "PatientName": (0x00100010, "PN"),
    "PatientID": (0x00100020, "LO"),
    "PatientBirthDate": (0x00100030, "DA"),
    "PatientSex": (0x00100040, "CS"),
    "AccessionNumber": (0x00080050, "SH"),
    "StudyID": (0x00200010, "SH"),
    "StudyDate": (0x00080020, "DA"),
    "StudyTime": (0x00080030, "TM"),
}
_DA = re.compile(r"^\d{8}$")
_TM = re.compile(r"^\d{2}(\d{2}(\d{2}(\.\d{1,6})?)?)?$")


def _type2_fixes(h: pydicom.Dataset) -> dict[str, str]:
    """Type 2 attributes the SEG must carry that the source lacks, repeats or garbles, and what the SEG
    carries instead: the first of several values, or empty (unknown), which Type 2 allows."""
    from pydicom.multival import MultiValue

    fixes: dict[str, str] = {}
    for kw, (_, vr) in _TYPE2.items():
        if kw not in h:
            fixes[kw] = ""
            continue
        try:
            v = h.get(kw)
        except (ValueError, TypeError):  # a value pydicom cannot convert
            fixes[kw] = ""
            continue
        if isinstance(v, (MultiValue, list)):
            fixes[kw] = str(v[0]) if len(v) else ""
            continue
        text = "" if v is None else str(v).strip()
        if (
            (vr == "DA" and text and not _DA.match(text))
            or (vr == "TM" and text and not _TM.match(text))
            or (kw == "PatientSex" and text not in ("M", "F", "O", ""))
            or any(ord(ch) < 32 for ch in text)
        ):
            fixes[kw] = ""
    return fixes


def _thickness_ok(h: pydicom.Dataset) -> bool:
    try:
        return float(h.get("SliceThickness") or 0.0) > 0.0
    except (TypeError, ValueError):
        return False


def _spacing_from_positions(headers: Sequence[pydicom.Dataset]) -> float:
    """Median distance between adjacent slice positions along the slice normal (mm)."""
    iop = np.asarray(headers[0].ImageOrientationPatient, dtype=float)
    normal = np.cross(iop[:3], iop[3:])
    d = np.sort([float(np.dot(np.asarray(h.ImagePositionPatient, dtype=float), normal)) for h in headers])
    gaps = np.diff(d)
    gaps = gaps[gaps > 1e-6]
    if gaps.size == 0:
        raise InputError("the source slices lack SliceThickness and their positions do not give a spacing")
    return float(np.median(gaps))


def _complete_headers(headers: Sequence[pydicom.Dataset]) -> list[pydicom.Dataset]:
    """The headers as given when highdicom can use them; else copies with the gaps filled.

    Filled: a FrameOfReferenceUID derived from the series when no slice has one (slices that
    disagree are refused), and SliceThickness from the position spacing when it is missing.
    """
    import pydicom

    fors = {str(h.get("FrameOfReferenceUID", "") or "") for h in headers}
    if len(fors) > 1:
        raise InputError("the source slices disagree on FrameOfReferenceUID; cannot build a DICOM Segmentation")
    need_for = fors == {""}
    need_thickness = not all(_thickness_ok(h) for h in headers)
    fixes = [_type2_fixes(h) for h in headers]
    if not (need_for or need_thickness or any(fixes)):
        return list(headers)
    uid = derived_frame_of_reference_uid(headers[0]) if need_for else None
    if need_for:
        log.warning("source series has no FrameOfReferenceUID; the SEG uses one derived from the series UID")
    thickness = _spacing_from_positions(headers) if need_thickness else None
    if need_thickness:
        log.warning("source slices lack SliceThickness; the SEG uses the slice spacing from positions")
    out = []
    for h, fix in zip(headers, fixes):
        # Own element dict sharing the element objects (cheap); add_new puts NEW elements in it,
        # so the caller's datasets stay untouched (plain attribute assignment would edit shared ones).
        dup = pydicom.Dataset(dict(h.items()))
        if uid is not None:
            dup.add_new(0x00200052, "UI", uid)  # FrameOfReferenceUID
            if not dup.get("PositionReferenceIndicator"):
                dup.add_new(0x00201040, "LO", "")  # PositionReferenceIndicator (Type 2)
        if thickness is not None and not _thickness_ok(dup):
            dup.add_new(0x00180050, "DS", f"{thickness:.6g}")  # SliceThickness
        for kw, value in fix.items():
            tag, vr = _TYPE2[kw]
            dup.add_new(tag, vr, value)
        out.append(dup)
    return out


def _segment_description(hd: Any, algorithm_name: str, algorithm_version: str) -> Any:
    from pydicom.sr.codedict import codes

    return hd.seg.SegmentDescription(
        segment_number=1,
        segment_label=SEGMENT_LABEL,
        segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
        segmented_property_type=codes.SCT.IntracranialHemorrhage,
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=hd.AlgorithmIdentificationSequence(
            name=algorithm_name,
            version=algorithm_version,
            family=codes.cid7162.ArtificialIntelligence,
        ),
        anatomic_regions=[codes.SCT.Brain],
    )


def _complete_deidentification(seg: pydicom.Dataset, source: pydicom.Dataset) -> None:
    """A de-identified source (PatientIdentityRemoved YES) needs a method in the SEG too (Type 1C)."""
    if str(seg.get("PatientIdentityRemoved", "")).upper() != "YES":
        return
    if "DeidentificationMethod" in seg or "DeidentificationMethodCodeSequence" in seg:
        return
    if "DeidentificationMethod" in source:
        seg.DeidentificationMethod = source.DeidentificationMethod
    if "DeidentificationMethodCodeSequence" in source:
        seg.DeidentificationMethodCodeSequence = source.DeidentificationMethodCodeSequence
    if "DeidentificationMethod" not in seg and "DeidentificationMethodCodeSequence" not in seg:
        seg.DeidentificationMethod = _NO_METHOD


def _checked(
    mask_zyx: np.ndarray,
    source_headers: Sequence[pydicom.Dataset],
    algorithm_name: str,
    algorithm_version: str,
    content_label: str,
) -> tuple[np.ndarray, list[pydicom.Dataset]]:
    """The arguments of a SEG checked (caller bugs: ValueError; unusable input: InputError), the
    headers completed (`_complete_headers`)."""
    if not _CS_PATTERN.match(content_label):
        raise ValueError(f"content_label must be 1-16 of A-Z, 0-9, space, underscore: {content_label!r}")
    if not algorithm_name or len(algorithm_name) > 64 or not algorithm_version or len(algorithm_version) > 64:
        raise ValueError("algorithm name and version must each be 1-64 characters")
    if not source_headers:
        raise InputError("no source slices given; cannot build a DICOM Segmentation")
    mask = _check_mask(mask_zyx, source_headers)
    return mask, _complete_headers(source_headers)


def build_seg(
    mask_zyx: np.ndarray,
    source_headers: Sequence[pydicom.Dataset],
    *,
    algorithm_name: str,
    algorithm_version: str,
    series_number: int = 9901,
    content_label: str = "ICH",
    device_serial_number: str = "unknown",
) -> Any:
    """The SEG of `mask_zyx` (slice i <-> source_headers[i]) built by highdicom: the reference the
    runtime's own writer (`build_seg_dataset`, what `write_seg` writes) is tested against."""
    hd = require("highdicom")
    from pydicom.uid import generate_uid

    checked, headers = _checked(mask_zyx, source_headers, algorithm_name, algorithm_version, content_label)
    mask = (np.asarray(checked) != 0).astype(np.uint8)
    with warnings.catch_warnings():
        # highdicom quotes the patient's name in this warning: keep patient data out of logs.
        warnings.filterwarnings("ignore", message=r".*person name.*")
        # Only the slices with content are handed over, placed by their source positions: highdicom
        # then never holds a volume-sized copy, and every source slice is still referenced.
        frames = np.flatnonzero(mask.reshape(mask.shape[0], -1).any(axis=1))
        extra: dict[str, Any] = {}
        if frames.size:
            extra["plane_positions"] = [
                hd.PlanePositionSequence(
                    coordinate_system=hd.CoordinateSystemNames.PATIENT,
                    image_position=[float(v) for v in headers[i].ImagePositionPatient],
                )
                for i in frames
            ]
        try:
            seg = hd.seg.Segmentation(
                source_images=headers,
                pixel_array=mask[frames] if frames.size else mask,
                **extra,
                segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
                segment_descriptions=[_segment_description(hd, algorithm_name, algorithm_version)],
                series_instance_uid=generate_uid(),
                series_number=series_number,
                sop_instance_uid=generate_uid(),
                instance_number=1,
                manufacturer=MANUFACTURER,
                manufacturer_model_name=MANUFACTURER,
                software_versions=_package_version(),
                device_serial_number=device_serial_number,
                content_description=CONTENT_DESCRIPTION,
                content_label=content_label,
                omit_empty_frames=bool(mask.any()),
            )
        except (ValueError, TypeError) as exc:
            from edge_ich.assess.notices import safe_text

            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise InputError(f"cannot build a DICOM Segmentation from this series: {safe_text(first)}") from None
    seg.SeriesDescription = SERIES_DESCRIPTION
    _complete_deidentification(seg, headers[0])
    return seg


def build_seg_dataset(
    mask_zyx: np.ndarray,
    source_headers: Sequence[pydicom.Dataset],
    *,
    algorithm_name: str,
    algorithm_version: str,
    series_number: int = 9901,
    content_label: str = "ICH",
    device_serial_number: str = "unknown",
) -> pydicom.Dataset:
    """The SEG `write_seg` writes, built with pydicom alone (`segwriter`): highdicom's dataset
    without its standard tables; only the mask's slices with content are read."""
    from pydicom.uid import generate_uid

    from edge_ich.outputs.segwriter import segmentation_dataset

    mask, headers = _checked(mask_zyx, source_headers, algorithm_name, algorithm_version, content_label)
    try:
        seg = segmentation_dataset(
            mask,
            headers,
            algorithm_name=algorithm_name,
            algorithm_version=algorithm_version,
            series_instance_uid=str(generate_uid()),
            sop_instance_uid=str(generate_uid()),
            series_number=series_number,
            manufacturer=MANUFACTURER,
            software_version=_package_version(),
            device_serial_number=device_serial_number,
            content_label=content_label,
            content_description=CONTENT_DESCRIPTION,
        )
    except ValueError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"cannot build a DICOM Segmentation from this series: {first}") from None
    seg.SeriesDescription = SERIES_DESCRIPTION
    _complete_deidentification(seg, headers[0])
    return seg


def warm_up() -> float:
    """Build a throwaway SEG now (imports, pydicom's dictionaries); return the seconds it took.

    Since the SEG is built without highdicom this costs milliseconds; a resident server calls it
    at start so its first answer carries none of it.
    """
    import time

    from edge_ich.outputs.segwriter import synthetic_headers

    t0 = time.perf_counter()
    headers = synthetic_headers()
    mask = np.zeros((len(headers), int(headers[0].Rows), int(headers[0].Columns)), dtype=np.uint8)
    mask[0, 1, 1] = 1
    build_seg_dataset(mask, headers, algorithm_name="warm-up", algorithm_version="0")
    return time.perf_counter() - t0


def write_seg(
    path: Path,
    mask_zyx: np.ndarray,
    source_headers: list[pydicom.Dataset],
    *,
    algorithm_name: str,
    algorithm_version: str,
    series_number: int = 9901,
    content_label: str = "ICH",
    device_serial_number: str = "unknown",
) -> None:
    """Write a BINARY DICOM SEG (one segment "Hemorrhage", SCT 1386000) atomically to `path`.

    `source_headers` are the source slices' datasets (pixel data not needed) in the mask's
    sorted slice order: mask[i] is the segmentation of source_headers[i].
    """
    seg = build_seg_dataset(
        mask_zyx,
        source_headers,
        algorithm_name=algorithm_name,
        algorithm_version=algorithm_version,
        series_number=series_number,
        content_label=content_label,
        device_serial_number=device_serial_number,
    )
    path = Path(path)
    try:
        with atomic_path(path) as tmp:
            seg.save_as(tmp, enforce_file_format=True)
    except OSError as exc:
        raise OutputError(f"cannot write {path.name} in {path.parent}: {exc.strerror or exc}") from None


def read_seg_mask(path: Path, source_sop_uids: list[str]) -> np.ndarray:
    """Read a SEG back: bool [Z, Y, X] with slice i the "Hemorrhage" segment on source_sop_uids[i].

    Source slices the SEG references but holds no frame for (omitted empty frames) come back empty.
    """
    hd = require("highdicom")
    from pydicom.errors import InvalidDicomError

    path = Path(path)
    try:
        seg = hd.seg.segread(path)
    except (OSError, InvalidDicomError, ValueError, AttributeError) as exc:
        raise InputError(f"{path.name} is not a readable DICOM Segmentation: {type(exc).__name__}") from None
    numbers = seg.get_segment_numbers(segment_label=SEGMENT_LABEL) or [1]
    try:
        px = seg.get_pixels_by_source_instance(
            source_sop_instance_uids=[str(u) for u in source_sop_uids],
            segment_numbers=[numbers[0]],
        )
    except (KeyError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"{path.name} does not match the given source slices: {first}") from None
    return np.asarray(px[..., 0] != 0)

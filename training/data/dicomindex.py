"""Index a folder of DICOM files into sorted CT series through the runtime's own discovery and geometry.

Headers are read with `edge_ich.sources.dicom.discover.read_header`/`classify` and sorted with
`edge_ich.sources.dicom.source.DicomSeries` (which calls the runtime's `sort_and_measure`), so a
training series has exactly the slice order, spacing and skip rules the point-of-care run has.
Only a few geometry tags per file are kept while grouping, so an RSNA-size folder (874k files)
indexes in bounded memory; an optional JSON cache saves re-reading every header next time.
Pixels are read later, per series, by `load_series`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edge_ich.errors import InputError
from edge_ich.sources.volume import Skipped
from training.data.base import Spacing, stack_slices

#: Header tags the geometry needs; everything else is dropped while grouping.
_KEEP = (
    "SOPInstanceUID",
    "SeriesInstanceUID",
    "StudyInstanceUID",
    "FrameOfReferenceUID",
    "ImagePositionPatient",
    "ImageOrientationPatient",
    "PixelSpacing",
    "Rows",
    "Columns",
    "SliceThickness",
)
INDEX_VERSION = 1


@dataclass
class IndexedSeries:
    """One CT axial series: its files and SOP Instance UIDs in ascending slice order, and its grid."""

    series_uid: str
    study_uid: str | None
    files: list[str]  # paths relative to the indexed root
    sop_uids: list[str]
    shape: tuple[int, int, int]
    spacing: Spacing
    warnings: list[str] = field(default_factory=list)


@dataclass
class DicomIndex:
    """All series found under a root and every file or series left out, with reasons."""

    root: Path
    series: list[IndexedSeries]
    skipped: list[Skipped]


def _slim(ds: Any) -> Any:
    from pydicom.dataset import Dataset

    out = Dataset()
    for kw in _KEEP:
        if kw in ds:
            out[kw] = ds[kw]
    return out


def _list_files(root: Path) -> list[Path]:
    from edge_ich.sources.dicom.discover import iter_files

    return [p for p in iter_files(root) if p.name.upper() != "DICOMDIR"]


def build_index(
    root: Path,
    files: Iterable[Path] | None = None,
    workers: int = 1,
    progress: Callable[[int, int], None] | None = None,
) -> DicomIndex:
    """Read headers, group by SeriesInstanceUID, sort each series by the runtime's rules.

    A series the runtime refuses (a gap, two images at one position, one slice) is left out as
    a whole with the runtime's one-line reason; unreadable or non-CT files are left out singly.
    workers > 1 reads headers in that many processes (the slow part on a large folder).
    """
    from pydicom.config import disable_value_validation

    root = Path(root)
    paths = list(files) if files is not None else _list_files(root)
    with disable_value_validation():  # RSNA's `ID_...` UIDs would warn once per file (also when unpickled)
        return _build_index(root, paths, workers, progress)


def _build_index(
    root: Path, paths: list[Path], workers: int, progress: Callable[[int, int], None] | None
) -> DicomIndex:
    from edge_ich.sources.dicom.discover import SeriesCandidate
    from edge_ich.sources.dicom.source import DicomSeries

    skipped: list[Skipped] = []
    groups: dict[str, SeriesCandidate] = {}
    for n, (path, ds, reason) in enumerate(_read_headers(paths, workers)):
        if progress is not None and n % 1000 == 0:
            progress(n, len(paths))
        if ds is None:
            skipped.append(Skipped(_rel(path, root), reason))
            continue
        uid = str(ds.SeriesInstanceUID)
        cand = groups.get(uid)
        if cand is None:
            cand = groups[uid] = SeriesCandidate(
                series_uid=uid,
                study_uid=str(ds.StudyInstanceUID) if ds.get("StudyInstanceUID") else None,
                frame_of_reference_uid=None,
                files=[],
                modality="CT",
                n_files=0,
            )
        cand.files.append(path)
        cand.headers[path] = ds
        cand.n_files += 1
    series: list[IndexedSeries] = []
    for uid in sorted(groups):
        cand = groups.pop(uid)
        try:
            s = DicomSeries(cand, root=root)
        except InputError as exc:
            skipped.append(Skipped(f"series {uid}", f"series refused: {exc}"))
            continue
        skipped.extend(s.skipped)
        series.append(
            IndexedSeries(
                uid,
                cand.study_uid,
                [_rel(p, root) for p in s.files],
                list(s.sop_instance_uids),
                tuple(int(v) for v in s.geometry.shape),  # type: ignore[arg-type]
                tuple(float(v) for v in s.geometry.spacing),  # type: ignore[arg-type]
                list(s.geometry.warnings),
            )
        )
    return DicomIndex(root, series, skipped)


def _read_one(path: Path) -> tuple[Path, Any, str]:
    """(path, slim header, "") for a usable CT axial image, else (path, None, reason)."""
    from pydicom.config import disable_value_validation

    from edge_ich.sources.dicom.discover import classify, read_header

    with disable_value_validation():  # RSNA's `ID_...` UIDs would warn once per file
        ds, bad, detail = read_header(path)
        why, det = (bad, detail) if ds is None else classify(ds)
        if why is None and bad is not None:
            why, det = bad, detail
        if why is not None:
            return path, None, f"{why.value} ({det})" if det else why.value
        return path, _slim(ds), ""


def _read_headers(paths: list[Path], workers: int) -> Iterable[tuple[Path, Any, str]]:
    if workers <= 1 or len(paths) < 64:
        return map(_read_one, paths)
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(_read_one, paths, chunksize=256))


def _rel(path: Path, root: Path) -> str:
    try:
        return Path(path).relative_to(root).as_posix()
    except ValueError:
        return Path(path).as_posix()


def open_index(
    root: Path, cache: Path | None = None, files: Iterable[Path] | None = None, workers: int = 1
) -> DicomIndex:
    """`build_index`, reusing `cache` (JSON) when it lists exactly the files now under root."""
    root = Path(root)
    paths = list(files) if files is not None else _list_files(root)
    names = sorted(_rel(p, root) for p in paths)
    if cache is not None and Path(cache).is_file():
        idx = _read_cache(Path(cache), root, names)
        if idx is not None:
            return idx
    idx = build_index(root, paths, workers=workers)
    if cache is not None:
        _write_cache(Path(cache), idx, names)
    return idx


def _fingerprint(names: list[str]) -> str:
    import hashlib

    h = hashlib.sha256()
    for n in names:
        h.update(n.encode("utf-8", "surrogateescape") + b"\n")
    return h.hexdigest()


def _write_cache(path: Path, idx: DicomIndex, names: list[str]) -> None:
    from edge_ich.outputs.atomic import write_text_atomic

    doc = {
        "version": INDEX_VERSION,
        "files_sha256": _fingerprint(names),
        "n_files": len(names),
        "series": [asdict(s) for s in idx.series],
        "skipped": [[s.path, s.reason] for s in idx.skipped],
    }
    write_text_atomic(path, json.dumps(doc))


def _read_cache(path: Path, root: Path, names: list[str]) -> DicomIndex | None:
    """The cached index, or None when it is stale or from another version (then it is rebuilt)."""
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if (
        not isinstance(doc, dict)
        or doc.get("version") != INDEX_VERSION
        or doc.get("files_sha256") != _fingerprint(names)
    ):
        return None
    try:
        series = [
            IndexedSeries(
                d["series_uid"],
                d["study_uid"],
                list(d["files"]),
                list(d["sop_uids"]),
                tuple(d["shape"]),
                tuple(d["spacing"]),
                list(d.get("warnings", [])),
            )  # type: ignore[arg-type]
            for d in doc["series"]
        ]
        skipped = [Skipped(str(p), str(r)) for p, r in doc["skipped"]]
    except (KeyError, TypeError, ValueError):
        return None
    return DicomIndex(root, series, skipped)


def load_series(root: Path, entry: IndexedSeries) -> tuple[np.ndarray, Spacing]:
    """Read one indexed series' pixels in HU, ascending, with the runtime's decoder (hu_from_dataset).

    Each file is read once; its SOP Instance UID must still be the indexed one, so a folder
    changed since the index was built is caught instead of silently mislabelled.
    """
    from pydicom.config import disable_value_validation

    files = [Path(root) / f for f in entry.files]
    missing = [f for f in files if not f.is_file()]
    if missing:
        raise InputError(
            f"series {entry.series_uid}: {len(missing)} indexed file(s) no longer exist "
            f"(e.g. {missing[0].name}); reopen the dataset"
        )
    with disable_value_validation():
        vol = stack_slices(lambda i: _read_slice(files[i], entry, i), len(files))
    return vol, entry.spacing


def _read_slice(path: Path, entry: IndexedSeries, i: int) -> np.ndarray:
    import pydicom
    from pydicom.errors import InvalidDicomError

    from edge_ich.sources.dicom.pixels import hu_from_dataset

    try:
        ds = pydicom.dcmread(path)
    except (InvalidDicomError, OSError, EOFError, ValueError) as exc:
        raise InputError(f"series {entry.series_uid}: {path.name} became unreadable: {type(exc).__name__}") from None
    if str(ds.get("SOPInstanceUID", "")) != entry.sop_uids[i]:
        raise InputError(f"series {entry.series_uid} changed on disk since the dataset was opened; reopen it")
    try:
        hu = hu_from_dataset(ds)
    except InputError as exc:  # the runtime's line, told which file it is about
        raise InputError(f"series {entry.series_uid}: {path.name}: {exc}") from None
    if hu.shape != tuple(entry.shape[1:]):
        raise InputError(f"series {entry.series_uid}: {path.name} decodes to {hu.shape}, not {tuple(entry.shape[1:])}")
    return hu

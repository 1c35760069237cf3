"""A sorted CT series read one slice at a time: the DICOM `SliceSource` of the pipeline.

`open_series(root)` = discover -> choose -> sort/measure. Headers are kept (small); pixels are
decoded only in `read_hu`, so a reader thread can stream them ahead of inference.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np

from edge_ich.errors import InputError, NotAssessable
from edge_ich.sources.dicom import elements
from edge_ich.sources.dicom.discover import (
    CHOICE_RULE,
    SeriesCandidate,
    _reason,
    _uid_of,
    add_to_group,
    choose_series,
    classify,
    discover,
    rank,
    read_header,
)
from edge_ich.sources.dicom.geometry import sort_and_measure
from edge_ich.sources.dicom.pixels import hu_from_dataset, native_stored
from edge_ich.sources.volume import Geometry, Skipped


def _read_full(path: Path) -> Any:
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        ds = pydicom.dcmread(path, force=True)  # discovery already vetted it; force admits preamble-less files
    except (InvalidDicomError, OSError, EOFError, ValueError) as exc:
        raise InputError(f"a slice file became unreadable: {type(exc).__name__}") from None
    _ensure_transfer_syntax(ds)
    return ds


def _ensure_transfer_syntax(ds: Any) -> None:
    """A file without meta header has no TransferSyntaxUID: state the encoding it was read with."""
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

    meta = getattr(ds, "file_meta", None)
    if meta is not None and meta.get("TransferSyntaxUID"):
        return
    implicit, little = getattr(ds, "original_encoding", (None, None))
    if meta is None:
        ds.file_meta = meta = FileMetaDataset()
    if implicit:
        meta.TransferSyntaxUID = ImplicitVRLittleEndian
    else:
        meta.TransferSyntaxUID = ExplicitVRLittleEndian if little in (True, None) else ExplicitVRBigEndian


def _hu_of_path(path: Path, header: Any = None) -> np.ndarray:
    """HU of one file: native 16-bit pixels straight from the file when its header (from discovery)
    says where they are, else the whole file through pydicom."""
    if header is not None:
        stored = native_stored(path, header)
        if stored is not None:
            return hu_from_dataset(header, stored)
    return hu_from_dataset(_read_full(path))


class DicomSeries:
    """One CT axial series sorted along the slice normal (ascending), read slice by slice.

    With `allow_gaps` the slices lie on a regular grid whose missing positions
    (`geometry.missing`) are not imaged: `read_hu` gives the nearest imaged slice there (context
    for its neighbours only; the runner clears any answer on such a position) and `present`
    says which grid positions hold a file.
    """

    kind = "dicom"

    def __init__(
        self,
        candidate: SeriesCandidate,
        root: Path | None = None,
        skipped: list[Skipped] | None = None,
        other_series: list[dict] | None = None,
        allow_gaps: bool = False,
    ) -> None:
        items = [(p, candidate.headers.get(p)) for p in candidate.files]
        missing = [p for p, h in items if h is None]
        if missing:
            raise ValueError("SeriesCandidate without headers; build it with discover() or series_from_files()")
        sorted_ = sort_and_measure(items, root=root, read_hu=_hu_of_path, allow_gaps=allow_gaps)
        self.geometry: Geometry = sorted_.geometry
        self.files: list[Path] = sorted_.files  # imaged slices only, in order
        self._headers: list[Any] = sorted_.headers
        n = self.geometry.shape[0]
        imaged = np.asarray(sorted_.grid_index, dtype=np.int64)
        self.present: list[bool] = [False] * n
        for g in imaged:
            self.present[int(g)] = True
        # grid index -> index into files: itself where imaged, else the nearest imaged slice (lower on a tie)
        after = np.clip(np.searchsorted(imaged, np.arange(n)), 0, len(imaged) - 1)
        before = np.clip(after - 1, 0, len(imaged) - 1)
        grid = np.arange(n)
        nearer = np.abs(imaged[before] - grid) <= np.abs(imaged[after] - grid)
        self._slot: list[int] = [int(v) for v in np.where(nearer, before, after)]
        self.skipped: list[Skipped] = list(skipped or []) + sorted_.skipped
        uids = [str(elements.optional(h, "SOPInstanceUID") or "") for h in self._headers]
        self.sop_instance_uids: list[str] = [uids[self._slot[g]] if self.present[g] else "" for g in range(n)]
        self.series_uid: str = candidate.series_uid
        self.study_uid: str | None = candidate.study_uid
        self.frame_of_reference_uid: str | None = candidate.frame_of_reference_uid
        self.other_series: list[dict] = list(other_series or [])
        self.choice_rule: str = CHOICE_RULE

    def __len__(self) -> int:
        return self.geometry.shape[0]

    @property
    def present_headers(self) -> list[Any]:
        """Headers of the imaged slices (cached objects: do not edit)."""
        return list(self._headers)

    def read_hu(self, i: int) -> np.ndarray:
        """Slice i (sorted grid order) in HU, float32 [rows, cols]; decodes the file now."""
        j = self._slot[i]
        hu = _hu_of_path(self.files[j], self._headers[j])
        if hu.shape != tuple(self.geometry.shape[1:]):
            raise InputError(f"slice {i} decodes to {hu.shape}, not the series' {self.geometry.shape[1:]}")
        return hu

    def header(self, i: int, copy_: bool = True) -> Any:
        """Header of slice i without pixel data: a copy callers may edit, or with `copy_=False`
        the cached one itself, for readers that promise not to change it (the SEG writer)."""
        if not self.present[i]:
            raise IndexError(f"slice {i} of the grid was not imaged (a gap)")
        h = self._headers[self._slot[i]]
        return copy.deepcopy(h) if copy_ else h

    def summary(self) -> dict[str, Any]:
        """Non-identifying description for the report: UIDs, counts, grid, warnings, skipped files."""
        g = self.geometry
        h0 = self._headers[0]
        ts = sorted({str(getattr(getattr(h, "file_meta", None), "TransferSyntaxUID", "") or "") for h in self._headers})
        thickness = elements.optional(h0, "SliceThickness")
        thickness_mm = float(thickness) if thickness else None
        return {
            "kind": self.kind,
            "series_uid": self.series_uid,
            "study_uid": self.study_uid,
            "frame_of_reference_uid": self.frame_of_reference_uid,
            "modality": "CT",
            "n_slices": len(self.files),
            "missing_slices": list(g.missing),
            "gaps": [dict(x) for x in g.gaps],
            "shape": list(g.shape),
            "spacing_mm": [float(x) for x in g.spacing],
            "slice_thickness_mm": thickness_mm,
            "affine_lps": np.asarray(g.affine_lps, dtype=float).round(6).tolist(),
            "transfer_syntaxes": [t for t in ts if t],
            "warnings": list(g.warnings),
            "skipped": [{"path": s.path, "reason": s.reason} for s in self.skipped],
            "other_series": list(self.other_series),
            "choice_rule": self.choice_rule,
        }


def open_series(root: Path, series_uid: str | None = None, allow_gaps: bool = True) -> DicomSeries:
    """Discover the CT axial series under root, pick one (rule or UID), sort and measure it.

    Without a UID, a candidate whose geometry is refused gives way to the next one by the rule; the
    refusal is listed in `other_series`. With a UID, that series or an InputError.
    """
    root = Path(root)
    if not root.exists():
        raise InputError("the --series folder does not exist")
    if not root.is_dir():
        raise InputError("--series expects a folder of DICOM files, got a single file")
    result = discover(root)
    chosen, others = choose_series(result, series_uid)
    if chosen.problem is not None:  # the best candidate fails on its headers: so do all the others
        raise NotAssessable(chosen.problem, _candidate_facts(chosen, result.skipped, others))
    if series_uid is not None:
        return DicomSeries(chosen, root=root, skipped=result.skipped, other_series=others, allow_gaps=allow_gaps)
    refused: list[dict] = []
    first_error: InputError | None = None
    for cand in result.candidates:
        if cand.problem is not None:
            continue
        try:
            series = DicomSeries(cand, root=root, allow_gaps=allow_gaps)
        except InputError as exc:
            first_error = first_error or exc
            refused.append(
                {"series_uid": cand.series_uid, "n_files": cand.n_files, "reason_not_chosen": f"refused: {exc}"}
            )
            continue
        rest = [
            o
            for o in others
            if o["series_uid"] != cand.series_uid and all(o["series_uid"] != r["series_uid"] for r in refused)
        ]
        series.skipped = list(result.skipped) + series.skipped
        series.other_series = refused + rest
        return series
    assert first_error is not None
    if len(refused) == 1:
        raise first_error
    raise InputError(f"{first_error} (and the {len(refused) - 1} other CT series found were refused too)")


def _candidate_facts(cand: SeriesCandidate, skipped: list[Skipped], others: list[dict]) -> dict[str, Any]:
    """What a not-assessable report says of a series refused on its headers (no patient data)."""
    return {
        "kind": "dicom",
        "series_uid": cand.series_uid,
        "study_uid": cand.study_uid,
        "modality": cand.modality,
        "n_files": cand.n_files,
        "skipped": [{"path": s.path, "reason": s.reason} for s in skipped],
        "other_series": list(others),
    }


def series_from_files(files: list[Path], headers: dict[Path, tuple[Any, Any, str]] | None = None) -> DicomSeries:
    """A series from files the caller already grouped (e.g. the receiver); unusable files are skipped with
    reasons. `headers`: `read_header` results the caller already has, by path (the receiver reads each
    file's header on arrival); the other files are read here."""
    files = [Path(f) for f in files]
    if not files:
        raise InputError("no files given for the series")
    skipped: list[Skipped] = []
    kept: dict[str, SeriesCandidate] = {}
    known = headers or {}
    for p in files:
        ds, bad, detail = known[p] if p in known else read_header(p)
        why, det = (bad, detail) if ds is None else classify(ds)
        if why is None and bad is not None:
            why, det = bad, detail
        if why is not None:
            skipped.append(Skipped(p.name, _reason(why, det), None if ds is None else _uid_of(ds)))
            continue
        assert ds is not None  # classify() returned no reason, so the header was read
        add_to_group(kept, p, ds)
    if not kept:
        raise InputError(f"none of the {len(files)} files is a usable CT axial image")
    if len(kept) > 1:
        raise InputError(f"the files belong to {len(kept)} different series; pass one series at a time")
    (cand,) = rank(kept.values())
    if cand.problem is not None:
        raise NotAssessable(cand.problem, _candidate_facts(cand, skipped, []))
    return DicomSeries(cand, root=None, skipped=skipped, allow_gaps=True)

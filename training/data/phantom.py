"""Phantom datasets written by `edge-ich phantom` (edge_ich.phantom.writers), in any of its layouts.

Each layout is read by the adapter of the real dataset it imitates (rsna, physionet, instance)
or, for `dicom`, by the same DICOM index the generic adapter uses, so phantoms exercise the code
real data will go through. On top, the generator's truth (`truth.npz`: voxel labels with
subtype codes 1..5) becomes `load_mask`, and slice/subtype labels come from it where the layout
itself carries none.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from edge_ich.errors import InputError
from edge_ich.sources.volume import Skipped
from training.data.base import (
    SUBTYPES,
    Case,
    CaseList,
    check_mask,
    check_options,
    coerce_enum,
    mask_to_labels,
    require_dir,
)
from training.data.dicomindex import load_series, open_index

TRUTH = "truth.npz"


def detect_layout(root: Path) -> str:
    """Which `edge-ich phantom --layout` wrote root (dicom, rsna, physionet, instance)."""
    if (root / "stage_2_train.csv").is_file():
        return "rsna"
    if (root / "ct_scans").is_dir():
        return "physionet"
    if (root / "data").is_dir() or (root / "train" / "data").is_dir():
        return "instance"
    if any(p.is_dir() and (p / "dicom").is_dir() for p in root.glob("case_*")):
        return "dicom"
    raise InputError(f"{root} is not a phantom dataset folder (no case_*/dicom, stage_2_train.csv, ct_scans/ or data/)")


def _read_truth(path: Path, case_id: str, keys: tuple[str, ...] = ("labels",)) -> dict[str, np.ndarray]:
    if not path.is_file():
        raise InputError(f"phantom case {case_id}: truth file {path.name} not found")
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: np.asarray(z[k]) for k in keys}
    except KeyError as exc:
        raise InputError(f"phantom case {case_id}: {path.name} lacks {exc}") from None
    except (OSError, ValueError, EOFError) as exc:  # a truncated or foreign file
        raise InputError(f"phantom case {case_id}: cannot read {path.name}: {type(exc).__name__}") from None


def load_truth_mask(path: Path, case_id: str, shape: tuple[int, ...]) -> np.ndarray:
    """The generator's voxel labels (subtype codes, ascending slices), checked against the scan's shape."""
    labels = _read_truth(path, case_id)["labels"]
    return check_mask(labels, shape, case_id, len(SUBTYPES))


def _with_truth(case: Case, truth: Path, shape: tuple[int, ...], labels: np.ndarray) -> Case:
    """The case with the generator's coded truth as mask (and labels derived from it where missing)."""
    mask = check_mask(labels, shape, case.case_id, len(SUBTYPES))
    slice_labels, subtype_labels = mask_to_labels(mask, subtype_codes=True)
    if case.slice_labels is not None and not np.array_equal(case.slice_labels, slice_labels):
        raise InputError(f"phantom case {case.case_id}: the layout's slice labels disagree with {truth.name}")
    if case.subtype_labels is not None and not np.array_equal(case.subtype_labels, subtype_labels):
        raise InputError(f"phantom case {case.case_id}: the layout's subtype labels disagree with {truth.name}")
    case.slice_labels, case.subtype_labels = slice_labels, subtype_labels
    case.load_mask = partial(load_truth_mask, truth, case.case_id, shape)
    case.meta.update({"truth_file": truth.name, "mask_codes": {str(i + 1): s.value for i, s in enumerate(SUBTYPES)}})
    return case


def open_phantom(root: Path, layout: str | None = None, **kw: Any) -> CaseList:
    """All cases of a phantom dataset; layout is detected unless given. Other options go to the
    layout's adapter (e.g. cache=, workers= for DICOM layouts)."""
    from edge_ich.phantom.writers import Layout

    root = require_dir(Path(root), "phantom")
    lay = coerce_enum(Layout, layout if layout is not None else detect_layout(root), "phantom layout")
    if lay is Layout.dicom:
        check_options(_open_dicom, kw, "phantom dicom layout")
        cases = _open_dicom(root, **kw)
    elif lay is Layout.rsna:
        cases = _open_rsna(root, **kw)
    else:
        cases = _open_nifti(root, lay.value, **kw)
    cases.meta.update({"dataset": "phantom", "layout": lay.value})
    return cases


def _open_dicom(root: Path, cache: Path | None = None, workers: int = 1) -> CaseList:
    cases = CaseList()
    for case_dir in sorted(p for p in root.glob("case_*") if (p / "dicom").is_dir()):
        case_id = case_dir.name
        index = open_index(
            case_dir / "dicom", cache=None if cache is None else Path(cache) / f"{case_id}.json", workers=workers
        )
        cases.skipped.extend(Skipped(f"{case_id}/dicom/{s.path}", s.reason) for s in index.skipped)
        if len(index.series) != 1:
            cases.skipped.append(Skipped(f"{case_id}/dicom", f"{len(index.series)} usable series (expected 1)"))
            continue
        entry = index.series[0]
        truth = case_dir / TRUTH
        labels = _read_truth(truth, case_id)["labels"]
        case = Case(
            case_id=case_id,
            load=partial(load_series, case_dir / "dicom", entry),
            slice_labels=None,
            subtype_labels=None,
            load_mask=None,
            meta={
                "dataset": "phantom",
                "layout": "dicom",
                "series_uid": entry.series_uid,
                "n_slices": len(entry.files),
                "shape": list(entry.shape),
                "spacing": list(entry.spacing),
                "warnings": list(entry.warnings),
            },
        )
        cases.append(_with_truth(case, truth, entry.shape, labels))
    if not cases and not cases.skipped:
        raise InputError(f"no phantom cases (case_*/dicom) under {root}")
    return cases


def _open_rsna(root: Path, **kw: Any) -> CaseList:
    from training.data.rsna import open_rsna

    check_options(open_rsna, kw, "phantom rsna layout")
    cases = open_rsna(root, **kw)
    by_first_id: dict[str, tuple[Path, np.ndarray]] = {}
    for f in sorted((root / "truth").glob("case_*.npz")):
        t = _read_truth(f, f.stem, ("ids", "labels"))
        by_first_id[str(t["ids"][0])] = (f, t)  # type: ignore[assignment]
    for case in cases:
        ids = case.meta["image_ids"]
        found = by_first_id.get(ids[0])
        if found is None:
            raise InputError(f"phantom series {case.case_id}: no truth/case_*.npz lists its images")
        f, t = found
        if [str(v) for v in t["ids"]] != list(ids):  # type: ignore[call-overload]
            raise InputError(f"phantom series {case.case_id}: slice order differs from {f.name}")
        case.meta["phantom_case"] = f.stem
        _with_truth(case, f, tuple(case.meta["shape"]), t["labels"])  # type: ignore[call-overload]
    return cases


def _open_nifti(root: Path, layout: str, **kw: Any) -> CaseList:
    if layout == "physionet":
        from training.data.physionet import open_physionet

        check_options(open_physionet, kw, "phantom physionet layout")
        cases = open_physionet(root, **kw)
    else:
        from training.data.instance import open_instance

        check_options(open_instance, kw, "phantom instance layout")
        cases = open_instance(root, **kw)
    for case in cases:
        truth = root / "truth" / f"{case.case_id}.npz"
        labels = _read_truth(truth, case.case_id)["labels"]
        _with_truth(case, truth, tuple(case.meta["shape"]), labels)
    return cases

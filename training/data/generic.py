"""Any site's own data: a folder of DICOM series (any file names, any nesting) + a CSV of slice labels.

CSV (default `labels.csv` in the root), one row per slice:
- a key column: `SOPInstanceUID`, or `file` (path relative to the root, `/`-separated);
- `any`: 1 if the slice shows hemorrhage, else 0;
- optionally all five subtype columns `epidural,intraparenchymal,intraventricular,subarachnoid,subdural`.
Series are found, grouped and ordered by the runtime's DICOM code; labels follow the slices.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np

from edge_ich.errors import InputError
from edge_ich.sources.volume import Skipped
from training.data.base import SUBTYPES, Case, CaseList, MissingPolicy, coerce_enum, parse_flag, read_table, require_dir
from training.data.dicomindex import IndexedSeries, load_series, open_index

KEY_COLUMNS = ("SOPInstanceUID", "file")
SUBTYPE_COLUMNS = tuple(s.value for s in SUBTYPES)


def read_generic_labels(path: Path) -> tuple[str, dict[str, np.ndarray], bool]:
    """(key column, key -> uint8 [6] (five subtypes then any), whether subtypes were given)."""
    header, rows = read_table(path, [], "slice label CSV")
    keys = [k for k in KEY_COLUMNS if k in header]
    if len(keys) != 1:
        raise InputError(
            f"slice label CSV {path.name} needs exactly one key column of {', '.join(KEY_COLUMNS)} "
            f"(has: {', '.join(header) or 'none'})"
        )
    if "any" not in header:
        raise InputError(f"slice label CSV {path.name} lacks column any")
    present = [c for c in SUBTYPE_COLUMNS if c in header]
    if present and len(present) != len(SUBTYPE_COLUMNS):
        lacking = [c for c in SUBTYPE_COLUMNS if c not in header]
        raise InputError(f"slice label CSV {path.name} has some subtype columns but lacks {', '.join(lacking)}")
    key = keys[0]
    out: dict[str, np.ndarray] = {}
    for n, row in enumerate(rows, start=2):
        where = f"{path.name} line {n}"
        k = row[key].strip()
        if key == "file":
            k = Path(k.replace("\\", "/")).as_posix()
        if not k:
            raise InputError(f"{where}: empty {key}")
        sub = [parse_flag(row[c], where) for c in SUBTYPE_COLUMNS] if present else [0] * len(SUBTYPE_COLUMNS)
        label = np.array(sub + [max(parse_flag(row["any"], where), max(sub))], dtype=np.uint8)
        if k in out and not np.array_equal(out[k], label):
            raise InputError(f"{where}: the same slice is listed twice with different labels")
        out[k] = label
    if not out:
        raise InputError(f"slice label CSV {path.name} has no rows")
    return key, out, bool(present)


def open_generic(
    root: Path,
    labels: Path | None = None,
    missing: str | MissingPolicy = "error",
    cache: Path | None = None,
    workers: int = 1,
) -> CaseList:
    """One Case per labelled CT axial series under root."""
    from edge_ich.sources.dicom.discover import iter_files

    root = require_dir(Path(root), "DICOM")
    policy = coerce_enum(MissingPolicy, missing, "missing-image policy")
    label_path = Path(labels) if labels is not None else root / "labels.csv"
    key, table, has_sub = read_generic_labels(label_path)
    skip_paths = {label_path.resolve()} | ({Path(cache).resolve()} if cache is not None else set())
    files = [p for p in iter_files(root) if p.resolve() not in skip_paths and p.name.upper() != "DICOMDIR"]
    index = open_index(root, cache=cache, files=files, workers=workers)
    cases = CaseList(skipped=index.skipped, meta={"dataset": "generic", "labels": label_path.name, "key": key})
    found: set[str] = set()
    for entry in index.series:
        keys = list(entry.sop_uids) if key == "SOPInstanceUID" else list(entry.files)
        found.update(keys)
        have = [k in table for k in keys]
        if not all(have):
            n = len(have) - sum(have)
            reason = "series without labels" if not any(have) else "series with unlabelled slices"
            cases.skipped.append(Skipped(f"series {entry.series_uid}", f"{reason} ({n} of {len(have)} slices)"))
            continue
        rows = np.stack([table[k] for k in keys])
        cases.append(_case(root, entry, rows, has_sub))
    if key == "file":  # a labelled file that exists but was left out is counted, not "missing"
        found.update(s.path for s in index.skipped)
    absent = sorted(set(table) - found)
    if absent:
        if policy is MissingPolicy.ERROR:
            raise InputError(
                f"{label_path.name} labels {len(absent)} slice(s) not found among the readable CT "
                f"series under {root.name}/ (e.g. {absent[0]}); pass missing='skip' to leave them out"
            )
        cases.skipped.extend(Skipped(a, "labelled slice not found") for a in absent)
    return cases


def _case(root: Path, entry: IndexedSeries, rows: np.ndarray, has_sub: bool) -> Case:
    return Case(
        case_id=entry.series_uid,
        load=partial(load_series, root, entry),
        slice_labels=rows[:, 5].copy(),
        subtype_labels=rows[:, :5].copy() if has_sub else None,
        load_mask=None,
        meta={
            "dataset": "generic",
            "series_uid": entry.series_uid,
            "study_uid": entry.study_uid,
            "n_slices": len(entry.files),
            "shape": list(entry.shape),
            "spacing": list(entry.spacing),
            "files": list(entry.files),
            "warnings": list(entry.warnings),
        },
    )

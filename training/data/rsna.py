"""RSNA Intracranial Hemorrhage Detection (2019): a flat folder of `ID_<id>.dcm` + `stage_2_train.csv`.

Series are rebuilt from the DICOM headers (grouped by SeriesInstanceUID, ordered along the
slice normal by the runtime's geometry code, never by file name), and slice labels are
attached by SOPInstanceUID (which in this dataset equals the file stem `ID_<id>`; the stem is
the fallback). Pixels come through the runtime, including the 12-bit intercept fix.

Decisions (see docs/datasets.md):
- a malformed CSV is an InputError;
- a label whose image file is absent is an InputError by default (`missing="skip"` counts
  them instead, for a partial download);
- an unreadable file (the dataset has one) and a series the runtime refuses (gap, duplicate
  position, one slice) are left out with a counted reason, as is a series whose slices lack labels.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np

from edge_ich.errors import InputError
from edge_ich.sources.volume import Skipped
from training.data.base import Case, CaseList, MissingPolicy, coerce_enum, require_dir
from training.data.dicomindex import IndexedSeries, load_series, open_index
from training.data.rsna_labels import read_rsna_labels

LABEL_FILES = ("stage_2_train.csv", "stage_1_train.csv")


def _find(root: Path, labels: Path | None, images: Path | None) -> tuple[Path, Path]:
    if labels is None:
        labels = next((root / n for n in LABEL_FILES if (root / n).is_file()), None)
        if labels is None:
            raise InputError(f"no RSNA label CSV ({' or '.join(LABEL_FILES)}) in {root}; pass labels=PATH")
    if images is None:
        stem = Path(labels).name.removesuffix(".csv")
        images = root / stem if (root / stem).is_dir() else None
        if images is None:
            raise InputError(f"no RSNA image folder {stem}/ beside the label CSV in {root}; pass images=PATH")
    return Path(labels), require_dir(Path(images), "RSNA image")


def open_rsna(
    root: Path,
    labels: Path | None = None,
    images: Path | None = None,
    missing: str | MissingPolicy = "error",
    cache: Path | None = None,
    workers: int = 1,
) -> CaseList:
    """One Case per RSNA series, with slice and subtype labels in ascending slice order.

    root: the competition folder (holding `stage_2_train.csv` and `stage_2_train/`); labels and
    images override either path. cache: a JSON file for the header index (reused while the
    folder's file list is unchanged; the first full RSNA index reads 874k headers).
    """
    root = require_dir(Path(root), "RSNA")
    policy = coerce_enum(MissingPolicy, missing, "missing-image policy")
    label_path, image_dir = _find(root, labels, images)
    table = read_rsna_labels(label_path)
    from edge_ich.sources.dicom.discover import iter_files

    files = [p for p in iter_files(image_dir) if p.name.upper() != "DICOMDIR"]
    stems = {p.stem for p in files}
    absent = [i for i in table.by_image if i not in stems]
    skipped: list[Skipped] = []
    if absent:
        if policy is MissingPolicy.ERROR:
            raise InputError(
                f"{label_path.name} labels {len(absent)} image(s) with no file in {image_dir.name}/ "
                f"(e.g. {absent[0]}.dcm); point at the full image folder or pass missing='skip'"
            )
        skipped.extend(Skipped(f"{i}.dcm", "labelled image not on disk") for i in absent)
    index = open_index(image_dir, cache=cache, files=files, workers=workers)
    skipped.extend(index.skipped)
    cases = CaseList(skipped=skipped)
    for entry in index.series:
        keys = [sop if sop in table.by_image else Path(f).stem for sop, f in zip(entry.sop_uids, entry.files)]
        have = [k in table.by_image for k in keys]
        if not all(have):
            n = len(have) - sum(have)
            reason = "series without labels" if not any(have) else "series with unlabelled slices"
            cases.skipped.append(Skipped(f"series {entry.series_uid}", f"{reason} ({n} of {len(have)} slices)"))
            continue
        rows = np.stack([table.by_image[k] for k in keys])
        cases.append(_case(image_dir, entry, keys, rows))
    cases.meta = {
        "dataset": "rsna",
        "labels": label_path.name,
        "duplicate_rows": table.duplicates,
        "conflicting_duplicates": table.conflicts,
    }
    return cases


def _case(image_dir: Path, entry: IndexedSeries, keys: list[str], rows: np.ndarray) -> Case:
    return Case(
        case_id=entry.series_uid,
        load=partial(load_series, image_dir, entry),
        slice_labels=rows[:, 5].astype(np.uint8),
        subtype_labels=rows[:, :5].astype(np.uint8),
        load_mask=None,
        meta={
            "dataset": "rsna",
            "series_uid": entry.series_uid,
            "study_uid": entry.study_uid,
            "n_slices": len(entry.files),
            "shape": list(entry.shape),
            "spacing": list(entry.spacing),
            "image_ids": keys,
            "warnings": list(entry.warnings),
        },
    )

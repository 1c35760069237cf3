"""Evaluation of predicted masks against voxel truth, with the conventions stated.

Per volume: Dice over the whole volume (empty prediction on an empty truth counts 1.0),
Dice on positive slices (only the slices where truth has blood; undefined on negative
scans), absolute volume error in mL, and per-subtype Dice (each predicted voxel is assigned
the subtype of the nearest truth voxel). Detection: a scan or slice is called positive when
the mask (after the runtime's small-component removal) is not empty.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage, stats

from edge_ich.analysis.metrics import dice, sens_spec, volume_ml

#: The smallest bleed a scan must be called positive for (mL); the reporting size is chosen under it.
REPORTABLE_ML = 0.5

SUBTYPE_NAMES = ("epidural", "intraparenchymal", "intraventricular", "subarachnoid", "subdural")


@dataclass
class CaseScores:
    case_id: str
    dice: float
    dice_pos_slices: float
    abs_volume_error_ml: float
    truth_ml: float
    pred_ml: float
    scan_truth: bool
    scan_pred: bool
    slice_truth: np.ndarray
    slice_pred: np.ndarray
    subtype_dice: dict[str, float]


def remove_small(mask: np.ndarray, spacing: tuple[float, float, float], min_mm3: float) -> np.ndarray:
    """Drop 26-connected components under `min_mm3`, as the runtime's postprocess does."""
    mask = np.asarray(mask, dtype=bool)
    if min_mm3 <= 0 or not mask.any():
        return mask
    return _keep_sized(*_components_mm3(mask, spacing), min_mm3)


def _components_mm3(mask: np.ndarray, spacing: tuple[float, float, float]) -> tuple[np.ndarray, np.ndarray]:
    """26-connected component labels of `mask` and each label's size in mm3 (label 0: the background)."""
    labels, n = ndimage.label(mask, structure=np.ones((3, 3, 3), dtype=bool))
    return labels, np.bincount(labels.ravel(), minlength=n + 1) * float(np.prod(spacing))


def _keep_sized(labels: np.ndarray, sizes: np.ndarray, min_mm3: float) -> np.ndarray:
    keep = sizes >= min_mm3
    keep[0] = False
    return keep[labels]


def subtype_dice(pred: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """Dice per subtype present in `truth` (codes 1..5); predicted voxels take the nearest truth subtype."""
    out: dict[str, float] = {}
    codes = [int(c) for c in np.unique(truth) if c > 0]
    if not codes:
        return out
    if pred.any():
        _, idx = ndimage.distance_transform_edt(truth == 0, return_indices=True)
        nearest = truth[tuple(idx)]
    else:
        nearest = truth
    for c in codes:
        if 1 <= c <= len(SUBTYPE_NAMES):
            out[SUBTYPE_NAMES[c - 1]] = dice(pred & (nearest == c), truth == c)
    return out


def score_case(case_id: str, pred: np.ndarray, truth: np.ndarray, spacing: tuple[float, float, float]) -> CaseScores:
    pred = np.asarray(pred, dtype=bool)
    t = np.asarray(truth) > 0
    st = t.reshape(t.shape[0], -1).any(axis=1)
    sp = pred.reshape(pred.shape[0], -1).any(axis=1)
    d_pos = dice(pred[st], t[st]) if st.any() else float("nan")
    tv, pv = volume_ml(t, spacing), volume_ml(pred, spacing)
    return CaseScores(
        case_id,
        dice(pred, t, empty=1.0),
        d_pos,
        abs(pv - tv),
        tv,
        pv,
        bool(st.any()),
        bool(sp.any()),
        st,
        sp,
        subtype_dice(pred, np.asarray(truth)),
    )


def summarize(scores: Sequence[CaseScores]) -> dict[str, Any]:
    """Means and detection rates over cases; the per-case Dice list is kept for paired tests."""
    d = np.array([s.dice for s in scores])
    pos = [s for s in scores if s.scan_truth]
    dpos = np.array([s.dice_pos_slices for s in pos]) if pos else np.array([np.nan])
    scan_sens, scan_spec = sens_spec(np.array([s.scan_pred for s in scores]), np.array([s.scan_truth for s in scores]))
    sl_sens, sl_spec = sens_spec(
        np.concatenate([s.slice_pred for s in scores]), np.concatenate([s.slice_truth for s in scores])
    )
    sub: dict[str, list[float]] = {}
    for s in scores:
        for k, v in s.subtype_dice.items():
            sub.setdefault(k, []).append(v)
    neg = [s for s in scores if not s.scan_truth]
    big = [s for s in pos if s.truth_ml >= REPORTABLE_ML]
    rel_err = [abs(s.pred_ml - s.truth_ml) / s.truth_ml for s in pos if s.truth_ml > 0]
    return {
        "cases": len(scores),
        "positive_cases": len(pos),
        "dice_bleeding_volumes": float(np.mean([s.dice for s in pos])) if pos else float("nan"),
        "empty_volumes_called_empty": float(np.mean([not s.scan_pred for s in neg])) if neg else float("nan"),
        "dice_all": float(d.mean()) if d.size else float("nan"),
        "dice_positive_cases": float(np.mean([s.dice for s in pos])) if pos else float("nan"),
        "dice_positive_slices": float(np.nanmean(dpos)) if pos else float("nan"),
        "abs_volume_error_ml": float(np.mean([s.abs_volume_error_ml for s in scores])) if scores else float("nan"),
        "scan_sensitivity": scan_sens,
        "scan_sensitivity_reportable": float(np.mean([s.scan_pred for s in big])) if big else float("nan"),
        "reportable_ml": REPORTABLE_ML,
        "scan_specificity": scan_spec,
        "median_abs_volume_error_pct": float(100 * np.median(rel_err)) if rel_err else float("nan"),
        "slice_sensitivity": sl_sens,
        "slice_specificity": sl_spec,
        "subtype_dice": {k: float(np.mean(v)) for k, v in sorted(sub.items())},
        "per_case_dice": [float(v) for v in d],
        "convention": "dice_bleeding_volumes: mean Dice over volumes with blood (the primary number); "
        "empty volumes are counted apart (empty_volumes_called_empty); dice_all mixes both, an empty "
        "prediction on empty truth counting 1.0; dice_positive_slices over truth-positive slices of positive "
        "scans; scan_sensitivity_reportable over scans whose blood is >= reportable_ml",
    }


def auc(scores: Sequence[float], labels: Sequence[int]) -> float:
    """Area under the ROC curve (Mann-Whitney U / (n_pos * n_neg)); nan without both classes."""
    x, y = np.asarray(scores, float), np.asarray(labels).astype(bool)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    return float(stats.mannwhitneyu(x[y], x[~y]).statistic / (n_pos * n_neg))


def wilcoxon_p(a: Sequence[float], b: Sequence[float]) -> float:
    """Two-sided paired Wilcoxon signed-rank p-value (nan when the pairs do not differ)."""
    x, y = np.asarray(a, float), np.asarray(b, float)
    if x.shape != y.shape or x.size == 0 or np.allclose(x, y):
        return float("nan")
    return float(stats.wilcoxon(x, y, zero_method="wilcox").pvalue)


MIN_COMPONENT_GRID = (10.0, 25.0, 50.0, 100.0, 200.0, 300.0)  # all under REPORTABLE_ML (500 mm3)


def choose_threshold(
    probs: Sequence[np.ndarray],
    truths: Sequence[np.ndarray],
    spacings: Sequence[tuple[float, float, float]],
    min_mm3: float | None,
    grid: Sequence[float] = (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8),
    min_grid: Sequence[float] = MIN_COMPONENT_GRID,
) -> tuple[float, float, float]:
    """Operating point with the best mean per-volume Dice on a validation set -> (threshold, min_mm3, Dice).

    `min_mm3` fixes the smallest kept component; None chooses it from `min_grid` as well.
    """
    best = (0.5, float(min_mm3 if min_mm3 is not None else min_grid[0]), -1.0)
    for mm in [min_mm3] if min_mm3 is not None else list(min_grid):
        for th in grid:
            ds = [dice(remove_small(p >= th, sp, float(mm)), t > 0) for p, t, sp in zip(probs, truths, spacings)]
            m = float(np.mean(ds)) if ds else 0.0
            if m > best[2] + 1e-9:
                best = (float(th), float(mm), m)
    return best


THRESHOLD_HU_GRID = (45.0, 50.0, 55.0, 60.0)


def threshold_baseline_on(
    vols: Sequence[Any], val: Sequence[Any] | None = None, min_mm3: float = 100.0, keep_scores: bool = False
) -> dict[str, Any]:
    """The threshold baseline (edge_ich.analysis.baseline) on the test volumes, model grid, at its own operating
    point: the HU floor and smallest component with the best mean Dice on `val` against *voxel truth* (a baseline
    given every advantage), else the model's `min_mm3`."""
    from edge_ich.analysis.baseline import threshold_segment

    def masks(vs: Sequence[Any], lo: float, mm: float) -> list[np.ndarray]:
        return [remove_small(np.asarray(threshold_segment(v.hu, v.spacing, lo=lo), bool), v.spacing, mm) for v in vs]

    lo, mm, chosen_on = 50.0, float(min_mm3), "the model's smallest component, HU floor 50"
    tuned = [v for v in (val or []) if v.truth is not None]
    if tuned:
        best = -1.0
        for cand_lo in THRESHOLD_HU_GRID:
            for cand_mm in MIN_COMPONENT_GRID:
                ds = [dice(m, v.truth > 0) for m, v in zip(masks(tuned, cand_lo, cand_mm), tuned)]
                if float(np.mean(ds)) > best + 1e-9:
                    best, lo, mm = float(np.mean(ds)), cand_lo, cand_mm
        chosen_on = f"{len(tuned)} validation volumes against voxel truth"
    have = [v for v in vols if v.truth is not None]
    scores = [score_case(v.case_id, m, v.truth, v.spacing) for v, m in zip(have, masks(have, lo, mm))]  # type: ignore[arg-type]
    s = summarize(scores)
    s.pop("per_case_dice", None)
    s["operating_point"] = {"hu_low": lo, "min_component_mm3": mm, "chosen_on": chosen_on}
    if keep_scores:
        s["_scores"] = scores  # per case, for paired comparisons (not JSON)
    return s


#: The scan specificity an operating point must keep on the validation scans (the card's goal).
SPECIFICITY_FLOOR = 0.95
PROB_GRID = (0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8)


def choose_operating_point(
    probs: Sequence[np.ndarray],
    targets: Sequence[np.ndarray],
    scan_labels: Sequence[bool],
    spacings: Sequence[tuple[float, float, float]],
    min_mm3: float | None = None,
    grid: Sequence[float] = PROB_GRID,
    min_grid: Sequence[float] = MIN_COMPONENT_GRID,
    spec_floor: float = SPECIFICITY_FLOOR,
    sens_slack: float = 0.01,
) -> dict[str, Any]:
    """Threshold and smallest kept component, chosen on validation volumes with weak labels only.

    A scan is called positive when anything is left after the small components are removed (as at run
    time) and is scored against its label (positive when any slice is labelled bleed). The rule:
    1. candidates keep scan specificity >= `spec_floor` (none does: those with the highest specificity);
    2. of them, those within `sens_slack` of the highest scan sensitivity;
    3. of those, the best Dice pooled over all volumes' voxels against `targets` (pseudo-masks).
    A per-volume mean Dice (an empty call on an empty volume counting 1.0) trades a missed bleed against
    a false call one for one and says nothing of either rate; this rule states the specificity it keeps.
    """
    labels = np.asarray(scan_labels, bool)
    flat_t = np.concatenate([np.ravel(np.asarray(t) > 0) for t in targets])
    mms = [float(min_mm3)] if min_mm3 is not None else [float(m) for m in min_grid]
    rows: list[dict[str, float]] = []
    for th in grid:
        comps = [_components_mm3(p >= th, sp) for p, sp in zip(probs, spacings)]  # labelled once per threshold
        for mm in mms:
            masks = [_keep_sized(lab, sizes, mm) for lab, sizes in comps]
            calls = np.array([m.any() for m in masks])
            sens, spec = sens_spec(calls, labels)
            d = dice(np.concatenate([m.ravel() for m in masks]), flat_t, empty=0.0)
            rows.append({"threshold": float(th), "min_component_mm3": mm, "sens": sens, "spec": spec, "dice": d})

    def val(x: float) -> float:
        return -1.0 if np.isnan(x) else x

    ok = [r for r in rows if val(r["spec"]) >= spec_floor]
    if not ok:
        top = max(val(r["spec"]) for r in rows)
        ok = [r for r in rows if val(r["spec"]) >= top - 1e-9]
    best_sens = max(val(r["sens"]) for r in ok)
    near = [r for r in ok if val(r["sens"]) >= best_sens - sens_slack - 1e-9]
    pick = max(near, key=lambda r: (r["dice"], -r["min_component_mm3"]))
    return {
        "threshold": pick["threshold"],
        "min_component_mm3": pick["min_component_mm3"],
        "val_pooled_dice_vs_targets": pick["dice"],
        "val_scan_sensitivity": pick["sens"],
        "val_scan_specificity": pick["spec"],
        "val_scans": int(labels.size),
        "val_positive_scans": int(labels.sum()),
        "rule": f"scan specificity >= {spec_floor} on slice labels, then scan sensitivity within {sens_slack} "
        "of the best, then pooled Dice against the validation pseudo-masks",
    }


def pooled_dice(preds: Sequence[np.ndarray], targets: Sequence[np.ndarray]) -> float:
    """Dice of all volumes' voxels pooled: 0 when nothing is predicted or nothing is to be found.

    The checkpoint and self-training score. A per-volume mean counts an empty call on an empty volume
    as 1.0, so a segmenter that has collapsed to "nothing anywhere" can win against pseudo-masks that
    collapsed with it; pooled, it scores 0, and false positives on empty volumes still cost."""
    if not len(preds):
        return 0.0
    return dice(np.concatenate([np.ravel(p) for p in preds]), np.concatenate([np.ravel(t) for t in targets]), empty=0.0)

"""Segmentation and detection metrics on numpy masks (shared by evaluation, gates, reports)."""

from __future__ import annotations

import numpy as np


def dice(pred: np.ndarray, truth: np.ndarray, empty: float = 1.0) -> float:
    """Dice of two boolean masks; `empty` is returned when both are empty (stated convention)."""
    p = np.asarray(pred, dtype=bool)
    t = np.asarray(truth, dtype=bool)
    s = int(p.sum()) + int(t.sum())
    if s == 0:
        return float(empty)
    return 2.0 * float(np.logical_and(p, t).sum()) / s


def volume_ml(mask: np.ndarray, spacing_mm: tuple[float, float, float]) -> float:
    """Volume of a boolean mask in millilitres, from voxel spacing in mm."""
    return float(np.count_nonzero(mask)) * float(np.prod(spacing_mm)) / 1000.0


def sens_spec(pred: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    """Sensitivity and specificity of boolean calls (nan where undefined)."""
    p = np.asarray(pred, dtype=bool).ravel()
    t = np.asarray(truth, dtype=bool).ravel()
    tp = int((p & t).sum())
    tn = int((~p & ~t).sum())
    fn = int((~p & t).sum())
    fp = int((p & ~t).sum())
    sens = tp / (tp + fn) if tp + fn else float("nan")
    spec = tn / (tn + fp) if tn + fp else float("nan")
    return sens, spec

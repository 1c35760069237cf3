"""The Hounsfield-threshold baseline: blood-range HU inside the brain mask, small components dropped.

It exists to be beaten: the phantom's mimics (calcifications, falx and sinuses, the inner table,
beam hardening) are exactly what it falls for, and subacute blood is what it misses.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from edge_ich.analysis.brain import brain_mask

BLOOD_HU = (50.0, 100.0)  # acute blood and clot (notes/datasets.md)
MIN_COMPONENT_ML = 0.05


def threshold_segment(
    hu: np.ndarray,
    spacing: tuple[float, float, float],
    lo: float = BLOOD_HU[0],
    hi: float = BLOOD_HU[1],
    min_ml: float = MIN_COMPONENT_ML,
) -> np.ndarray:
    """Boolean [Z, Y, X] hemorrhage guess: HU in [lo, hi] inside the brain mask, 3D components >= min_ml."""
    v = np.asarray(hu)
    if v.ndim != 3:
        raise ValueError(f"threshold_segment wants [Z, Y, X], got shape {v.shape}")
    m = brain_mask(v) & (v >= lo) & (v <= hi)
    lab, n = ndimage.label(m, structure=ndimage.generate_binary_structure(3, 1))
    if n == 0:
        return m
    voxel_ml = float(np.prod(spacing)) / 1000.0
    sizes = np.bincount(lab.ravel()) * voxel_ml
    keep = sizes >= min_ml
    keep[0] = False
    return keep[lab]

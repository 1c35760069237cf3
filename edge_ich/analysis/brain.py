"""Intracranial masks of head CT from HU alone (no model).

`brain_mask`: skull ring -> filled -> soft tissue, one pixel away from the inner table (the threshold
baseline and the realism report use it). `cavity_mask`: everything inside the skull that is not bone,
up to the inner table, so the extra-axial ring where epidural and subdural blood lie is kept (the
pseudo-mask refinement uses it).
Works per axial slice so it also works on single slices and on tilted or partial series.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from edge_ich.errors import InputError
from edge_ich.preprocess import block_max

BONE_HU = 250.0  # above: skull (cortical and most diploic bone)
SOFT_HU = (-15.0, 135.0)  # intracranial soft tissue, CSF to dense clot and faint calcification


def brain_mask(hu: np.ndarray) -> np.ndarray:
    """Boolean mask of intracranial soft tissue, same shape as `hu` ([Y, X] or [Z, Y, X], in HU)."""
    a = np.asarray(hu)
    if a.ndim == 2:
        return _slice_mask(a)
    if a.ndim == 3:
        return np.stack([_slice_mask(s) for s in a]) if len(a) else np.zeros(a.shape, bool)
    raise InputError(f"brain_mask wants a 2D slice or a 3D volume, got {a.ndim} dimensions")


def _slice_mask(s: np.ndarray) -> np.ndarray:
    """One slice: close the skull ring at half resolution, fill it, keep soft tissue inside it."""
    h, w = s.shape
    f = 2 if min(h, w) >= 384 else 1
    small = block_max(s[: h - h % f, : w - w % f], f) if f > 1 else s
    bone = small > BONE_HU
    if bone.sum() < 20:
        return np.zeros(s.shape, bool)
    r = max(2, round(min(small.shape) / 64))
    closed = ndimage.binary_closing(np.pad(bone, r + 1), iterations=r)[r + 1 : -r - 1, r + 1 : -r - 1]
    inside = ndimage.binary_fill_holes(closed) & ~ndimage.binary_dilation(closed)
    if f > 1:
        inside = np.repeat(np.repeat(inside, f, 0), f, 1)
        inside = np.pad(inside, ((0, h - inside.shape[0]), (0, w - inside.shape[1])))
    m = inside & (s >= SOFT_HU[0]) & (s <= SOFT_HU[1])
    lab, n = ndimage.label(m)
    if n == 0:
        return m
    sizes = np.bincount(lab.ravel())[1:]
    keep = np.zeros(n + 1, bool)
    keep[1:] = sizes >= max(0.1 * sizes.max(), 0.002 * s.size)
    return keep[lab]


def cavity_mask(hu: np.ndarray) -> np.ndarray:
    """Boolean mask of the intracranial cavity up to the inner table ([Y, X] or [Z, Y, X], in HU).

    The skull (> BONE_HU) is closed and filled; the cavity is the largest non-bone region inside it.
    Unlike `brain_mask` it keeps the ring next to the bone and does not gate HU, so extra-axial blood,
    its partial volume with the inner table, and CSF all stay in.
    """
    a = np.asarray(hu)
    if a.ndim == 2:
        return _slice_cavity(a)
    if a.ndim == 3:
        return np.stack([_slice_cavity(s) for s in a]) if len(a) else np.zeros(a.shape, bool)
    raise InputError(f"cavity_mask wants a 2D slice or a 3D volume, got {a.ndim} dimensions")


def _slice_cavity(s: np.ndarray) -> np.ndarray:
    bone = s > BONE_HU
    if bone.sum() < 20:
        return np.zeros(s.shape, bool)
    r = max(2, round(min(s.shape) / 64))
    closed = ndimage.binary_closing(np.pad(bone, r + 1), iterations=r)[r + 1 : -r - 1, r + 1 : -r - 1]
    inside = ndimage.binary_fill_holes(closed) & ~bone & (s > -50.0)
    lab, n = ndimage.label(inside)
    if n == 0:
        return inside
    sizes = np.bincount(lab.ravel())
    sizes[0] = 0
    return np.asarray(lab == int(sizes.argmax()))

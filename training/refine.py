"""Unsupervised refinement of class activation maps into voxel pseudo-masks.

No voxel truth is used. On slices labelled positive: the CAM region (above a fraction of
the slice's peak) inside the brain mask; Hounsfield gating to the acute-blood range;
two-class k-means on HU inside the CAM region to split blood from the brain around it;
candidates next to calcification or bone dropped; holes filled; 3D connected components kept only where the CAM is strong and the component
is big enough; and a neighbouring-slice check that drops small islands that appear in one
slice only while the slices around it are empty. Slices labelled negative stay empty.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy import ndimage
from scipy.cluster.vq import kmeans2


@dataclass
class RefineParams:
    """Knobs of the refinement (HU values are for acute blood on non-contrast CT)."""

    cam_threshold: float = 0.25  # fraction of the slice's CAM peak that opens the search region
    cam_dilate_px: int = 2  # grow the CAM region a little: CAMs are coarse (stride 8)
    hu_low: float = 48.0
    hu_high: float = 100.0  # above: calcification, bone
    smooth_sigma_px: float = 0.7  # denoise HU before gating
    component_cam_peak: float = 0.5  # a kept component must reach this CAM value somewhere
    min_voxels: int = 4
    single_slice_min_voxels: int = 12  # a component in one slice only, with empty neighbours, must be this big
    brain_erode_px: int = 2  # keep away from the inner table (partial-volume skull is blood-bright)
    dense_hu: float = 130.0  # calcification and bone: their blurred rims look like blood...
    dense_margin_px: int = 2  # ...so candidates this close to them are dropped

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _kmeans_split(values: np.ndarray, seed: int = 0) -> float:
    """HU value separating two 1D k-means clusters (blood vs the brain around it)."""
    if values.size < 8:
        return float("-inf")
    lo, hi = np.percentile(values, [20, 95])
    if hi - lo < 1.0:
        return float("-inf")
    centers, _ = kmeans2(values.astype(np.float64)[:, None], np.array([[lo], [hi]]), minit="matrix", iter=20, seed=seed)
    return float(centers.mean())


def pseudo_masks(
    hu: np.ndarray, cam: np.ndarray, positive: np.ndarray, brain: np.ndarray, params: RefineParams | None = None
) -> np.ndarray:
    """Pseudo-mask bool [Z, H, W] from HU [Z,H,W], CAM [Z,H,W] in [0,1], slice labels [Z], brain mask [Z,H,W]."""
    p = params or RefineParams()
    pos = np.asarray(positive, dtype=bool)
    out = np.zeros(hu.shape, dtype=bool)
    if not pos.any():
        return out
    smooth = (
        ndimage.gaussian_filter(hu.astype(np.float32), sigma=(0, p.smooth_sigma_px, p.smooth_sigma_px))
        if p.smooth_sigma_px > 0
        else hu
    )
    inner = brain.astype(bool)
    if p.brain_erode_px > 0:
        st = ndimage.generate_binary_structure(2, 1)
        inner = np.stack([ndimage.binary_erosion(b, st, iterations=p.brain_erode_px) for b in inner])
    region = (cam >= p.cam_threshold) & pos[:, None, None]
    if p.cam_dilate_px > 0:
        region = np.stack([ndimage.binary_dilation(r, iterations=p.cam_dilate_px) if r.any() else r for r in region])
    region &= inner
    if p.dense_margin_px > 0:
        dense = hu > p.dense_hu
        if dense.any():
            st = ndimage.generate_binary_structure(2, 1)
            region &= ~np.stack(
                [ndimage.binary_dilation(d, st, iterations=p.dense_margin_px) if d.any() else d for d in dense]
            )
    gate = region & (smooth >= p.hu_low) & (smooth <= p.hu_high)
    split = _kmeans_split(smooth[region & (smooth > -20) & (smooth <= p.hu_high)])
    cand = gate & (smooth >= split)
    cand = np.stack([ndimage.binary_fill_holes(c) if c.any() else c for c in cand])
    cand &= inner
    labels, count = ndimage.label(cand, structure=np.ones((3, 3, 3), dtype=bool))
    if count == 0:
        return out
    idx = np.arange(1, count + 1)
    sizes = ndimage.sum_labels(np.ones_like(labels), labels, idx)
    peaks = ndimage.maximum(cam, labels, idx)
    objects = ndimage.find_objects(labels)
    for lab, size, peak, sl in zip(idx, sizes, peaks, objects):
        if size < p.min_voxels or peak < p.component_cam_peak:
            continue
        z0, z1 = sl[0].start, sl[0].stop
        if z1 - z0 == 1 and size < p.single_slice_min_voxels:
            neighbours = [z for z in (z0 - 1, z0 + 1) if 0 <= z < hu.shape[0]]
            if not any(out[z].any() or (labels[z] > 0).any() for z in neighbours):
                continue
        out[sl] |= labels[sl] == lab
    return out

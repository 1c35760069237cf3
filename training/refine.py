"""Unsupervised refinement of class activation maps into voxel pseudo-masks.

No voxel truth is used here. On slices labelled positive only:
- the search region is where the CAM (scaled by its volume's maximum) reaches `cam_threshold`,
  inside the intracranial cavity (`edge_ich.analysis.brain.cavity_mask`), which keeps the
  extra-axial ring where epidural and subdural blood lie;
- a voxel is blood when it is denser than the slice's own brain level (the median HU of its
  parenchyma) by `rel_hu`, at least `hu_low` and at most `hu_high`: relative density, so the
  gate follows the scanner's calibration and the slice's beam hardening;
- optionally (`asym_hu` > 0) also where it is that much denser than the mirror image across the
  head's midline: a nearly isodense collection on one side against sulcal CSF on the other;
- the thin ring of 100-250 HU voxels between such blood and the inner table is added
  (partial volume of blood and bone, which voxel truth counts as blood);
- holes filled; 3D components kept when the CAM reaches `component_cam_peak` in them and they
  are big enough; a one-slice island with empty neighbours must be larger.
Slices labelled negative stay empty. `self_training_masks` turns a segmenter's probabilities
into the next round's pseudo-masks under the same slice labels.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy import ndimage

BONE_HU = 250.0


@dataclass
class RefineParams:
    """Knobs of the refinement (HU values are for acute blood on non-contrast CT)."""

    cam_threshold: float = 0.15  # CAM value (of the volume's maximum) that opens the search region
    cam_dilate_px: int = 2  # grow the CAM region (stride-4 CAMs are coarse)
    hu_low: float = 44.0  # absolute floor for blood
    rel_hu: float = 14.0  # blood is this much denser than the slice's median parenchyma
    hu_high: float = 100.0  # above: calcification, bone
    smooth_sigma_px: float = 0.0  # denoise HU before gating (0: smoothing smears thin blood into the skull)
    partial_volume: bool = True  # add the 100-250 HU ring between blood and bone
    asym_hu: float = 0.0  # > 0: also voxels this much denser than their mirror image (isodense collections)
    component_cam_peak: float = 0.5  # a kept component must reach this CAM value somewhere
    min_voxels: int = 4
    single_slice_min_voxels: int = 12  # a component in one slice only, with empty neighbours, must be this big

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def brain_level(hu2d: np.ndarray, cavity2d: np.ndarray, default: float = 32.0) -> float:
    """Median HU of the slice's parenchyma (cavity voxels between 0 and 60 HU)."""
    vals = hu2d[cavity2d & (hu2d > 0) & (hu2d < 60)]
    return float(np.median(vals)) if vals.size > 50 else default


def mirrored(img: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """`img` reflected across the principal long axis of `mask` through its centroid (the head's midline)."""
    ys, xs = np.nonzero(mask)
    if ys.size < 50:
        return img.copy()
    cy, cx = ys.mean(), xs.mean()
    cov = np.cov(np.stack([ys - cy, xs - cx]))
    evals, evecs = np.linalg.eigh(cov)
    u = evecs[:, int(np.argmax(evals))]  # midline direction (anterior-posterior for an axial head)
    yy, xx = np.mgrid[0 : img.shape[0], 0 : img.shape[1]].astype(np.float64)
    dy, dx = yy - cy, xx - cx
    along = dy * u[0] + dx * u[1]
    ry, rx = 2 * along * u[0] - dy + cy, 2 * along * u[1] - dx + cx
    return ndimage.map_coordinates(img, [ry, rx], order=1, mode="nearest").astype(img.dtype, copy=False)


def _keep_components(cand: np.ndarray, cam: np.ndarray, p: RefineParams) -> np.ndarray:
    out = np.zeros(cand.shape, dtype=bool)
    labels, count = ndimage.label(cand, structure=np.ones((3, 3, 3), dtype=bool))
    if count == 0:
        return out
    idx = np.arange(1, count + 1)
    sizes = ndimage.sum_labels(np.ones_like(labels), labels, idx)
    peaks = ndimage.maximum(cam, labels, idx)
    for lab, size, peak, sl in zip(idx, sizes, peaks, ndimage.find_objects(labels)):
        if size < p.min_voxels or peak < p.component_cam_peak:
            continue
        z0, z1 = sl[0].start, sl[0].stop
        if z1 - z0 == 1 and size < p.single_slice_min_voxels:
            neighbours = [z for z in (z0 - 1, z0 + 1) if 0 <= z < cand.shape[0]]
            if not any((labels[z] > 0).any() for z in neighbours):
                continue
        out[sl] |= labels[sl] == lab
    return out


def pseudo_masks(
    hu: np.ndarray, cam: np.ndarray, positive: np.ndarray, cavity: np.ndarray, params: RefineParams | None = None
) -> np.ndarray:
    """Pseudo-mask bool [Z,H,W] from HU [Z,H,W], CAM [Z,H,W] in [0,1], slice labels [Z], cavity mask [Z,H,W]."""
    p = params or RefineParams()
    pos = np.asarray(positive, dtype=bool)
    cav = np.asarray(cavity, dtype=bool)
    cand = np.zeros(hu.shape, dtype=bool)
    if not pos.any():
        return cand
    hu = np.asarray(hu, dtype=np.float32)
    for z in np.nonzero(pos)[0]:
        c = cav[z]
        if not c.any():
            continue
        s = ndimage.gaussian_filter(hu[z], p.smooth_sigma_px) if p.smooth_sigma_px > 0 else hu[z]
        region = cam[z] >= p.cam_threshold
        if p.cam_dilate_px > 0 and region.any():
            region = ndimage.binary_dilation(region, iterations=p.cam_dilate_px)
        region &= c
        if not region.any():
            continue
        level = brain_level(hu[z], c)
        blood = region & (s >= max(p.hu_low, level + p.rel_hu)) & (s <= p.hu_high)
        if p.asym_hu > 0:
            mir = mirrored(s, c)
            blood |= region & (s - mir >= p.asym_hu) & (s >= level - 8.0) & (s <= p.hu_high)
        blood = ndimage.binary_fill_holes(blood) & c
        if p.partial_volume and blood.any():
            ring = ndimage.binary_dilation(blood) & region & (hu[z] > p.hu_high) & (hu[z] <= BONE_HU)
            blood |= ring
        cand[z] = blood
    return _keep_components(cand, cam, p)


def self_training_masks(
    prob: np.ndarray,
    cam: np.ndarray,
    positive: np.ndarray,
    cavity: np.ndarray,
    threshold: float = 0.5,
    cam_floor: float = 0.1,
) -> np.ndarray:
    """The next round's pseudo-masks: the segmenter's own call (probability >= `threshold`) on slices
    labelled positive, inside the cavity, where the CAM is not silent (>= `cam_floor`). Slices labelled
    negative stay empty whatever the segmenter says."""
    pos = np.asarray(positive, dtype=bool)[:, None, None]
    return (np.asarray(prob) >= threshold) & pos & np.asarray(cavity, bool) & (np.asarray(cam) >= cam_floor)

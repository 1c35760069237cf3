"""Assessability from the pixels: HU where a head CT has them and an intracranial cavity inside a skull.

A few slices spread over the series are read before inference (the rest stream later):
- not constant (a slice of one value holds no image);
- HU sanity: values inside the CT scale, air below -800 HU around the head, bone above 300 HU;
- an intracranial cavity: a region of brain-range tissue (-10..100 HU, median 0..70) of at least
  MIN_CAVITY_CM2 that the skull (bone, closed over 5 mm foramina and sutures) walls almost all
  round (the scalp borders air, abdominal organs border fat, a vertebral canal is too small);
- noise: robust spread of a 3x3 high-pass inside the cavity; above NOISE_WARN_HU is a warning.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from edge_ich.analysis.labels import label4
from edge_ich.analysis.morph import binary_closing, binary_dilation, binary_erosion, binary_fill_holes, uniform3
from edge_ich.preprocess import block_max, block_mean
from edge_ich.sources.findings import Check, Warn

#: Where the sampled slices lie, as fractions of the series from its first to its last slice.
SAMPLE_AT = (0.2, 0.35, 0.5, 0.65, 0.8)
AIR_HU = -800.0
BONE_HU = 300.0
SKULL_HU = 250.0
HU_RANGE = (-4000.0, 4000.0)  # 1st/99th percentiles outside this are not CT numbers
MIN_AIR_FRACTION = 0.005
MIN_BONE_FRACTION = 0.002
MIN_CAVITY_CM2 = 20.0
MAX_CAVITY_CM2 = 400.0
MIN_WALLED = 0.55  # brain: 0.96-1.0 (0.6 under 340:1 lossy compression); scalp, neck, abdomen: under 0.4
BRAIN_MEDIAN_HU = (0.0, 70.0)
CLOSE_MM = 5.0
WORK_PX = 128  # cavity search on a grid of about this many pixels per side
NOISE_WARN_HU = 12.0


@dataclass
class SliceStats:
    """What one sampled slice showed."""

    index: int
    constant: bool
    p1: float = 0.0
    p99: float = 0.0
    air: float = 0.0
    bone: float = 0.0
    cavity_cm2: float = 0.0
    walled: float = 0.0  # share of the cavity's border that is skull
    median_hu: float = 0.0
    noise_hu: float | None = None

    @property
    def cavity_ok(self) -> bool:
        return (
            MIN_CAVITY_CM2 <= self.cavity_cm2 <= MAX_CAVITY_CM2
            and self.walled >= MIN_WALLED
            and BRAIN_MEDIAN_HU[0] <= self.median_hu <= BRAIN_MEDIAN_HU[1]
        )


def sample_indices(present: Sequence[int]) -> list[int]:
    """Up to len(SAMPLE_AT) distinct imaged slice indices spread over the series."""
    if not present:
        return []
    n = len(present)
    return sorted({present[min(n - 1, int(round(f * (n - 1))))] for f in SAMPLE_AT})


def cavity(hu: np.ndarray, pixel_mm: tuple[float, float]) -> tuple[np.ndarray, float, float, float, int]:
    """(best cavity on the working grid, area cm2, share of its border on bone, median HU, grid factor).

    A cavity is a connected region of soft tissue (-10..100 HU) that the skull (bone closed over
    CLOSE_MM) borders almost all round; the image edge does not count, so a head cropped by a
    tight field of view still shows its cavity. The scalp borders air, abdominal organs border fat.
    """
    h, w = hu.shape
    f = max(1, int(round(min(h, w) / WORK_PX)))
    hh, ww = h - h % f, w - w % f
    if f > 1:
        crop = hu[:hh, :ww]
        bone, soft = block_max(crop, f) > SKULL_HU, block_mean(crop, f)
    else:
        bone, soft = hu > SKULL_HU, hu
    px = (pixel_mm[0] * f, pixel_mm[1] * f)
    r = int(np.clip(np.ceil(CLOSE_MM / min(px)), 1, 10))
    closed = binary_closing(np.pad(bone, r + 1), iterations=r)[r + 1 : -r - 1, r + 1 : -r - 1]
    tissue = (soft >= -10) & (soft <= 100) & ~closed
    lab, n = label4(tissue)
    empty = np.zeros_like(tissue)
    if n == 0:
        return empty, 0.0, 0.0, 0.0, f
    sizes = np.bincount(lab.ravel())[1:]
    px_cm2 = px[0] * px[1] / 100.0
    best: tuple[float, float, float, int] = (0.0, 0.0, 0.0, 0)
    wall = closed | (soft > 100)  # bone, and the partial-volume band of the inner table
    large = np.flatnonzero(sizes * px_cm2 >= MIN_CAVITY_CM2)[:8] + 1  # few regions are that large
    for k in large if large.size else [1 + int(np.argmax(sizes))]:
        region = lab == k
        # the outer border only: holes inside (ventricles, calcification, artefacts) are no wall
        rim = binary_dilation(region) & ~binary_fill_holes(region)
        walled = float(wall[rim].mean()) if rim.any() else 0.0
        area = float(sizes[k - 1]) * px_cm2
        if best[3] == 0 or (walled, area) > best[:2]:
            best = (walled, area, float(np.median(soft[region])), int(k))
    return lab == best[3], best[1], best[0], best[2], f


def noise_hu(hu: np.ndarray, cav: np.ndarray, f: int) -> float | None:
    """Robust spread (HU) of a 3x3 high-pass over brain-range pixels inside the cavity; None if too few."""
    if int(cav.sum()) * f * f < 200:
        return None
    # the cavity's bounding box on the working grid, then its pixels on the full grid (f x f each)
    rows, cols = np.flatnonzero(cav.any(axis=1)), np.flatnonzero(cav.any(axis=0))
    r0, r1, c0, c1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    full = np.repeat(np.repeat(cav[r0:r1, c0:c1], f, 0), f, 1)
    y0, x0 = r0 * f, c0 * f
    crop = hu[y0 : y0 + full.shape[0], x0 : x0 + full.shape[1]].astype(np.float64)
    keep = binary_erosion(full & (crop > 0) & (crop < 80), iterations=2)
    if keep.sum() < 200:
        return None
    resid = (crop - uniform3(crop))[keep]
    mad = float(np.median(np.abs(resid - np.median(resid))))
    return 1.4826 * mad * float(np.sqrt(9.0 / 8.0))


def slice_stats(index: int, hu: np.ndarray, pixel_mm: tuple[float, float]) -> SliceStats:
    """The gate's measurements of one slice in HU."""
    a = np.asarray(hu, dtype=np.float32)
    if not a.size or float(a.max()) == float(a.min()) or not np.isfinite(a).all():
        return SliceStats(index, constant=True)  # one value (or no finite values): no image
    p1, p99 = (float(v) for v in np.percentile(a, [1, 99]))
    st = SliceStats(index, False, p1, p99, float(np.mean(a < AIR_HU)), float(np.mean(a > BONE_HU)))
    if HU_RANGE[0] <= p1 and p99 <= HU_RANGE[1]:
        cav, st.cavity_cm2, st.walled, st.median_hu, f = cavity(a, pixel_mm)
        if st.cavity_ok:
            st.noise_hu = noise_hu(a, cav, f)
    return st


def pixel_checks(
    read_hu: Callable[[int], np.ndarray], present: Sequence[int], pixel_mm: tuple[float, float], rescale: str
) -> tuple[str | None, list[Check], list[Warn]]:
    """(reason not assessable or None, checks, warnings) from a few sampled slices."""
    stats = [slice_stats(i, read_hu(i), pixel_mm) for i in sample_indices(present)]
    checks: list[Check] = []
    warns: list[Warn] = []
    live = [s for s in stats if not s.constant]
    checks.append(Check("sampled slices", bool(live), f"{len(stats)} read, {len(stats) - len(live)} constant"))
    if not live:
        return "the sampled slices hold one constant value each (no image)", checks, warns
    p1, p99 = min(s.p1 for s in live), max(s.p99 for s in live)
    air, bone = max(s.air for s in live), max(s.bone for s in live)
    best = max(live, key=lambda s: (s.cavity_ok, s.cavity_cm2))
    hu_ok = HU_RANGE[0] <= p1 and p99 <= HU_RANGE[1] and air >= MIN_AIR_FRACTION and bone >= MIN_BONE_FRACTION
    checks.append(
        Check("HU sanity", hu_ok, f"1st-99th percentile {p1:.0f} to {p99:.0f} HU, air {air:.1%}, bone {bone:.1%}")
    )
    checks.append(
        Check(
            "intracranial cavity",
            best.cavity_ok,
            f"{best.cavity_cm2:.0f} cm2, {best.walled:.0%} walled by bone, median {best.median_hu:.0f} HU",
        )
    )
    reason = None
    if not HU_RANGE[0] <= p1 or not p99 <= HU_RANGE[1]:
        reason = f"pixel values ({p1:.0f} to {p99:.0f}) are not on the CT number scale"
    elif air < MIN_AIR_FRACTION:
        reason = f"no air (below {AIR_HU:g} HU) around the head in the sampled slices: the pixels are not HU"
    elif bone < MIN_BONE_FRACTION:
        reason = f"no bone (above {BONE_HU:g} HU) in the sampled slices: no skull, or the pixels are not HU"
    elif not best.cavity_ok:
        reason = (
            "no intracranial cavity found in the pixels (brain-range tissue of at least "
            f"{MIN_CAVITY_CM2:g} cm2 walled by skull): not a head CT"
        )
    if reason and rescale == "absent":
        reason = f"RescaleSlope/RescaleIntercept absent and the stored values are not HU without them ({reason})"
    noise = [s.noise_hu for s in live if s.noise_hu is not None]
    if noise:
        level = float(np.median(noise))
        checks.append(Check("noise", level <= NOISE_WARN_HU, f"{level:.1f} HU (3x3 high-pass, robust)"))
        if level > NOISE_WARN_HU and reason is None:
            warns.append(
                Warn(
                    "noise_high",
                    f"image noise {level:.1f} HU is unusually high (above {NOISE_WARN_HU:g} HU; low dose?): "
                    "small or faint bleeds may be missed or mimicked",
                    "noise high",
                )
            )
    return reason, checks, warns

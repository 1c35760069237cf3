"""Synthetic hematomas inserted into real head CT slices: real anatomy around a lesion of known truth.

Used by the real-anatomy check of the bundled model (tests/test_real_anatomy.py,
benchmarks/real_anatomy.py). A real axial slice is stacked into a short series; an ellipsoidal
clot of a given density (acute blood 50-80 HU) is blended into the brain parenchyma with a
one-pixel partial-volume edge and noise of the slice's own level, so only its density and shape
are new. The centre is placed deep in the intracranial soft tissue, away from the skull.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Hematoma:
    """One inserted lesion: centre (row, col) on the middle slice, radii in mm, density in HU."""

    center_rc: tuple[int, int]
    radius_mm: float
    depth_mm: float
    density_hu: float


def parenchyma_center(hu: np.ndarray, pixel_mm: float, radius_mm: float) -> tuple[int, int]:
    """A point of brain parenchyma (15-45 HU) at least radius + 8 mm inside the intracranial tissue."""
    from scipy import ndimage

    from edge_ich.analysis.brain import brain_mask

    brain = brain_mask(hu)
    depth = ndimage.distance_transform_edt(brain) * pixel_mm
    tissue = ndimage.uniform_filter(((hu >= 15) & (hu <= 45)).astype(np.float32), size=max(3, int(8 / pixel_mm)))
    score = np.where(depth >= radius_mm + 8.0, tissue + depth / 1000.0, -1.0)
    r, c = np.unravel_index(int(np.argmax(score)), score.shape)
    if score[r, c] < 0:
        raise ValueError("no parenchyma deep enough for a lesion of this size on this slice")
    return int(r), int(c)


def stack_with_hematoma(
    hu: np.ndarray,
    pixel_mm: float,
    slice_mm: float,
    n_slices: int,
    lesion: Hematoma | None,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """(HU volume [Z, Y, X], truth mask) of `n_slices` copies of `hu`, the lesion centred on the middle one."""
    vol = np.repeat(hu[None].astype(np.float32), n_slices, axis=0)
    truth = np.zeros(vol.shape, dtype=bool)
    if lesion is None:
        return vol, truth
    rng = np.random.default_rng(seed)
    rows, cols = np.indices(hu.shape, dtype=np.float32)
    dy = (rows - lesion.center_rc[0]) * pixel_mm
    dx = (cols - lesion.center_rc[1]) * pixel_mm
    mid = (n_slices - 1) / 2.0
    for z in range(n_slices):
        dz = (z - mid) * slice_mm
        inside = 1.0 - (dz / lesion.depth_mm) ** 2
        if inside <= 0:
            continue
        r = lesion.radius_mm * float(np.sqrt(inside))
        dist = np.sqrt(dx**2 + dy**2)
        weight = np.clip((r - dist) / pixel_mm + 0.5, 0.0, 1.0)  # one-pixel partial-volume edge
        if not weight.any():
            continue
        noise = rng.normal(0.0, 3.0, hu.shape).astype(np.float32)
        vol[z] = vol[z] * (1.0 - weight) + (lesion.density_hu + noise) * weight
        truth[z] = weight >= 0.5
    return vol, truth


CASE_SIZES_MM = (8.0, 12.0, 16.0)
CASE_DENSITIES_HU = (50.0, 65.0, 80.0)


def write_series(out_dir: Path, template: Any, vol: np.ndarray, slice_mm: float) -> list[Path]:
    """Write an HU volume as a CT series using a real slice's header (new UIDs, positions along z)."""
    import copy

    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    from edge_ich.sources.dicom.pixels import rescale_of

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    src = template
    slope, intercept = rescale_of(src)
    series, frame = generate_uid(), generate_uid()
    signed = int(getattr(src, "PixelRepresentation", 1)) == 1
    lo, hi = (-32768, 32767) if signed else (0, 65535)
    x0, y0, _ = (float(v) for v in getattr(src, "ImagePositionPatient", [0.0, 0.0, 0.0]))
    paths = []
    for k in range(vol.shape[0]):
        ds = copy.deepcopy(src)
        stored = np.clip(np.rint((vol[k] - intercept) / slope), lo, hi).astype(np.int16 if signed else np.uint16)
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.add_new(0x7FE00010, "OW", stored.tobytes())  # PixelData
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 16, 15
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.SeriesInstanceUID, ds.FrameOfReferenceUID = series, frame
        ds.ImagePositionPatient = [f"{x0:.4f}", f"{y0:.4f}", f"{k * slice_mm:.4f}"]
        ds.ImageOrientationPatient = ["1", "0", "0", "0", "1", "0"]
        ds.SliceThickness = f"{slice_mm:g}"
        ds.InstanceNumber = k + 1
        path = out / f"slice_{k:03d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths

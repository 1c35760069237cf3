"""Small real-slice CT series on disk for the output-writer tests, and a SliceSource over them.

The series are built with pydicom from the real slices pydicom and pydicom-data ship (the
CQ500 head CT 693_UNCR.dcm, 512x512; pydicom's CT_small.dcm, 128x128): copies with new UIDs
and positions along a chosen orientation. `SeriesOnDisk` sorts them along the slice normal
(never by InstanceNumber or file name) and exposes what the writers take: headers in sorted
order, SOP Instance UIDs, geometry, `read_hu`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

from edge_ich.sources.volume import Geometry, Skipped, affine_from_dicom


def pixel_lps(header: pydicom.Dataset, row: int, col: int) -> np.ndarray:
    """LPS position (mm) of pixel (row, col) of a slice, straight from its DICOM header."""
    iop = np.asarray(header.ImageOrientationPatient, dtype=float)
    row_mm, col_mm = (float(v) for v in header.PixelSpacing)
    return np.asarray(header.ImagePositionPatient, dtype=float) + col * col_mm * iop[:3] + row * row_mm * iop[3:]


@dataclass
class SeriesOnDisk:
    """A sorted DICOM series (stand-in for the runtime's DicomSeries in these tests)."""

    paths: list[Path]
    headers: list[pydicom.Dataset]
    geometry: Geometry
    kind: str = "dicom"
    skipped: list[Skipped] = field(default_factory=list)

    @property
    def sop_instance_uids(self) -> list[str]:
        return [str(h.SOPInstanceUID) for h in self.headers]

    def read_hu(self, i: int) -> np.ndarray:
        ds = pydicom.dcmread(self.paths[i])
        slope = float(ds.get("RescaleSlope", 1.0))
        intercept = float(ds.get("RescaleIntercept", 0.0))
        return (ds.pixel_array.astype(np.float32) * slope + intercept).astype(np.float32)

    def summary(self) -> dict[str, Any]:
        return {"kind": self.kind, "slices": len(self.paths)}


def open_sorted(paths: list[Path]) -> SeriesOnDisk:
    """Read headers, sort along the slice normal, build the native geometry."""
    headers = [pydicom.dcmread(p, stop_before_pixels=True) for p in paths]
    iop = np.asarray(headers[0].ImageOrientationPatient, dtype=float)
    normal = np.cross(iop[:3], iop[3:])
    order = sorted(
        range(len(paths)), key=lambda k: float(np.dot(np.asarray(headers[k].ImagePositionPatient, dtype=float), normal))
    )
    paths = [paths[k] for k in order]
    headers = [headers[k] for k in order]
    first = np.asarray(headers[0].ImagePositionPatient, dtype=float)
    step = (
        (np.asarray(headers[1].ImagePositionPatient, dtype=float) - first)
        if len(headers) > 1
        else normal * float(headers[0].get("SliceThickness", 1.0))
    )
    row_mm, col_mm = (float(v) for v in headers[0].PixelSpacing)
    affine = affine_from_dicom(iop, first, row_mm, col_mm, step)
    shape = (len(headers), int(headers[0].Rows), int(headers[0].Columns))
    return SeriesOnDisk(paths, headers, Geometry(shape, (float(np.linalg.norm(step)), row_mm, col_mm), affine))


def make_series(
    out_dir: Path,
    n: int = 6,
    *,
    base: str = "693_UNCR.dcm",
    slice_mm: float = 5.0,
    reverse: bool = False,
    flip_row: bool = False,
    frame_of_reference: bool = True,
) -> SeriesOnDisk:
    """Write `n` copies of a real slice as one series and open it sorted.

    reverse: positions run against acquisition (InstanceNumber and file names ascend while the
    position along the normal descends). flip_row: ImageOrientationPatient's row cosine is
    negated, so the slice normal points the other way too. frame_of_reference: keep (or add) a
    FrameOfReferenceUID; False removes it.
    """
    src = get_testdata_file(base)
    assert src, f"{base} not available (pydicom-data installed?)"
    ds0 = pydicom.dcmread(src)
    out_dir.mkdir(parents=True, exist_ok=True)
    series_uid, for_uid = generate_uid(), generate_uid()
    row = np.array([-1.0, 0.0, 0.0]) if flip_row else np.array([1.0, 0.0, 0.0])
    col = np.array([0.0, 1.0, 0.0])
    origin = np.asarray(ds0.ImagePositionPatient, dtype=float)
    direction = -1.0 if reverse else 1.0
    paths = []
    for k in range(n):
        ds = pydicom.dcmread(src)
        ds.SeriesInstanceUID = series_uid
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.InstanceNumber = k + 1
        ds.ImageOrientationPatient = [float(v) for v in (*row, *col)]
        ds.ImagePositionPatient = [float(v) for v in origin + np.array([0.0, 0.0, direction * k * slice_mm])]
        ds.SliceThickness = slice_mm
        if frame_of_reference:
            ds.FrameOfReferenceUID = for_uid
        elif "FrameOfReferenceUID" in ds:
            del ds.FrameOfReferenceUID
        path = out_dir / f"{k:03d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return open_sorted(paths)


def blob_mask(shape: tuple[int, int, int], seed: int = 0) -> np.ndarray:
    """An asymmetric bool mask (different on every slice, some slices empty) to catch flips and reorders."""
    z, y, x = shape
    rng = np.random.default_rng(seed)
    mask = np.zeros(shape, dtype=bool)
    for k in range(z):
        if k % 3 == 2:
            continue  # an empty slice
        r0 = int(rng.integers(0, y // 2))
        c0 = int(rng.integers(0, x // 2))
        mask[k, r0 : r0 + max(2, y // 8), c0 : c0 + max(3, x // 5)] = True
        mask[k, r0, c0 + max(3, x // 5) : c0 + max(3, x // 5) + 3] = True  # a tail that breaks symmetry
    return mask

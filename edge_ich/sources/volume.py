"""What the pipeline reads from: a stack of axial slices with known geometry.

Conventions used everywhere in edge-ich:
- arrays are indexed [slice, row, col] (z, y, x), slices sorted along the slice normal;
- `affine_lps` maps voxel indices (col, row, slice, 1) to patient LPS millimetres (DICOM's
  frame); NIfTI writers convert to RAS;
- spacing is (slice_mm, row_mm, col_mm), slice spacing measured from positions, not from
  SliceThickness.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np


@dataclass(frozen=True)
class Skipped:
    """A file left out of the run and why (never patient data in the reason)."""

    path: str
    reason: str
    series_uid: str | None = None  # the series the file claims to belong to, when its header said so


@dataclass
class Geometry:
    """Native grid of a sorted series."""

    shape: tuple[int, int, int]  # (slices, rows, cols)
    spacing: tuple[float, float, float]  # (slice, row, col) mm
    affine_lps: np.ndarray  # 4x4, (col, row, slice) -> LPS mm
    warnings: list[str] = field(default_factory=list)
    missing: tuple[int, ...] = ()  # slice indices of the grid where no slice was imaged (gaps)
    gaps: list[dict[str, Any]] = field(default_factory=list)  # each gap: after_slice, missing, size_mm, offset_mm
    tilt_deg: float = 0.0  # gantry tilt the affine follows (0 when the positions lie along the normal)

    @property
    def voxel_ml(self) -> float:
        return float(np.prod(self.spacing)) / 1000.0


class SliceSource(Protocol):
    """A sorted series that can be read one slice at a time (for streaming)."""

    geometry: Geometry
    kind: str  # "dicom" or "nifti"
    skipped: list[Skipped]

    def read_hu(self, i: int) -> np.ndarray:
        """Slice i (in sorted order) in Hounsfield units, float32 [rows, cols]."""
        ...

    def summary(self) -> dict[str, Any]:
        """Non-identifying description for the report (UIDs, counts, spacing, kind)."""
        ...


def affine_from_dicom(
    orientation: np.ndarray, first_position: np.ndarray, row_mm: float, col_mm: float, step: np.ndarray
) -> np.ndarray:
    """Build `affine_lps` from ImageOrientationPatient, the first slice's position and the slice step vector.

    orientation: 6 floats, row direction cosine (along a row, i.e. increasing col) then column
    direction cosine (increasing row). PixelSpacing is (row spacing, col spacing).
    """
    r = np.asarray(orientation[:3], dtype=float)
    c = np.asarray(orientation[3:], dtype=float)
    a = np.eye(4)
    a[:3, 0] = r * col_mm
    a[:3, 1] = c * row_mm
    a[:3, 2] = np.asarray(step, dtype=float)
    a[:3, 3] = np.asarray(first_position, dtype=float)
    return a


def lps_to_ras(affine_lps: np.ndarray) -> np.ndarray:
    """Flip the first two world axes: LPS -> RAS (NIfTI's frame)."""
    return np.diag([-1.0, -1.0, 1.0, 1.0]) @ affine_lps


def is_path(p: Any) -> bool:
    return isinstance(p, (str, Path))


class ArraySource:
    """A SliceSource over an in-memory HU volume [Z, Y, X] (phantoms, tests, benchmarks)."""

    kind = "array"

    def __init__(
        self, hu: np.ndarray, spacing: tuple[float, float, float], affine_lps: np.ndarray | None = None
    ) -> None:
        if hu.ndim != 3:
            raise ValueError("ArraySource needs a [Z, Y, X] volume")
        self.hu = hu
        if affine_lps is None:
            affine_lps = np.diag([spacing[2], spacing[1], spacing[0], 1.0])
        z, y, x = (int(v) for v in hu.shape)
        self.geometry = Geometry(
            shape=(z, y, x), spacing=(float(spacing[0]), float(spacing[1]), float(spacing[2])), affine_lps=affine_lps
        )
        self.skipped: list[Skipped] = []

    def read_hu(self, i: int) -> np.ndarray:
        return self.hu[i].astype(np.float32)

    def summary(self) -> dict[str, Any]:
        return {"n_slices": self.geometry.shape[0]}

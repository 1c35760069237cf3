"""A NIfTI CT volume (HU as stored: PhysioNet `.nii`, INSTANCE `.nii.gz`) as a `SliceSource`.

The array is reoriented with its affine to the frame the model sees for DICOM: rows run to the
patient's posterior, columns to the patient's left, slices inferior -> superior. The original
grid is kept so masks go back to exactly the input's shape and voxel order (`to_input_grid`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edge_ich.errors import InputError, require
from edge_ich.sources.volume import Geometry, Skipped, lps_to_ras

#: Target axis codes in nibabel's (i, j, k) = (col, row, slice) order.
DISPLAY_AXCODES = ("L", "P", "S")


class NiftiVolume:
    """A 3D NIfTI volume in HU, read one display-frame slice at a time."""

    kind = "nifti"

    def __init__(self, path: Path) -> None:
        nib = require("nibabel")
        from nibabel.filebasedimages import ImageFileError
        from nibabel.orientations import axcodes2ornt, inv_ornt_aff, io_orientation, ornt_transform

        self.path = Path(path)
        if not self.path.is_file():
            raise InputError("the --volume file does not exist")
        try:
            img = nib.load(str(self.path))
        except (ImageFileError, OSError, EOFError, ValueError) as exc:
            raise InputError(f"the --volume file cannot be read as NIfTI ({type(exc).__name__})") from None
        if not isinstance(img, (nib.Nifti1Image, nib.Nifti2Image)):
            raise InputError("the --volume file is not a NIfTI-1/2 image")
        shape = tuple(int(x) for x in img.shape)
        self.input_shape: tuple = shape
        if len(shape) == 4 and shape[3] == 1:
            shape = shape[:3]
        if len(shape) != 3:
            raise InputError(f"NIfTI volume must be 3D, got {len(self.input_shape)}D shape {self.input_shape}")
        if min(shape) < 1 or shape[2] < 2:
            raise InputError(f"NIfTI volume needs at least two slices, got shape {self.input_shape}")
        dtype = img.get_data_dtype()
        if dtype.fields is not None or dtype.kind not in "iuf":
            raise InputError(f"NIfTI voxel type {dtype} is not a grey-level volume")
        affine = np.asarray(img.affine, dtype=float)
        self.input_affine: np.ndarray = affine
        if affine.shape != (4, 4) or not np.all(np.isfinite(affine)):
            raise InputError("NIfTI affine is not finite")
        lin = affine[:3, :3]
        if abs(float(np.linalg.det(lin))) < 1e-9 or np.any(np.linalg.norm(lin, axis=0) < 1e-6):
            raise InputError("NIfTI affine is singular (zero voxel size?)")

        start = io_orientation(affine)
        self._to_display = ornt_transform(start, axcodes2ornt(DISPLAY_AXCODES))
        self._to_input = ornt_transform(axcodes2ornt(DISPLAY_AXCODES), start)
        self._shape3 = shape
        disp_affine = affine @ inv_ornt_aff(self._to_display, shape)
        disp_shape = [0, 0, 0]
        for a in range(3):
            disp_shape[int(self._to_display[a, 0])] = shape[a]
        nx, ny, nz = disp_shape
        self.display_affine_ras: np.ndarray = disp_affine
        affine_lps = lps_to_ras(disp_affine)  # the same diagonal flip maps RAS -> LPS
        spacing_xyz = np.linalg.norm(disp_affine[:3, :3], axis=0)
        warnings: list[str] = []
        cols = disp_affine[:3, :3] / spacing_xyz
        off = float(np.max(np.abs(cols - np.eye(3) * np.sign(np.diag(cols)))))
        if off > 0.02:
            warnings.append(
                f"oblique volume: axes up to {np.degrees(np.arcsin(min(1.0, off))):.1f} degrees off "
                f"the patient axes (kept exactly in the affine)"
            )
        # slice spacing along the slice normal (not along a tilted step), so voxel volumes are right
        normal = np.cross(disp_affine[:3, 0], disp_affine[:3, 1])
        slice_mm = abs(float(disp_affine[:3, 2] @ normal)) / float(np.linalg.norm(normal))
        self.geometry = Geometry(
            shape=(nz, ny, nx),
            spacing=(slice_mm, float(spacing_xyz[1]), float(spacing_xyz[0])),
            affine_lps=affine_lps,
            warnings=warnings,
        )
        self.skipped: list[Skipped] = []
        self._is_nifti2 = isinstance(img, nib.Nifti2Image)
        self._proxy = img.dataobj
        self._compressed = self.path.name.lower().endswith(".gz")
        self._array: np.ndarray | None = None

    def __len__(self) -> int:
        return self.geometry.shape[0]

    def _input_axis_index(self, k: int) -> tuple[int, int]:
        """Input axis and index holding display slice k."""
        in_axis = int(np.nonzero(self._to_display[:, 0] == 2)[0][0])
        flip = self._to_display[in_axis, 1] < 0
        n = self._shape3[in_axis]
        return in_axis, (n - 1 - k) if flip else k

    def read_hu(self, i: int) -> np.ndarray:
        """Display-frame slice i in HU (as stored, scaled by scl_slope/inter), float32 [rows, cols]."""
        nz = self.geometry.shape[0]
        if not 0 <= i < nz:
            raise IndexError(i)
        from nibabel.orientations import apply_orientation

        axis, idx = self._input_axis_index(i)
        index: list[Any] = [slice(None)] * len(self.input_shape)
        index[axis] = slice(idx, idx + 1)
        if len(self.input_shape) == 4:
            index[3] = 0
        if self._compressed:  # gzip cannot seek cheaply: decompress once, keep the stored dtype
            if self._array is None:
                self._array = np.asanyarray(self._proxy.get_unscaled())
            raw = self._array[tuple(index)]
            slope = getattr(self._proxy, "slope", 1.0)
            inter = getattr(self._proxy, "inter", 0.0)
            slope = 1.0 if slope is None or not np.isfinite(slope) or slope == 0 else float(slope)
            inter = 0.0 if inter is None or not np.isfinite(inter) else float(inter)
            slab = raw.astype(np.float32) * np.float32(slope) + np.float32(inter)
        else:  # uncompressed: the proxy reads just this slab from disk
            slab = np.asarray(self._proxy[tuple(index)], dtype=np.float32)
        xyz = apply_orientation(slab, self._to_display)  # (cols, rows, 1) in display terms
        out = xyz[:, :, 0].T
        out = np.ascontiguousarray(out, dtype=np.float32)
        if not np.all(np.isfinite(out)):
            raise InputError(f"NIfTI slice {i} holds non-finite values (NaN/inf)")
        return out

    def to_input_grid(self, mask_zyx: np.ndarray) -> np.ndarray:
        """A display-frame [slice, row, col] array back to exactly the input's shape and voxel order."""
        from nibabel.orientations import apply_orientation

        mask_zyx = np.asarray(mask_zyx)
        if mask_zyx.shape != tuple(self.geometry.shape):
            raise ValueError(f"mask shape {mask_zyx.shape} != display shape {self.geometry.shape}")
        xyz = np.transpose(mask_zyx, (2, 1, 0))
        back = np.ascontiguousarray(apply_orientation(xyz, self._to_input))
        if len(self.input_shape) == 4:
            back = back[..., np.newaxis]
        assert back.shape == self.input_shape, (back.shape, self.input_shape)
        return back

    def summary(self) -> dict[str, Any]:
        """Non-identifying description for the report (file name, shapes, spacing, warnings)."""
        g = self.geometry
        return {
            "kind": self.kind,
            "format": "nifti2" if self._is_nifti2 else "nifti1",
            "input_shape": list(self.input_shape),
            "input_affine_ras": np.asarray(self.input_affine, dtype=float).round(6).tolist(),
            "n_slices": g.shape[0],
            "shape": list(g.shape),
            "spacing_mm": [float(x) for x in g.spacing],
            "affine_lps": np.asarray(g.affine_lps, dtype=float).round(6).tolist(),
            "warnings": list(g.warnings),
            "skipped": [],
        }


def open_volume(path: Path) -> NiftiVolume:
    """Open a 3D NIfTI CT volume in HU; refuses 2D/4D, non-finite or singular affines with one line."""
    path = Path(path)
    name = path.name.lower()
    if not (name.endswith((".nii", ".nii.gz"))):
        raise InputError("--volume expects a .nii or .nii.gz file")
    return NiftiVolume(path)

"""A binary [Z, Y, X] mask kept as one bounding box per slice with content.

A hemorrhage covers a few slices and a few square centimetres of each, so a whole-volume uint8
mask (0.25 MiB per 512x512 slice: 250 MiB for a 1,000-slice thin series) is almost all zeros.
`SliceMask` stores, per slice with content, the smallest box holding it; empty slices cost
nothing. Indexing a slice gives it back dense (a fresh [Y, X] uint8 array of 0/1), assigning a
dense slice stores its box, so code written for an ndarray volume (`mask[z]`, `mask[z] = ...`,
`mask.shape`) works unchanged; `np.asarray(mask)` builds the dense volume for tests and callers
that want one.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np


class SliceMask:
    """Binary mask [Z, Y, X], stored as (row, col, uint8 box) per slice with content."""

    ndim = 3
    dtype = np.dtype(np.uint8)

    def __init__(self, shape: tuple[int, int, int]) -> None:
        if len(shape) != 3:
            raise ValueError(f"SliceMask needs a [Z, Y, X] shape, got {shape}")
        self.shape: tuple[int, int, int] = (int(shape[0]), int(shape[1]), int(shape[2]))
        self._boxes: dict[int, tuple[int, int, np.ndarray]] = {}

    @classmethod
    def from_dense(cls, volume: np.ndarray) -> SliceMask:
        """The SliceMask of a dense [Z, Y, X] volume (non-zero = inside)."""
        vol = np.asarray(volume)
        out = cls(vol.shape)
        for z in np.flatnonzero(vol.reshape(vol.shape[0], -1).any(axis=1)):
            out[int(z)] = vol[z]
        return out

    def __len__(self) -> int:
        return self.shape[0]

    def _index(self, z: Any) -> int:
        if not isinstance(z, (int, np.integer)):
            raise TypeError("a SliceMask is indexed by one slice number")
        i = int(z)
        if i < 0:
            i += self.shape[0]
        if not 0 <= i < self.shape[0]:
            raise IndexError(f"slice {z} outside 0..{self.shape[0] - 1}")
        return i

    def __setitem__(self, z: Any, plane: np.ndarray | int) -> None:
        i = self._index(z)
        p = np.asarray(plane)
        if p.ndim == 0:  # mask[z] = 0 clears a slice, as on an ndarray
            p = np.broadcast_to(p, self.shape[1:])
        if p.shape != self.shape[1:]:
            raise ValueError(f"slice of shape {p.shape} does not fit a mask of {self.shape}")
        self.set_box(i, 0, 0, p)

    def __getitem__(self, z: Any) -> np.ndarray:
        i = self._index(z)
        out = np.zeros(self.shape[1:], dtype=np.uint8)
        box = self._boxes.get(i)
        if box is not None:
            r0, c0, b = box
            out[r0 : r0 + b.shape[0], c0 : c0 + b.shape[1]] = b
        return out

    def set_box(self, z: int, r0: int, c0: int, box: np.ndarray) -> None:
        """Slice z becomes `box` placed at (r0, c0), empty elsewhere (trimmed to its content again)."""
        i = self._index(z)
        b = np.asarray(box)
        if r0 < 0 or c0 < 0 or r0 + b.shape[0] > self.shape[1] or c0 + b.shape[1] > self.shape[2]:
            raise ValueError(f"a box of {b.shape} at ({r0}, {c0}) does not fit a mask of {self.shape}")
        rows, cols = np.flatnonzero(b.any(axis=1)), np.flatnonzero(b.any(axis=0))
        if rows.size == 0:
            self._boxes.pop(i, None)
            return
        y0, y1, x0, x1 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
        self._boxes[i] = (r0 + y0, c0 + x0, (b[y0:y1, x0:x1] != 0).astype(np.uint8))

    def box(self, z: int) -> tuple[int, int, np.ndarray] | None:
        """(first row, first column, uint8 box) of slice z, or None when it is empty (no copy)."""
        return self._boxes.get(self._index(z))

    def take(self, indices: list[int]) -> SliceMask:
        """A SliceMask of the given slices, in that order (the boxes are shared, not copied)."""
        out = SliceMask((len(indices), self.shape[1], self.shape[2]))
        for j, z in enumerate(indices):
            box = self._boxes.get(self._index(z))
            if box is not None:
                out._boxes[j] = box
        return out

    def slices(self) -> list[int]:
        """The slices with content, ascending."""
        return sorted(self._boxes)

    def __iter__(self) -> Iterator[np.ndarray]:
        return (self[z] for z in range(self.shape[0]))

    def any(self) -> bool:
        return bool(self._boxes)

    def counts(self) -> np.ndarray:
        """Voxels inside, per slice: int64 [Z]."""
        out = np.zeros(self.shape[0], dtype=np.int64)
        for z, (_, _, b) in self._boxes.items():
            out[z] = int(np.count_nonzero(b))
        return out

    @property
    def nbytes(self) -> int:
        return sum(b.nbytes for _, _, b in self._boxes.values())

    def astype(self, dtype: Any) -> np.ndarray:
        """The dense volume in `dtype`, as `ndarray.astype` gives it."""
        return np.asarray(self).astype(dtype)

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        out = np.zeros(self.shape, dtype=np.uint8)
        for z, (r0, c0, b) in self._boxes.items():
            out[z, r0 : r0 + b.shape[0], c0 : c0 + b.shape[1]] = b
        return out if dtype is None else out.astype(dtype)


def slice_counts(mask: Any) -> np.ndarray:
    """Voxels inside, per slice (int64 [Z]), of a SliceMask or a dense [Z, Y, X] array."""
    if isinstance(mask, SliceMask):
        return mask.counts()
    m = np.asarray(mask)
    return np.count_nonzero(m.reshape(m.shape[0], -1), axis=1).astype(np.int64)


def slices_with_content(mask: Any) -> np.ndarray:
    """Indices of the slices holding any voxel, ascending, of a SliceMask or a dense array."""
    if isinstance(mask, SliceMask):
        return np.asarray(mask.slices(), dtype=np.int64)
    m = np.asarray(mask)
    return np.flatnonzero(m.reshape(m.shape[0], -1).any(axis=1))


def take_slices(mask: Any, indices: list[int]) -> Any:
    """The given slices of a SliceMask (a SliceMask) or of a dense [Z, Y, X] array, in that order."""
    if isinstance(mask, SliceMask):
        return mask.take(indices)
    return np.asarray(mask)[indices]

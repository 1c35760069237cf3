"""Connected components in numpy alone: 8- and 4-connected 2D labels (by runs of pixels), links
between the runs of adjacent slices, and components of an edge list.

The run path labels a few sparse lesion slices; importing `scipy.ndimage` and
`scipy.sparse.csgraph` for that costs a cold run 0.3-1 s, more than the labelling itself. Labels
are numbered exactly as scipy numbers them (`ndimage.label` with a full 3x3 structure, or its
default cross for `label4`: by the first pixel in raster order; `csgraph.connected_components`,
undirected: by the smallest node); tests/analysis/test_labels.py compares them with scipy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def root_of_each(n: int, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """For nodes 0..n-1 joined by edges (a[i], b[i]): the smallest node of each one's component.

    Union by hooking the larger root under the smaller, then pointer jumping, until every edge
    joins one root; only the edges not yet settled are looked at again.
    """
    parent = np.arange(n, dtype=np.int64)
    a = np.asarray(a, dtype=np.int64)
    b = np.asarray(b, dtype=np.int64)
    while a.size:
        ra, rb = parent[a], parent[b]
        open_ = ra != rb
        if not open_.any():
            break
        a, b, ra, rb = a[open_], b[open_], ra[open_], rb[open_]
        np.minimum.at(parent, np.maximum(ra, rb), np.minimum(ra, rb))
        while True:  # pointer jumping: every node straight to its root
            up = parent[parent]
            if np.array_equal(up, parent):
                break
            parent = up
    return parent


def components(n: int, a: np.ndarray, b: np.ndarray) -> tuple[int, np.ndarray]:
    """(count, label per node) of the undirected graph, labels 0.. in order of each component's smallest node."""
    root = root_of_each(n, a, b)
    roots = np.flatnonzero(root == np.arange(n))
    return int(roots.size), np.searchsorted(roots, root).astype(np.int64)


@dataclass
class Runs:
    """The runs of set pixels of a 2D mask in raster order, with their component labels.

    row, start, end (one past the last column) in the mask's coordinates plus an offset;
    label: 0-based component of each run, numbered as scipy numbers them; count: components.
    """

    row: np.ndarray
    start: np.ndarray
    end: np.ndarray
    label: np.ndarray
    count: int

    @property
    def length(self) -> np.ndarray:
        return self.end - self.start

    def pixel_labels(self) -> np.ndarray:
        """1-based label of every set pixel, in raster order (the order of `np.flatnonzero`)."""
        return np.repeat(self.label + 1, self.length)


def _ranges(lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(i, j) for every i and every j in lo[i] <= j < hi[i]."""
    n = np.clip(hi - lo, 0, None)
    i = np.repeat(np.arange(lo.size), n)
    j = np.repeat(lo, n) + (np.arange(i.size) - np.repeat(np.cumsum(n) - n, n))
    return i, j


def _partners(
    row: np.ndarray, start: np.ndarray, end: np.ndarray, other: Runs, dr: int, reach: int, stride: int
) -> tuple[np.ndarray, np.ndarray]:
    """(i, k): run i (row, start, end) and run k of `other` on row + dr touch (share a column, or with
    reach 1 also a corner). Keys sort runs by (row, column), so the partners of i form one range."""
    key_s, key_e = other.row * stride + other.start, other.row * stride + other.end
    lo = np.searchsorted(key_e, (row + dr) * stride + start - reach, side="right")
    hi = np.searchsorted(key_s, (row + dr) * stride + end + reach, side="left")
    return _ranges(lo, hi)


def runs_of(mask: np.ndarray, row0: int = 0, col0: int = 0, connectivity: int = 8) -> Runs:
    """Runs and component labels of a 2D mask (8- or 4-connected); `row0`, `col0` offset the
    coordinates (a box cut from a larger plane)."""
    m = np.asarray(mask)
    if m.ndim != 2:
        raise ValueError(f"labels need a 2D mask, got shape {m.shape}")
    w = m.shape[1]
    flat = np.flatnonzero(m)
    if flat.size == 0:
        z = np.zeros(0, dtype=np.int64)
        return Runs(z, z, z, z, 0)
    # a run starts where the previous pixel (same row) is unset
    row = flat // w
    new_run = np.empty(flat.size, dtype=bool)
    new_run[0] = True
    new_run[1:] = (np.diff(flat) != 1) | (row[1:] != row[:-1])
    first = np.flatnonzero(new_run)
    r = row[first]
    s = flat[first] - r * w
    e = s + np.diff(np.append(first, flat.size))
    own = Runs(r, s, e, np.zeros(0, dtype=np.int64), 0)
    a, b = _partners(r, s, e, own, 1, 1 if connectivity == 8 else 0, w + 2)  # each run with the next row's
    count, lab = components(first.size, a, b)
    return Runs(r + row0, s + col0, e + col0, lab, count)


def touching(a: Runs, b: Runs, width: int) -> np.ndarray:
    """Unique (label in a, label in b) pairs, 0-based, of components of two adjacent slices that touch
    in 3D (26-connected: a voxel of b touches a within one row and one column)."""
    if a.count == 0 or b.count == 0:
        return np.zeros((0, 2), dtype=np.int64)
    keys = []
    for dr in (-1, 0, 1):
        j, i = _partners(b.row, b.start, b.end, a, dr, 1, width + 2)
        keys.append((a.label[i] << 32) | b.label[j])
    u = np.unique(np.concatenate(keys))
    return np.stack([u >> 32, u & 0xFFFFFFFF], axis=1)


def label8(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """8-connected labels of a 2D mask: (int32 labels, 0 = background, 1..n), n = number of components."""
    return _paint(mask, runs_of(mask, connectivity=8))


def label4(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """4-connected labels of a 2D mask (`ndimage.label`'s default structure), as `label8` returns them."""
    return _paint(mask, runs_of(mask, connectivity=4))


def _paint(mask: np.ndarray, runs: Runs) -> tuple[np.ndarray, int]:
    out = np.zeros(np.shape(mask), dtype=np.int32)
    if runs.count:
        out.reshape(-1)[np.flatnonzero(mask)] = runs.pixel_labels()
    return out, runs.count

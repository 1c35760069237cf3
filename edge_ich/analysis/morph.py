"""Binary morphology with scipy.ndimage's default cross structure, and a 3x3 mean, in numpy alone.

The assessability gate looks at a few sampled slices on every run; importing `scipy.ndimage`
for that would cost a cold run more than the measurements. Each function gives what its
`scipy.ndimage` namesake gives with the default structure (4-neighbour cross, border value 0);
tests/analysis/test_morph.py compares them with scipy.
"""

from __future__ import annotations

import numpy as np

from edge_ich.analysis.labels import label4


def _cross(m: np.ndarray, fill: bool) -> tuple[np.ndarray, ...]:
    """The pixel and its four neighbours (outside the image: `fill`)."""
    p = np.pad(m, 1, constant_values=fill)
    return p[1:-1, 1:-1], p[:-2, 1:-1], p[2:, 1:-1], p[1:-1, :-2], p[1:-1, 2:]


def binary_dilation(mask: np.ndarray, iterations: int = 1) -> np.ndarray:
    out = np.asarray(mask, dtype=bool)
    for _ in range(iterations):
        c, u, d, left, right = _cross(out, False)
        out = c | u | d | left | right
    return out


def binary_erosion(mask: np.ndarray, iterations: int = 1) -> np.ndarray:
    out = np.asarray(mask, dtype=bool)
    for _ in range(iterations):
        c, u, d, left, right = _cross(out, False)
        out = c & u & d & left & right
    return out


def binary_closing(mask: np.ndarray, iterations: int = 1) -> np.ndarray:
    return binary_erosion(binary_dilation(mask, iterations), iterations)


def binary_fill_holes(mask: np.ndarray) -> np.ndarray:
    """The mask with every background region not 4-connected to the image border filled."""
    m = np.asarray(mask, dtype=bool)
    lab, n = label4(~m)
    if n == 0:
        return m.copy()
    border = np.unique(np.concatenate([lab[0], lab[-1], lab[:, 0], lab[:, -1]]))
    outside = np.zeros(n + 1, dtype=bool)
    outside[border] = True
    outside[0] = False
    return ~outside[lab]


def uniform3(img: np.ndarray) -> np.ndarray:
    """Mean over each pixel's 3x3 neighbourhood, mirrored at the edges (`uniform_filter(img, 3)`)."""
    a = np.asarray(img, dtype=np.float64)
    p = np.pad(a, ((1, 1), (0, 0)), mode="symmetric")
    rows = (p[:-2] + p[1:-1] + p[2:]) / 3.0
    q = np.pad(rows, ((0, 0), (1, 1)), mode="symmetric")
    return (q[:, :-2] + q[:, 1:-1] + q[:, 2:]) / 3.0

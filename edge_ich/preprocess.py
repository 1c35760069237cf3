"""HU -> windows -> resize -> context stack. The one definition, imported by training too.

Training and the runtime call exactly these functions, so the network sees at the point of
care what it saw while learning. Changing anything here changes `PREPROCESS_VERSION`, which
changes every card's preprocessing hash, which makes built engines refuse to load.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

PREPROCESS_VERSION = 1


@dataclass(frozen=True)
class Window:
    """A CT display window in Hounsfield units, mapped to [0, 1]."""

    name: str
    center: float
    width: float


#: Windows used by the bundled model (brain, subdural, wide soft tissue), as RSNA winners did.
DEFAULT_WINDOWS = (Window("brain", 40.0, 80.0), Window("subdural", 80.0, 200.0), Window("wide", 40.0, 380.0))


def apply_window(hu: np.ndarray, center: float, width: float) -> np.ndarray:
    """Map HU linearly so [center - width/2, center + width/2] -> [0, 1], clipped."""
    lo = center - width / 2.0
    out = (hu.astype(np.float32, copy=False) - np.float32(lo)) * np.float32(1.0 / width)
    return np.clip(out, 0.0, 1.0, out=out)


def resize2d(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize a 2D float image: exact block mean for integer downscales, else bilinear."""
    h, w = img.shape
    th, tw = size
    if (h, w) == (th, tw):
        return img.astype(np.float32, copy=False)
    if h % th == 0 and w % tw == 0 and h // th == w // tw:
        return block_mean(img.astype(np.float32, copy=False), h // th)
    from scipy import ndimage

    return ndimage.zoom(img.astype(np.float32, copy=False), (th / h, tw / w), order=1, mode="nearest", grid_mode=True)


def _fold_blocks(img: np.ndarray, f: int, fold: Callable[..., np.ndarray]) -> np.ndarray:
    """`fold` (an in-place ufunc such as np.add) over each f x f block of `img` (sides multiples of f),
    columns first, then rows; strided views, no [h/f, f, w/f, f] reduction (numpy is slow over two such axes)."""
    cols = img[:, 0::f].copy()
    for k in range(1, f):
        fold(cols, img[:, k::f], out=cols)
    out = cols[0::f].copy()
    for k in range(1, f):
        fold(out, cols[k::f], out=out)
    return out


def block_mean(img: np.ndarray, f: int) -> np.ndarray:
    """Mean of each f x f block of a float32 image: the values of
    `img.reshape(h/f, f, w/f, f).mean(axis=(1, 3))` (bit for bit on integer HU, whose float32 sums
    are exact in any order) in a tenth of its time."""
    out = _fold_blocks(img, f, np.add)
    out /= np.asarray(f * f, dtype=out.dtype)
    return out


def block_max(img: np.ndarray, f: int) -> np.ndarray:
    """Maximum of each f x f block: `img.reshape(h/f, f, w/f, f).max(axis=(1, 3))`, exactly."""
    return _fold_blocks(img, f, np.maximum)


def prepare_slice(hu: np.ndarray, windows: Sequence[Window], size: tuple[int, int]) -> np.ndarray:
    """One native HU slice -> float32 [n_windows, H, W] at the model's input size."""
    small = resize2d(np.asarray(hu, dtype=np.float32), size)
    return np.stack([apply_window(small, w.center, w.width) for w in windows])


def context_indices(i: int, n: int, context: int) -> list[int]:
    """Neighbour indices i-k..i+k, clamped at the ends of the series (edge slices repeat)."""
    return [min(max(i + d, 0), n - 1) for d in range(-context, context + 1)]


def stack_context(get: Callable[[int], np.ndarray], i: int, n: int, context: int) -> np.ndarray:
    """Concatenate prepared slices i-k..i+k along channels -> [(2k+1)*n_windows, H, W]."""
    return np.concatenate([get(j) for j in context_indices(i, n, context)], axis=0)


def prepare_volume(hu: np.ndarray, windows: Sequence[Window], size: tuple[int, int], context: int) -> np.ndarray:
    """A whole HU volume [Z, Y, X] -> network inputs [Z, C, H, W] (training convenience)."""
    prepared = [prepare_slice(s, windows, size) for s in hu]
    n = len(prepared)
    return np.stack([stack_context(prepared.__getitem__, i, n, context) for i in range(n)])


@functools.lru_cache(maxsize=16)
def _taps(src: int, dst: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """1D linear interpolation src -> dst, pixel centres aligned (grid mode), edges clamped: for each
    output pixel its two source pixels (lo, hi) and their float32 weights (1 - frac, frac)."""
    x = (np.arange(dst, dtype=np.float64) + 0.5) * (src / dst) - 0.5
    x = np.clip(x, 0.0, src - 1.0)
    lo = np.floor(x).astype(np.int64)
    hi = np.minimum(lo + 1, src - 1)
    frac = x - lo
    return lo, hi, (1.0 - frac).astype(np.float32), frac.astype(np.float32)


def resize_back_box(prob: np.ndarray, shape: tuple[int, int], rows: slice, cols: slice) -> np.ndarray:
    """The rows x cols part of `resize_back(prob, shape)`, computing only that part.

    Each value is w_lo * a + w_hi * b along the rows, then the same along the columns, in float32 and
    always in that order, so a part is bit for bit the same part of the whole (a BLAS product is not:
    its summation order follows the matrix sizes).
    """
    p = np.asarray(prob, dtype=np.float32)
    if p.shape == tuple(shape):
        return p[rows, cols].copy()
    ylo, yhi, ya, yb = (t[rows] for t in _taps(p.shape[0], shape[0]))
    xlo, xhi, xa, xb = (t[cols] for t in _taps(p.shape[1], shape[1]))
    c0, c1 = (int(xlo.min()), int(xhi.max()) + 1) if xlo.size else (0, 0)
    q = p[:, c0:c1]  # only the source columns these output columns read
    t = q[ylo] * ya[:, None] + q[yhi] * yb[:, None]
    return t[:, xlo - c0] * xa + t[:, xhi - c0] * xb


def resize_back_above(prob: np.ndarray, shape: tuple[int, int], threshold: float) -> np.ndarray:
    """`resize_back(prob, shape) >= threshold`, computing only where it can be true.

    Bilinear values are convex combinations of their source pixels, so an output pixel can reach
    the threshold only if one of its source rows and one of its source columns hold a value that
    does. Only those output rows and columns are interpolated; the result is identical.
    """
    out = np.zeros(shape, dtype=bool)
    hot = prob >= threshold
    if not hot.any():
        return out
    if prob.shape == tuple(shape):
        return hot
    (ylo, yhi, _, _), (xlo, xhi, _, _) = _taps(prob.shape[0], shape[0]), _taps(prob.shape[1], shape[1])
    hy, hx = np.asarray(hot.any(axis=1)), np.asarray(hot.any(axis=0))
    rows = np.flatnonzero(hy[ylo] | hy[yhi])
    cols = np.flatnonzero(hx[xlo] | hx[xhi])
    box = slice(int(rows[0]), int(rows[-1]) + 1), slice(int(cols[0]), int(cols[-1]) + 1)
    out[box] = resize_back_box(prob, shape, *box) >= threshold
    return out


def resize_back(prob: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Model-grid probability [H, W] -> native pixel grid [rows, cols], bilinear (two taps per axis)."""
    return resize_back_box(prob, shape, slice(None), slice(None))

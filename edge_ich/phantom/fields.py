"""Geometry helpers for the phantom: a voxel grid in head coordinates, quadrics, smooth fields.

Why this shape: a 512x512 case must render in about a second, so sharp structures are
analytic quadrics evaluated exactly (a quadric restricted to a slice is a 2D polynomial, so
it costs a few broadcast adds), and everything smooth but irregular (skull outline, sulcal
labyrinth, texture) is computed on a coarse in-plane grid and upsampled with two small
matrix products. numpy and scipy only.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy import ndimage

F32 = np.float32


def rotation(yaw_deg: float = 0.0, pitch_deg: float = 0.0, roll_deg: float = 0.0) -> np.ndarray:
    """Rotation about z (yaw), then x (pitch), then y (roll); degrees -> 3x3."""
    a, b, c = np.deg2rad([yaw_deg, pitch_deg, roll_deg])
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    ry = np.array([[np.cos(c), 0, np.sin(c)], [0, 1, 0], [-np.sin(c), 0, np.cos(c)]])
    return rz @ rx @ ry


@lru_cache(maxsize=16)
def upsample_matrix(n_fine: int, n_coarse: int) -> np.ndarray:
    """Linear interpolation matrix [n_fine, n_coarse] between cell-centred grids."""
    f = n_fine / n_coarse
    pos = (np.arange(n_fine) + 0.5) / f - 0.5
    pos = np.clip(pos, 0, n_coarse - 1)
    i0 = np.floor(pos).astype(int)
    i1 = np.minimum(i0 + 1, n_coarse - 1)
    w1 = pos - i0
    u = np.zeros((n_fine, n_coarse), dtype=F32)
    u[np.arange(n_fine), i0] += (1 - w1).astype(F32)
    u[np.arange(n_fine), i1] += w1.astype(F32)
    return u


@dataclass
class Grid:
    """A voxel grid [Z, H, W] and the map (col, row, slice, 1) -> head mm, in the grid's own indices.

    Head coordinates: x to the patient's left, y posterior, z superior (LPS axes of the head),
    origin near the centre of the cranial cavity, already divided by the case's head size.
    A grid may be a crop of the full image frame (n_full x n_full) at (row0, col0): coarse fields
    always live on the full frame's coarse grid (coarse x coarse).
    """

    shape: tuple[int, int, int]
    vox2head: np.ndarray  # 4x4
    pixel_mm: float
    thickness_mm: float
    coarse: int  # coarse in-plane size of the full frame
    n_full: int = 0
    row0: int = 0
    col0: int = 0

    def __post_init__(self) -> None:
        if not self.n_full:
            self.n_full = self.shape[1]

    @property
    def head2vox(self) -> np.ndarray:
        return np.linalg.inv(self.vox2head)

    def sub(self, z0: int, z1: int) -> Grid:
        """The slices z0..z1-1 as their own grid (rendering goes chunk by chunk to keep arrays small)."""
        return self.crop(z0, z1, 0, self.shape[1], 0, self.shape[2])

    def crop(self, z0: int, z1: int, r0: int, r1: int, c0: int, c1: int) -> Grid:
        """A sub-box of this grid as its own grid."""
        shift = np.eye(4)
        shift[:3, 3] = [c0, r0, z0]
        return Grid(
            (z1 - z0, r1 - r0, c1 - c0),
            self.vox2head @ shift,
            self.pixel_mm,
            self.thickness_mm,
            self.coarse,
            self.n_full,
            self.row0 + r0,
            self.col0 + c0,
        )

    def coarse_coords(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Head x, y, z at the centres of the full frame's coarse grid, each float32 [Z, C, C]."""
        z = self.shape[0]
        c = self.coarse
        f = self.n_full / c
        idx = (np.arange(c) + 0.5) * f - 0.5
        r_idx, c_idx = idx - self.row0, idx - self.col0
        k = np.arange(z, dtype=float)
        m = self.vox2head
        out = []
        for i in range(3):
            out.append(
                (
                    m[i, 3]
                    + m[i, 2] * k[:, None, None]
                    + m[i, 1] * r_idx[None, :, None]
                    + m[i, 0] * c_idx[None, None, :]
                ).astype(F32)
            )
        return out[0], out[1], out[2]

    def upsample(self, field: np.ndarray) -> np.ndarray:
        """Coarse [Z, C, C] (full frame) -> this grid's [Z, H, W] by bilinear interpolation (two matmuls)."""
        u = upsample_matrix(self.n_full, self.coarse)
        ur = u[self.row0 : self.row0 + self.shape[1]]
        uc = u[self.col0 : self.col0 + self.shape[2]]
        jr = np.nonzero(ur.any(0))[0]
        jc = np.nonzero(uc.any(0))[0]
        ur = ur[:, jr[0] : jr[-1] + 1]
        uc = np.ascontiguousarray(uc[:, jc[0] : jc[-1] + 1].T)
        f = field[:, jr[0] : jr[-1] + 1, jc[0] : jc[-1] + 1].astype(F32, copy=False)
        return np.matmul(np.matmul(ur, f), uc)

    def slice_head_z(self) -> np.ndarray:
        """Head z at the centre of each slice [Z]."""
        k = np.arange(self.shape[0], dtype=float)
        m = self.vox2head
        return m[2, 3] + m[2, 2] * k + m[2, 0] * (self.shape[2] - 1) / 2 + m[2, 1] * (self.shape[1] - 1) / 2

    def linear(self, coef: np.ndarray) -> np.ndarray:
        """A function linear in head coordinates, a.(x, y, z) + a0, on this grid [Z, H, W]."""
        z, h, wd = self.shape
        w = np.asarray(coef[:3], float) @ self.vox2head[:3]
        w[3] += float(coef[3]) if len(coef) > 3 else 0.0
        k = np.arange(z, dtype=float)
        base = (w[3] + w[2] * k)[:, None, None] + (w[1] * np.arange(h, dtype=float))[None, :, None]
        return (base + (w[0] * np.arange(wd, dtype=float))[None, None, :]).astype(F32)


@dataclass
class Block:
    """A sub-box of the grid and a field evaluated on it."""

    sl: tuple[slice, slice, slice]
    e: np.ndarray  # normalised quadric value, < 1 inside


def quadric(
    g: Grid, center: np.ndarray, axes: np.ndarray, rot: np.ndarray | None = None, margin: float = 1.5
) -> Block | None:
    """Ellipsoid value e = |diag(1/axes) R^T (h - c)|^2 on its bounding box (None if outside).

    `margin` scales the box so soft edges and rims (e < margin^2) stay inside it.
    """
    rot = np.eye(3) if rot is None else np.asarray(rot, float)
    axes = np.asarray(axes, float)
    center = np.asarray(center, float)
    q = rot @ np.diag(1.0 / axes**2) @ rot.T
    ext = np.sqrt(np.diag(rot @ np.diag(axes**2) @ rot.T)) * margin
    corners = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)]) * ext + center
    hv = g.head2vox
    vox = (hv[:3, :3] @ corners.T).T + hv[:3, 3]
    lo = np.floor(vox.min(0)).astype(int) - 1
    hi = np.ceil(vox.max(0)).astype(int) + 2
    nz, ny, nx = g.shape
    x0, x1 = max(lo[0], 0), min(hi[0], nx)
    y0, y1 = max(lo[1], 0), min(hi[1], ny)
    z0, z1 = max(lo[2], 0), min(hi[2], nz)
    if x0 >= x1 or y0 >= y1 or z0 >= z1:
        return None
    m = g.vox2head
    u, v, w, t = m[:3, 0], m[:3, 1], m[:3, 2], m[:3, 3]
    ks = np.arange(z0, z1, dtype=float)
    cs = np.arange(x0, x1, dtype=float)
    rs = np.arange(y0, y1, dtype=float)
    q0 = t[None, :] + ks[:, None] * w[None, :] - center[None, :]  # [Z, 3]
    qq0 = q0 @ q
    a = np.einsum("ij,ij->i", qq0, q0)
    uq = qq0 @ u
    vq = qq0 @ v
    fx = a[:, None] + 2 * uq[:, None] * cs[None, :] + (u @ q @ u) * cs[None, :] ** 2
    fy = 2 * vq[:, None] * rs[None, :] + (v @ q @ v) * rs[None, :] ** 2
    cross = (2 * (u @ q @ v)) * rs[:, None] * cs[None, :]
    e = fy.astype(F32)[:, :, None] + fx.astype(F32)[:, None, :] + cross.astype(F32)[None]
    return Block((slice(z0, z1), slice(y0, y1), slice(x0, x1)), e)


def soft(d: np.ndarray, width: float | np.ndarray) -> np.ndarray:
    """Partial-volume occupancy of a signed distance d (mm, > 0 inside) over `width` mm."""
    inv = np.reciprocal(np.asarray(width, dtype=F32))
    t = np.multiply(d, inv, dtype=F32)
    t += F32(0.5)
    return np.clip(t, 0.0, 1.0, out=t)


def slab_width(g: Grid, nz: np.ndarray | float) -> np.ndarray:
    """Edge blur (mm) for a surface whose normal has z-component nz: pixel plus slab partial volume."""
    return np.sqrt(g.pixel_mm**2 + (g.thickness_mm * np.asarray(nz)) ** 2 + 0.1)


def block_occupancy(
    g: Grid, b: Block, center: np.ndarray, axes: np.ndarray, grow: float = 0.0, rot: np.ndarray | None = None
) -> np.ndarray:
    """Soft occupancy of a quadric block, blurred across the slab where its surface is oblique to the slice."""
    axes = np.asarray(axes, float)
    r = 3.0 / float(np.sum(1.0 / axes))
    cov = (np.eye(3) if rot is None else rot) @ np.diag(axes**2) @ (np.eye(3) if rot is None else rot).T
    ez = float(np.sqrt(cov[2, 2]))  # half height of the (rotated) ellipsoid
    ein = float(np.sqrt(max(np.linalg.eigvalsh(cov[:2, :2]).min(), 1e-6)))  # in-plane smallest half width
    zc = (
        g.vox2head[2, 3]
        + g.vox2head[2, 2] * np.arange(b.sl[0].start, b.sl[0].stop)
        + g.vox2head[2, 0] * ((b.sl[2].start + b.sl[2].stop) / 2)
        + g.vox2head[2, 1] * ((b.sl[1].start + b.sl[1].stop) / 2)
    )
    u = np.clip(np.abs(zc - center[2]) / max(ez, 1e-3), 0, 0.999)
    gz, gin = u / ez, np.sqrt(1 - u**2) / ein
    nz = np.clip(gz / np.sqrt(gz**2 + gin**2 + 1e-12), 0, 0.97)
    width = slab_width(g, nz).astype(F32)[:, None, None]
    return soft((1.0 - b.e) * F32(r / 2.0) + F32(grow), width)


def smooth_noise(
    rng: np.random.Generator, shape: tuple[int, int, int], sigma_vox: tuple[float, float, float]
) -> np.ndarray:
    """Gaussian-filtered white noise, rescaled to unit standard deviation (float32)."""
    w = rng.standard_normal(shape, dtype=F32)
    f = ndimage.gaussian_filter(w, sigma_vox, mode="wrap", truncate=3.0)
    s = float(f.std()) or 1.0
    return (f / F32(s)).astype(F32, copy=False)


def band_noise(
    rng: np.random.Generator,
    shape: tuple[int, int, int],
    sigma_lo: tuple[float, float, float],
    sigma_hi: tuple[float, float, float],
) -> np.ndarray:
    """Band-pass noise (difference of Gaussians) with unit standard deviation: a labyrinth at its zero set."""
    w = rng.standard_normal(shape, dtype=F32)
    f = ndimage.gaussian_filter(w, sigma_lo, mode="wrap", truncate=3.0) - ndimage.gaussian_filter(
        w, sigma_hi, mode="wrap", truncate=3.0
    )
    s = float(f.std()) or 1.0
    return (f / F32(s)).astype(F32, copy=False)


_BANK = 1536


@lru_cache(maxsize=1)
def _noise_bank() -> np.ndarray:
    """A fixed tile of correlated unit-variance noise like a soft-tissue reconstruction kernel: white noise
    through a small separable kernel with a negative side lobe (grain of ~2 pixels, low frequencies damped).
    Built once per process from a fixed seed; cases cut it at random offsets (cheap, deterministic)."""
    w = np.random.default_rng(20191).standard_normal((_BANK, _BANK), dtype=F32)
    k = np.array([-0.08, 0.25, 0.62, 0.25, -0.08])
    k = (k / np.sqrt((k**2).sum())).astype(F32)
    for ax in (0, 1):
        w = ndimage.correlate1d(w, k, axis=ax, mode="wrap")
    w /= F32(w.std())
    w.setflags(write=False)
    return w


def ct_noise(rng: np.random.Generator, shape: tuple[int, int, int], sigma_hu: float, white: float = 0.0) -> np.ndarray:
    """Correlated CT noise [Z, H, W] in HU: per slice a random cut (and flip/transpose) of the noise bank.

    white: share of the noise power drawn uncorrelated (0 keeps the bank's spectrum; the draws of
    the bank cuts are the same either way, the white part is drawn after them)."""
    bank = _noise_bank()
    z, h, w = shape
    out = np.empty(shape, F32)
    if h > _BANK or w > _BANK:
        return rng.standard_normal(shape, dtype=F32) * F32(sigma_hu)
    for k in range(z):
        oy, ox = rng.integers(0, _BANK - h + 1), rng.integers(0, _BANK - w + 1)
        tile = bank[oy : oy + h, ox : ox + w]
        f = int(rng.integers(0, 4))
        tile = tile[::-1] if f & 1 else tile
        out[k] = tile[:, ::-1] if f & 2 else tile
    if white > 0:
        out *= F32(np.sqrt(1.0 - white))
        out += rng.standard_normal(shape, dtype=F32) * F32(np.sqrt(white))
    out *= F32(sigma_hu)
    return out

"""Normal head anatomy for the phantom: per-case parameters, coarse fields, and full-resolution rendering.

Head coordinates (mm of a standard head): x to the patient's left, y posterior, z superior, origin
near the centre of the cranial cavity. Distances are positive inside a structure.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from edge_ich.phantom.fields import (
    F32,
    Grid,
    band_noise,
    rotation,
    smooth_noise,
)


@dataclass
class Calc:
    """A calcification (mimic): where, how big, how dense."""

    kind: str
    center: np.ndarray
    radius: float
    hu: float


@dataclass
class Anatomy:
    """Per-case anatomy parameters (sampled once, then rendered chunk by chunk)."""

    axes: np.ndarray  # cranial cavity semi-axes (x, y, z)
    center: np.ndarray
    skull_mm: float
    scalp_mm: float
    gap_mm: float
    vent: float  # ventricle size factor
    ctx_mm: float
    sulc_w: float
    sulc_depth: float
    hu: dict[str, float]
    bh: float  # beam hardening offset at the inner table (HU)
    calcs: list[Calc] = field(default_factory=list)
    streaks: list[tuple[float, float, float, float]] = field(default_factory=list)  # (x, y, angle, amplitude)


def sample_anatomy(rng: np.random.Generator, mimic: float) -> Anatomy:
    """Draw one head: sizes, tissue HU, atrophy, calcifications and artefact strength."""
    atrophy = rng.beta(2, 4)
    wm = rng.uniform(24, 30)
    hu = {
        "wm": wm,
        "gm": wm + rng.uniform(8, 12),
        "deep": wm + rng.uniform(4, 7),
        "csf": rng.uniform(3, 10),
        "cb": wm + rng.uniform(7, 11),
        "bs": wm + rng.uniform(1, 4),
        "falx": rng.uniform(45, 62) + 12 * (mimic - 1),
        "sinus": rng.uniform(50, 66) + 8 * (mimic - 1),
        "cortical": rng.uniform(1000, 1600),
        "diploe": rng.uniform(350, 700),
        "fat": rng.uniform(-100, -70),
        "soft": rng.uniform(35, 55),
    }
    a = Anatomy(
        axes=np.array([rng.uniform(63, 71), rng.uniform(82, 92), rng.uniform(74, 82)]),
        center=np.array([0.0, rng.uniform(0, 5), -5.0]),
        skull_mm=rng.uniform(5.0, 8.0),
        scalp_mm=rng.uniform(4.0, 7.0),
        gap_mm=0.8 + 3.0 * atrophy,
        vent=0.8 + 1.0 * atrophy + rng.uniform(-0.1, 0.2),
        ctx_mm=rng.uniform(2.3, 3.2),
        sulc_w=0.6 + 2.0 * atrophy,
        sulc_depth=rng.uniform(9, 15),
        hu=hu,
        bh=rng.uniform(9, 18) * mimic,
    )
    side = [-1, 1]
    if rng.random() < 0.55 + 0.25 * (mimic - 1):
        a.calcs.append(
            Calc("pineal", np.array([0, 24 * a.vent**0.3, -3.0]), rng.uniform(2.5, 4.5), rng.uniform(90, 350))
        )
    if rng.random() < 0.7 + 0.2 * (mimic - 1):
        for s in side:
            a.calcs.append(
                Calc(
                    "choroid_plexus",
                    np.array([s * 20 * a.vent**0.4, 24, 8.0]) + rng.normal(0, 1.5, 3),
                    rng.uniform(2.5, 5.0),
                    rng.uniform(80, 300),
                )
            )
    if rng.random() < 0.25 * mimic:
        for s in side:
            a.calcs.append(
                Calc(
                    "basal_ganglia",
                    np.array([s * 18, -4, -1.0]) + rng.normal(0, 1.5, 3),
                    rng.uniform(2.0, 4.5),
                    rng.uniform(70, 180),
                )
            )
    if rng.random() < 0.3 * mimic:
        for _ in range(rng.integers(1, 4)):
            a.calcs.append(
                Calc(
                    "falx_plaque",
                    np.array([0.0, rng.uniform(-50, 40), rng.uniform(30, 60)]),
                    rng.uniform(1.5, 3.5),
                    rng.uniform(90, 400),
                )
            )
    for s in side:
        for _ in range(rng.integers(2, 5)):
            a.streaks.append(
                (
                    s * rng.uniform(25, 40),
                    rng.uniform(5, 20),
                    rng.uniform(0, np.pi),
                    rng.choice([-1, 1]) * rng.uniform(8, 25) * mimic,
                )
            )
    return a


def _edist(
    x: np.ndarray,
    y: np.ndarray,
    z: np.ndarray,
    c: tuple[float, float, float],
    ax: tuple[float, float, float] | np.ndarray,
    yaw: float = 0.0,
    pitch: float = 0.0,
) -> np.ndarray:
    """Approximate signed distance (mm, > 0 inside) to an ellipsoid, on coarse coordinates."""
    dx, dy, dz = x - F32(c[0]), y - F32(c[1]), z - F32(c[2])
    if yaw or pitch:
        r = rotation(yaw, pitch).T
        dx, dy, dz = (
            r[0, 0] * dx + r[0, 1] * dy + r[0, 2] * dz,
            r[1, 0] * dx + r[1, 1] * dy + r[1, 2] * dz,
            r[2, 0] * dx + r[2, 1] * dy + r[2, 2] * dz,
        )
    e = np.sqrt((dx / F32(ax[0])) ** 2 + (dy / F32(ax[1])) ** 2 + (dz / F32(ax[2])) ** 2)
    rr = np.sqrt(dx * dx + dy * dy + dz * dz)
    return np.where(e > 1e-3, rr * (1.0 / np.maximum(e, 1e-3) - 1.0), F32(min(ax))).astype(F32)


def _sig(v: np.ndarray) -> np.ndarray:
    return (1.0 / (1.0 + np.exp(-v))).astype(F32)


@dataclass
class Fields:
    """Coarse [Z, C, C] fields of one case, upsampled chunk by chunk."""

    cav: np.ndarray  # cranial cavity distance, skull depth normalised to anatomy.skull_mm outside
    gap: np.ndarray  # subarachnoid gap (mm)
    sulci: np.ndarray  # band noise, sulci at its zero set
    var: np.ndarray  # smooth parenchymal variation (unit std)
    tent: np.ndarray  # signed distance to the tentorium surface (> 0 above)
    base: dict[str, np.ndarray]  # skull-base structures (distances)
    base_z: tuple[int, int]  # slice range where the base fields exist
    sulc_scale: float  # mm per unit of |sulci| near its zero set


def coarse_fields(g: Grid, a: Anatomy, rng: np.random.Generator) -> Fields:
    """Build every smooth field of the case on the coarse grid."""
    x, y, z = g.coarse_coords()
    nz = g.shape[0]
    cpx = g.pixel_mm * g.shape[1] / g.coarse
    ax, c = a.axes, a.center
    # egg shape: a little wider posteriorly; low-frequency bumps
    axx = ax[0] * (1 + 0.06 * np.clip((y - c[1]) / ax[1], -1, 1))
    low = smooth_noise(rng, (nz, g.coarse, g.coarse), (25 / g.thickness_mm, 25 / cpx, 25 / cpx))
    dx, dy, dz = (x - c[0]) / axx, (y - c[1]) / ax[1], (z - c[2]) / ax[2]
    e = np.sqrt(dx * dx + dy * dy + dz * dz)
    rr = np.sqrt((x - c[0]) ** 2 + (y - c[1]) ** 2 + (z - c[2]) ** 2)
    d0 = rr * (1.0 / np.maximum(e, 1e-3) - 1.0) + 1.8 * low
    ab = np.abs(x)
    g_mid = np.exp(-(((ab - 38) / 20) ** 2) - ((y + 6) / 24) ** 2)
    g_post = _sig((y - 8) / 5) * np.clip(1 - (x / 55) ** 2, 0, 1)
    g_sel = np.exp(-((x / 9) ** 2) - ((y + 14) / 8) ** 2)
    floor = -27 - 27 * g_mid - 47 * g_post - 12 * g_sel
    canal = 15 - np.sqrt(x * x + (y - 28) ** 2)
    above = np.maximum(z - floor, canal)
    cav = np.minimum(d0, above).astype(F32)
    thick = a.skull_mm * (1 + 0.12 * low) + 3 * _sig(-(z + 25) / 6) + 1.5 * _sig((y - 60) / 8)
    thick = np.where(above < d0, 0.5 * thick, thick)  # the fossa floors are thinner than the vault
    cav = np.where(cav < 0, cav * (a.skull_mm / thick), cav)
    cav = cav.astype(F32)
    # thin CSF over the skull base: a slice tangent to the fossa floor must not turn into a CSF sheet
    gap = (a.gap_mm * (1 + 0.3 * low) * np.where(above < d0, 0.3, 1.0)).clip(0.3, None).astype(F32)
    lam = 13.0
    sul = band_noise(
        rng,
        (nz, g.coarse, g.coarse),
        (lam / g.thickness_mm / 4, lam / cpx / 4, lam / cpx / 4),
        (lam / g.thickness_mm / 2, lam / cpx / 2, lam / cpx / 2),
    )
    # gyri run roughly perpendicular to the surface: mix radial clefts (wiggled) with the labyrinth
    theta = np.arctan2(y - c[1], x)
    wig = smooth_noise(rng, (nz, g.coarse, g.coarse), (8 / g.thickness_mm, 8 / cpx, 8 / cpx))
    sul = (0.6 * np.sin(theta * F32(70 * 2 * np.pi / 17) + 1.8 * wig) / 0.707 + 0.5 * sul).astype(F32)
    gy, gx = np.gradient(sul, axis=(1, 2))
    sulc_scale = float(cpx / np.mean(np.sqrt(gx * gx + gy * gy) + 1e-6))
    var = (
        smooth_noise(rng, (nz, g.coarse, g.coarse), (2.5 / g.thickness_mm, 2.5 / cpx, 2.5 / cpx)) + 0.8 * low
    ).astype(F32)
    tz = -14 - 0.22 * ab - 0.28 * np.clip(y - 5, 0, None)
    tent = (z - tz).astype(F32) / np.sqrt(1 + 0.28**2)
    zs = g.slice_head_z()
    idx = np.nonzero(zs < -12)[0]
    base: dict[str, np.ndarray] = {}
    bz = (0, 0)
    if idx.size:
        bz = (int(idx.min()), int(idx.max()) + 1)
        sl = slice(*bz)
        base = _base_fields(x[sl], y[sl], z[sl], rng, cpx, g.thickness_mm, a)
        # under the fossa floors (inside the cranial ellipsoid) the skull gives way to soft tissue, never to air
        base["low"] = np.maximum(base["low"], np.minimum(d0[sl], floor[sl] - z[sl])).astype(F32)
    return Fields(cav, gap, sul, var, tent, base, bz, sulc_scale)


def _base_fields(
    x: np.ndarray, y: np.ndarray, z: np.ndarray, rng: np.random.Generator, cpx: float, th: float, a: Anatomy
) -> dict[str, np.ndarray]:
    """Skull base: petrous bones, clivus, sinuses, mastoid air cells, orbits, lower face outline."""
    j = lambda s: rng.normal(0, s)  # noqa: E731  per-case jitter
    cells = smooth_noise(rng, x.shape, (1.5 / th, 1.5 / cpx, 1.5 / cpx))
    bone = []
    air = []
    for s in (-1, 1):
        bone.append(_edist(x, y, z, (s * 33 + j(2), 8 + j(2), -50 + j(2)), (24, 7.5, 9), yaw=s * 40))
        mast = _edist(x, y, z, (s * 48 + j(2), 22 + j(2), -58 + j(2)), (12, 14, 16))
        bone.append(mast)
        air.append(np.minimum(mast - 1.5, np.where(cells > 0.2, 3.0, -3.0)))
        orb = _edist(x, y, z, (s * 31, -70 + j(2), -42 + j(2)), (17, 21, 16))
        bone.append(np.minimum(orb + 1.2, -orb))  # orbital wall shell
        air.append(_edist(x, y, z, (s * 27, -52, -78), (15, 18, 18)))  # maxillary sinus
    clivus = _edist(x, y, z, (0, 2 + j(2), -60), (11, 9, 20), pitch=35)
    sph = _edist(x, y, z, (0, -18 + j(2), -53 + j(2)), np.array([12, 10, 9]) * np.array([1 + j(0.1), 1, 1]))
    eth = _edist(x, y, z, (0, -58, -48), (8, 16, 9))
    front = _edist(x, y, z, (0, a.center[1] - a.axes[1] - a.skull_mm * 0.5, -22 + j(3)), (11 + j(2), 2.5, 7))
    nasal = _edist(x, y, z, (0, -75, -72), (8, 22, 18))
    bone += [clivus, sph + 2.0, eth + 1.2, front + 2.0]
    air += [sph, np.minimum(eth, np.where(cells > -0.3, 3.0, -3.0)), front, nasal]
    orbits = [_edist(x, y, z, (s * 31, -70, -42), (15, 19, 14)) for s in (-1, 1)]
    globes = [_edist(x, y, z, (s * 31, -82, -42), (12, 12, 12)) for s in (-1, 1)]
    low = _edist(x, y, z, (0, -15, -70), (66, 82, 48))
    return {
        "bone": np.max(bone, axis=0),
        "air": np.max(air, axis=0),
        "fat": np.maximum(*orbits),
        "globe": np.maximum(*globes),
        "low": low,
    }

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
    block_occupancy,
    quadric,
    rotation,
    slab_width,
    smooth_noise,
    soft,
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
    ax: tuple[float, float, float],
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
        tuple(s / 4 for s in (lam / g.thickness_mm, lam / cpx, lam / cpx)),
        tuple(s / 2 for s in (lam / g.thickness_mm, lam / cpx, lam / cpx)),
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
    sph = _edist(x, y, z, (0, -18 + j(2), -53 + j(2)), (12, 10, 9) * np.array([1 + j(0.1), 1, 1]))
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


# Ventricles: (center, semi-axes, yaw) per side (x is mirrored), scaled by the case's ventricle factor.
_VENT = [
    ((10, -2, 17), (5.0, 26, 7), 8),
    ((11, -22, 9), (6.5, 10, 9), -10),
    ((19, 22, 7), (6.5, 11, 9), 25),
    ((21, 36, 5), (3.5, 9, 5), 20),
    ((28, -6, -17), (3.5, 15, 4), 20),
]
_DEEP = [
    ((14, -18, 10), (5, 10, 9), 0, "caudate"),
    ((22, -4, 0), (6, 15, 9), 10, "lentiform"),
    ((10, 9, 3), (8, 13, 9), 0, "thalamus"),
]


def _vent_parts(a: Anatomy) -> list[tuple[np.ndarray, np.ndarray, float]]:
    v = a.vent
    parts = []
    for (cx, cy, cz), (sx, sy, sz), yaw in _VENT:
        for s in (-1, 1):
            parts.append(
                (np.array([s * cx * v**0.4, cy * v**0.2, cz]), np.array([sx * v, sy * v**0.5, sz * v**0.6]), s * yaw)
            )
    parts.append((np.array([0, 2, -3.0]), np.array([1.5 + 2.0 * v, 13, 9]), 0.0))  # third
    parts.append((np.array([0, 30, -45.0]), np.array([6.5 * v**0.5, 3.5 * v**0.5, 6]), 0.0))  # fourth
    return parts


def _union(
    g: Grid, out: np.ndarray, parts: list[tuple[np.ndarray, np.ndarray, float]], grow: float = 0.0
) -> np.ndarray:
    for c, ax, yaw in parts:
        rot = rotation(yaw)
        b = quadric(g, c, ax + grow, rot)
        if b is not None:
            np.maximum(out[b.sl], block_occupancy(g, b, c, ax + grow, rot=rot), out=out[b.sl])
    return out


@dataclass
class Rendered:
    """One chunk of normal anatomy plus the maps lesions need."""

    hu: np.ndarray  # float32 [z, H, W]: intracranial HU until finish(), then the whole image
    cav: np.ndarray  # cavity distance (mm)
    incav: np.ndarray  # cavity occupancy after skull-base bone and air
    sub: np.ndarray  # subarachnoid CSF occupancy (sulci, fissures, cisterns, gap), of the intracranial part
    vent: np.ndarray  # ventricle occupancy, of the intracranial part
    paren: np.ndarray  # brain parenchyma occupancy, of the intracranial part
    var: np.ndarray  # smooth variation (unit std)
    mimic_masks: dict[str, np.ndarray]  # boolean masks of mimics, for the failure table
    shell: np.ndarray  # HU of bone, scalp and air outside the cavity
    cavity: np.ndarray  # cavity occupancy before the skull base
    base_ops: list[tuple[slice, float, np.ndarray]]  # skull-base blends (slices, HU, occupancy)


def render(sg: Grid, a: Anatomy, f: Fields, z0: int) -> Rendered:
    """Render the chunk grid `sg` (slices z0.. of the case, maybe cropped) in HU (noise and streaks come later)."""
    z1 = z0 + sg.shape[0]
    up = lambda fld: sg.upsample(fld[z0:z1])  # noqa: E731
    h = a.hu
    cav = up(f.cav)
    zs = sg.slice_head_z()
    nzc = np.clip(np.abs(zs - a.center[2]) / a.axes[2], 0, 0.97).astype(F32)
    w = slab_width(sg, nzc).astype(F32)[:, None, None]
    var = up(f.var)
    db = cav - up(f.gap)
    paren = soft(db, w)
    hu = (h["wm"] + 1.2 * var).astype(F32)
    tent = up(f.tent)
    supra = soft(tent, w)
    # cortex and sulci (supratentorial)
    sd = np.abs(up(f.sulci)) * F32(f.sulc_scale)
    depth = F32(a.sulc_depth) * (1 + F32(0.35) * var)
    in_depth = soft(depth - db, w)
    sulc = soft(F32(a.sulc_w / 2) - sd, w) * in_depth
    xm = sg.linear(np.array([1.0, 0, 0, 0]))
    zh = sg.linear(np.array([0, 0, 1.0, 0]))
    yh = sg.linear(np.array([0, 1.0, 0, 0]))
    fiss_lvl = soft(zh - (22 - 0.012 * yh * yh), w)
    fw = 0.55 + 0.35 * a.sulc_w
    fiss = soft(F32(fw) - np.abs(xm), sg.pixel_mm) * fiss_lvl
    gm = np.maximum(
        soft(F32(a.ctx_mm) - db, w), soft(F32(a.sulc_w / 2 + a.ctx_mm) - sd, w) * soft(depth + F32(a.ctx_mm) - db, w)
    )
    gm = np.maximum(gm, soft(F32(fw + a.ctx_mm) - np.abs(xm), w) * fiss_lvl)
    hu += (h["gm"] - h["wm"]) * gm * supra
    deep = np.zeros_like(hu)
    _union(
        sg,
        deep,
        [(np.array([s * c[0], c[1], c[2]]), np.array(ax, float), s * yaw) for c, ax, yaw, _ in _DEEP for s in (-1, 1)],
    )
    hu += (h["deep"] - hu) * deep * supra
    # posterior fossa: cerebellum, brainstem
    infra = 1 - supra
    hu += (h["cb"] + 1.5 * var - hu) * infra
    stem = np.zeros_like(hu)
    _union(
        sg,
        stem,
        [
            (np.array([0, 10, -20.0]), np.array([12, 10.5, 13.0]), 0.0),
            (np.array([0, 13, -40.0]), np.array([14, 12, 12.0]), 0.0),
            (np.array([0, 20, -62.0]), np.array([9, 9, 15.0]), 0.0),
        ],
    )
    hu += (h["bs"] - hu) * stem
    # CSF: gap, sulci, fissures, cisterns, ventricles
    sub = np.maximum(1 - paren, sulc * supra)
    sub = np.maximum(sub, fiss)
    cist = np.zeros_like(hu)
    _union(
        sg,
        cist,
        [
            (np.array([0, -10, -24.0]), np.array([13, 9, 6.0]), 0.0),
            (np.array([0, 24, -13.0]), np.array([7, 6, 6.0]), 0.0),
            (np.array([0, 10, -20.0]), np.array([13.5, 12.5, 9.0]), 0.0),
            (np.array([0, 2, -42.0]), np.array([12, 6, 10.0]), 0.0),
        ],
    )
    cist = np.clip(cist - stem, 0, 1)
    syl = [(np.array([s * 47, -6, -8.0]), np.array([20, 0.5 + 0.6 * a.sulc_w, 11]), 0.0) for s in (-1, 1)]
    for c, ax, _ in syl:
        rot = rotation(-np.sign(c[0]) * 30, 0, 0)
        b = quadric(sg, c, ax, rot)
        if b is not None:
            np.maximum(cist[b.sl], block_occupancy(sg, b, c, ax, rot=rot), out=cist[b.sl])
    sub = np.maximum(sub, cist)
    vent = np.zeros_like(hu)
    _union(sg, vent, _vent_parts(a))
    csf = np.maximum(sub, vent)
    hu += (h["csf"] - hu) * csf
    # dura: falx, tentorium, sinuses
    falx = soft(F32(0.6) - np.abs(xm), sg.pixel_mm) * fiss_lvl
    tentm = soft(F32(0.5) - np.abs(tent), w) * soft(yh - 8, 2.0) * soft(np.abs(xm) - 9, 2.0)
    sss = soft(F32(5.0) - cav - np.abs(xm) * 1.4, sg.pixel_mm) * soft(zh + 10, 3.0)
    trans = soft(F32(4.0) - cav, sg.pixel_mm) * soft(F32(4.5) - np.abs(tent + 1.0), 1.0) * soft(yh - 40, 3.0)
    dura = np.maximum(falx, tentm)
    sinus = np.maximum(sss, trans)
    hu += (h["falx"] - hu) * dura
    hu += (h["sinus"] - hu) * sinus
    mimics = {"falx_tentorium": dura > 0.3, "dural_sinus": sinus > 0.3}
    # calcifications
    for cal in a.calcs:
        ax = np.full(3, cal.radius) * (np.array([0.4, 1, 1]) if cal.kind == "falx_plaque" else 1.0)
        b = quadric(sg, cal.center, ax, margin=2.0)
        if b is None:
            continue
        occ = block_occupancy(sg, b, cal.center, ax)
        region = hu[b.sl]
        region += (F32(cal.hu) - region) * occ
        m = mimics.setdefault(f"calc_{cal.kind}", np.zeros(hu.shape, bool))
        m[b.sl] |= block_occupancy(sg, b, cal.center, ax, grow=1.5) > 0
    # beam hardening: brain next to the inner table reads high
    bh = F32(a.bh) / (1 + (np.maximum(cav, 0) / F32(3.0)) ** 2)
    hu += bh
    mimics["inner_table"] = (cav > -1.0) & (cav < 3.0)
    # shell: tables, diploe, scalp, air
    incav = soft(cav, w)
    shell = np.empty_like(hu)
    t, sc = a.skull_mm, a.scalp_mm
    for k in range(hu.shape[0]):
        wk = float(w[k, 0, 0])
        ti = 1.6
        xs = [
            0,
            ti,
            ti + 0.8,
            t - ti - 0.8,
            t - ti,
            t,
            t + 0.7,
            t + 0.4 * sc,
            t + 0.55 * sc,
            t + 0.7 * sc,
            t + sc,
            t + sc + max(wk, 0.5),
        ]
        vs = [
            h["cortical"],
            h["cortical"],
            h["diploe"],
            h["diploe"],
            h["cortical"],
            h["cortical"],
            h["soft"],
            h["soft"],
            0.5 * h["fat"],
            h["soft"],
            h["soft"],
            -1000.0,
        ]
        shell[k] = np.interp(-cav[k], xs, vs)
    # skull base (applied after lesions, in finish())
    ops: list[tuple[slice, float, np.ndarray]] = []
    bz0, bz1 = max(f.base_z[0], z0), min(f.base_z[1], z1)
    if bz0 < bz1 and f.base:
        ks = slice(bz0 - z0, bz1 - z0)
        bsl = slice(bz0 - f.base_z[0], bz1 - f.base_z[0])
        bg = sg.sub(bz0 - z0, bz1 - z0)
        bu = lambda name: bg.upsample(f.base[name][bsl])  # noqa: E731
        wb = w[ks]
        low = soft(bu("low"), wb) * soft(-cav[ks] - t, wb)
        bone = soft(bu("bone"), wb)
        airo = soft(bu("air"), wb)
        ops += [
            (ks, h["soft"], low),
            (ks, h["cortical"] * 0.9, bone),
            (ks, h["fat"], soft(bu("fat"), wb)),
            (ks, 10.0, soft(bu("globe"), wb)),
            (ks, -950.0, airo),
        ]
        incav[ks] *= (1 - bone) * (1 - airo)
        mimics["skull_base"] = np.zeros(hu.shape, bool)
        mimics["skull_base"][ks] = bone > 0.05
    paren = paren * (1 - csf)
    inside = incav > 0.5
    for name in mimics:
        if name != "skull_base":
            mimics[name] &= inside
    return Rendered(hu, cav, incav, sub, vent, paren, var, mimics, shell, soft(cav, w), ops)


def finish(r: Rendered) -> None:
    """Blend the intracranial HU with the skull, scalp and skull base (after lesions are painted)."""
    r.hu *= r.cavity
    r.hu += r.shell * (1 - r.cavity)
    for ks, value, occ in r.base_ops:
        region = r.hu[ks]
        region += (F32(value) - region) * occ

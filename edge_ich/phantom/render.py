"""Full-resolution rendering of the phantom's normal anatomy, chunk by chunk, in HU."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edge_ich.phantom.anatomy import Anatomy, Fields
from edge_ich.phantom.fields import (
    F32,
    Grid,
    block_occupancy,
    quadric,
    rotation,
    slab_width,
    soft,
)

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
    parts: list[tuple[np.ndarray, np.ndarray, float]] = []
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

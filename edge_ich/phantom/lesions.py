"""Hemorrhages for the phantom: sampled as 3D objects in head coordinates, rendered chunk by chunk.

Each subtype has the shape a radiologist expects: IPH an irregular blob with an edema rim, EDH a
biconvex lens against the inner table, SDH a crescent along the convexity (acute or nearly
isodense subacute), SAH blood in the subarachnoid spaces, IVH a fluid level in dependent ventricles.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edge_ich.phantom.anatomy import Anatomy
from edge_ich.phantom.fields import F32, Grid, block_occupancy, quadric, rotation, slab_width, soft
from edge_ich.phantom.render import Rendered

EDH, IPH, IVH, SAH, SDH = 1, 2, 3, 4, 5


@dataclass
class Lesion:
    """One hemorrhage: subtype code, placement and density."""

    code: int
    center: np.ndarray  # head mm (for EDH/SDH: the point on the inner table)
    size: float  # IPH/SAH radius, EDH/SDH extent radius (mm)
    hu: float
    depth: float = 0.0  # EDH/SDH maximal thickness (mm); IPH edema rim (mm)
    axes: np.ndarray | None = None
    rot: np.ndarray | None = None
    side: int = 0
    level: float = 0.0  # IVH: LPS y of the fluid level (mm)
    kind: str = ""  # e.g. "acute", "subacute", "convexity", "basal"


def _surface_point(a: Anatomy, u: np.ndarray) -> np.ndarray:
    """Where a ray from the cavity centre along u meets the (unperturbed) inner table."""
    u = u / np.linalg.norm(u)
    t = 1.0 / np.sqrt(np.sum((u / a.axes) ** 2))
    return a.center + u * t


def sample_lesions(
    rng: np.random.Generator,
    a: Anatomy,
    n: int,
    zrange: tuple[float, float],
    contrast: float,
    size: float,
    subacute_p: float,
    level_y: float,
    force: list[int] | None = None,
) -> list[Lesion]:
    """Draw n hemorrhages (subtype codes `force` if given) centred within the covered head heights `zrange`."""
    lo, hi = zrange
    out: list[Lesion] = []
    codes = rng.choice([EDH, IPH, IVH, SAH, SDH], size=n, p=[0.14, 0.28, 0.16, 0.2, 0.22])
    if force:
        codes = np.array(force)
    blood = lambda lo_, hi_: 40 + (rng.uniform(lo_, hi_) - 40) * contrast  # noqa: E731
    for code in codes:
        side = int(rng.choice([-1, 1]))
        if code == IPH:
            sites = [np.array([side * 22, -4, 0.0]), np.array([side * 10, 9, 3.0]), np.array([side * 22, 42, -45.0])]
            if rng.random() < 0.5:
                az, el = rng.uniform(-1.2, 1.2), rng.uniform(0.05, 0.8)
                u = np.array([side * np.cos(el) * np.cos(az), np.sin(az) * np.cos(el), np.sin(el)])
                c = a.center + (_surface_point(a, u) - a.center) * rng.uniform(0.45, 0.7)
            else:
                c = sites[rng.choice(3, p=[0.5, 0.35, 0.15])] + rng.normal(0, 2, 3)
            c[2] = np.clip(c[2], lo + 8, hi - 8) if hi - lo > 20 else (lo + hi) / 2
            r = rng.uniform(6, 18) * size
            axes = r * rng.uniform(0.7, 1.25, 3)
            out.append(Lesion(IPH, c, r, blood(60, 85), rng.uniform(2, 6), axes, rotation(*rng.uniform(-90, 90, 3))))
        elif code in (EDH, SDH):
            zt = rng.uniform(max(lo, -20) + 5, min(hi, 60) - 5) if min(hi, 60) - max(lo, -20) > 10 else (lo + hi) / 2
            az = rng.uniform(-1.0, 1.0) if code == EDH else rng.uniform(-0.7, 0.7)
            el = np.arcsin(np.clip((zt - a.center[2]) / a.axes[2], -0.95, 0.95))
            u = np.array(
                [
                    side * np.cos(el) * np.cos(az) * a.axes[0],
                    np.sin(az) * np.cos(el) * a.axes[1],
                    np.sin(el) * a.axes[2],
                ]
            )
            p0 = _surface_point(a, u)
            if code == EDH:
                out.append(
                    Lesion(EDH, p0, rng.uniform(22, 38) * size, blood(62, 88), rng.uniform(7, 20) * size, side=side)
                )
            else:
                sub = rng.random() < subacute_p
                hu = rng.uniform(32, 46) if sub else blood(55, 80)
                out.append(
                    Lesion(
                        SDH,
                        p0,
                        rng.uniform(38, 62),
                        hu,
                        rng.uniform(3, 10) * size,
                        side=side,
                        kind="subacute" if sub else "acute",
                    )
                )
        elif code == SAH:
            if rng.random() < 0.35 and lo < -10:
                c, kind = np.array([0, -6, -20.0]) + rng.normal(0, 3, 3), "basal"
            else:
                zt = rng.uniform(max(lo, -10), min(hi, 55)) if min(hi, 55) > max(lo, -10) else (lo + hi) / 2
                az = rng.uniform(-1.3, 1.3)
                el = np.arcsin(np.clip((zt - a.center[2]) / a.axes[2], -0.95, 0.95))
                u = np.array(
                    [
                        side * np.cos(el) * np.cos(az) * a.axes[0],
                        np.sin(az) * np.cos(el) * a.axes[1],
                        np.sin(el) * a.axes[2],
                    ]
                )
                c, kind = _surface_point(a, u), "convexity"
            out.append(Lesion(SAH, c, rng.uniform(18, 35) * size, blood(55, 78), kind=kind, side=side))
        else:
            both = rng.random() < 0.5
            c = np.array([0.0 if both else side * 20, 20, 6.0])
            out.append(
                Lesion(IVH, c, 45.0 if both else 22.0, blood(50, 75), level=level_y + rng.uniform(4, 22), side=side)
            )
    return out


def render_lesions(sg: Grid, les: list[Lesion], r: Rendered, lps_y: np.ndarray, labels: np.ndarray) -> None:
    """Paint the lesions into r.hu and `labels` (arrays of the chunk grid `sg`) in place; later lesions win."""
    w = F32(slab_width(sg, 0.5))
    for le in les:
        if le.code == IPH:
            assert le.axes is not None  # every IPH is drawn with its own axes
            b = quadric(sg, le.center, le.axes, le.rot, margin=1.0 + (le.depth + 5.0) / float(le.axes.min()))
            if b is None:
                continue
            e = b.e
            rr = 3.0 / float(np.sum(1.0 / le.axes))
            d = (1 - e) * F32(rr / 2) + F32(2.2) * r.var[b.sl]
            occ = soft(d, w)
            edema = np.clip(soft(d + F32(le.depth), w) - occ, 0, 1) * r.paren[b.sl]
            reg = r.hu[b.sl]
            reg += (F32(_edema_hu(le.hu - 26)) + 2 * r.var[b.sl] - reg) * edema
            reg += (F32(le.hu) + 4 * r.var[b.sl] - reg) * occ
            labels[b.sl][occ * r.incav[b.sl] > 0.5] = IPH
        elif le.code in (EDH, SDH):
            b = quadric(sg, le.center, np.full(3, le.size), margin=1.05)
            if b is None:
                continue
            cav = r.cav[b.sl]
            if le.code == EDH:
                dmax = F32(le.depth) * (1 - b.e)
            else:
                dmax = F32(le.depth) * np.minimum(1, F32(2.2) * (1 - b.e))
            xm = sg.sub(b.sl[0].start, b.sl[0].stop).linear(np.array([le.side, 0, 0, 0]))[:, b.sl[1], b.sl[2]]
            occ = soft(np.minimum(cav + 3.0, dmax - cav), w) * soft(xm - 1.5, w)
            reg = r.hu[b.sl]
            reg += (F32(le.hu) + 3 * r.var[b.sl] - reg) * occ
            labels[b.sl][occ * r.incav[b.sl] > 0.5] = le.code
        elif le.code == SAH:
            b = quadric(sg, le.center, np.full(3, le.size), margin=1.05)
            if b is None:
                continue
            occ = block_occupancy(sg, b, le.center, np.full(3, le.size)) * r.sub[b.sl]
            reg = r.hu[b.sl]
            reg += (F32(le.hu) + 3 * r.var[b.sl] - reg) * occ
            labels[b.sl][occ * r.incav[b.sl] > 0.5] = SAH
        elif le.code == IVH:
            b = quadric(sg, le.center, np.full(3, le.size), margin=1.05)
            if b is None:
                continue
            lvl = soft(lps_y[b.sl] - F32(le.level), w)
            occ = r.vent[b.sl] * lvl
            reg = r.hu[b.sl]
            reg += (F32(le.hu) + 2 * r.var[b.sl] - reg) * occ
            labels[b.sl][occ * r.incav[b.sl] > 0.5] = IVH


def _edema_hu(v: float) -> float:
    """Edema density: between CSF and white matter."""
    return float(np.clip(v, 10, 20))

"""Synthetic non-contrast head CT with intracranial hemorrhages and voxel ground truth (numpy + scipy).

`generate_case(seed)` draws a head (anatomy, pose, size), an acquisition (pixel spacing, slice
thickness, gantry tilt, noise, storage) and 0-3 hemorrhages, and renders an int16 HU volume with
uint8 subtype labels (BHSD codes). Mimics a Hounsfield threshold falls for are part of the
anatomy: calcified choroid plexus, pineal and basal ganglia, hyperdense falx and sinuses,
partial volume at the inner table, beam hardening and streaks near the skull base.
Same seed, same arrays. Writing to disk lives in `edge_ich.phantom.writers`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import numpy as np

from edge_ich.errors import InputError

SUBTYPES = {1: "epidural", 2: "intraparenchymal", 3: "intraventricular", 4: "subarachnoid", 5: "subdural"}

#: Codes of `PhantomCase.mimic_map` (where a threshold would be fooled, for failure tables).
MIMICS = {
    1: "inner_table",
    2: "falx_tentorium",
    3: "dural_sinus",
    4: "calc_choroid_plexus",
    5: "calc_pineal",
    6: "calc_basal_ganglia",
    7: "calc_falx_plaque",
    8: "skull_base",
    9: "streak",
}

_CHUNK = 8  # slices rendered at a time: keeps temporaries small (and out of mmap territory)


class Difficulty(str, Enum):
    """How hard a case is: lesion contrast and size, mimic strength, noise."""

    easy = "easy"
    standard = "standard"
    hard = "hard"


# contrast (blood above brain), lesion size factor, mimic strength, noise factor, subacute SDH share
_DIFF = {
    Difficulty.easy: (1.15, 1.3, 0.6, 0.8, 0.1),
    Difficulty.standard: (1.0, 1.0, 1.0, 1.0, 0.3),
    Difficulty.hard: (0.82, 0.7, 1.4, 1.3, 0.45),
}

# (storage, intercept, probability): int16 signed; 12-bit unsigned; 12-bit with the RSNA shifted intercept
_STORAGE = [
    ("int16", -1024, 0.4),
    ("int16", -1000, 0.05),
    ("uint12", -1024, 0.25),
    ("uint12", -1000, 0.15),
    ("rsna_shift", 0, 0.15),
]


@dataclass(frozen=True)
class Site:
    """An acquisition protocol: slice thickness when none is asked, field of view, kernel, dose.

    noise: factor on the drawn noise level (1.5 = a lower dose). sharpen: unsharp-mask amount of a
    sharper reconstruction kernel (edges overshoot). white_noise: share of the noise power that is
    uncorrelated (a sharper kernel moves noise power to higher frequencies).
    """

    thickness: float | None = None
    fov_mm: float | None = None
    noise: float = 1.0
    sharpen: float = 0.0
    white_noise: float = 0.0


SITES = {
    "default": Site(),
    "target": Site(thickness=2.5, fov_mm=200.0, noise=1.5, sharpen=0.6, white_noise=0.5),
}


@dataclass
class PhantomCase:
    """One synthetic series with its truth. Arrays are [slice, row, col], slices ascending along the normal."""

    hu: np.ndarray  # int16 [Z, Y, X]
    labels: np.ndarray  # uint8 [Z, Y, X], 0 none, else SUBTYPES code
    spacing: tuple[float, float, float]  # (slice, row, col) mm
    affine_lps: np.ndarray  # 4x4, (col, row, slice, 1) -> LPS mm
    meta: dict[str, Any]
    mimic_map: np.ndarray | None = field(default=None, repr=False)  # uint8 [Z, Y, X], MIMICS codes

    @property
    def slice_labels(self) -> np.ndarray:
        """uint8 [Z]: 1 where any hemorrhage is on that slice."""
        return (self.labels.reshape(self.labels.shape[0], -1).max(axis=1) > 0).astype(np.uint8)


def case_seed(seed: int, index: int) -> int:
    """Seed of case `index` in a dataset generated with `seed` (independent streams, stable forever)."""
    return int(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, int(index)]).generate_state(1, np.uint32)[0])


def min_hu(storage: str, intercept: int) -> int:
    """Lowest HU a storage scheme can represent (the phantom clips to it so HU round-trips exactly)."""
    if storage == "int16":
        return -1024
    if storage == "uint12":
        return int(intercept)
    return -1000


def max_hu(storage: str, intercept: int) -> int:
    """Highest HU a storage scheme can represent."""
    if storage == "int16":
        return 3071
    if storage == "uint12":
        return 4095 + int(intercept)
    return 3095


def generate_case(
    seed: int,
    difficulty: str = "standard",
    slices: int | None = None,
    thickness: float | None = None,
    size: int = 512,
    positive: bool | None = None,
    tilt: bool | None = None,
    subtypes: Sequence[str] | None = None,
    site: str = "default",
) -> PhantomCase:
    """Render one synthetic head CT series with hemorrhages (or none) and its voxel truth.

    size: in-plane matrix (512 real; 256/128 for fast tests), pixel spacing scales so the head keeps
    its physical size. slices/thickness: default a full head coverage at a random 1-5 mm.
    positive: force a case with (True) or without (False) hemorrhage; default about 2/3 positive
    (a drawn lesion can still fall outside a short slab: meta['positive'] says what the truth holds).
    subtypes: force these hemorrhages (SUBTYPES names, one lesion each; implies positive).
    site: an acquisition protocol from SITES ("default": the drawn one; "target": another scanner,
    thinner slices by default, a fixed smaller field of view, a sharper kernel, a lower dose).
    """
    from edge_ich.phantom.anatomy import coarse_fields, sample_anatomy
    from edge_ich.phantom.fields import Grid, ct_noise, rotation
    from edge_ich.phantom.lesions import render_lesions, sample_lesions
    from edge_ich.phantom.render import finish, render

    try:
        diff = Difficulty(difficulty)
    except ValueError:
        raise InputError(f"unknown difficulty {difficulty!r} (easy, standard, hard)") from None
    if size < 32 or size > 1024:
        raise InputError(f"size must be 32..1024, got {size}")
    if slices is not None and slices < 1:
        raise InputError("slices must be at least 1")
    if thickness is not None and not 0.3 <= thickness <= 12:
        raise InputError(f"thickness must be 0.3..12 mm, got {thickness}")
    if site not in SITES:
        raise InputError(f"unknown site {site!r} ({', '.join(SITES)})")
    proto = SITES[site]
    if thickness is None and proto.thickness is not None:
        thickness = proto.thickness
    contrast, lsize, mimic, noise_f, subacute_p = _DIFF[diff]
    rng = np.random.default_rng(int(seed) & 0xFFFFFFFFFFFFFFFF)
    # acquisition and pose
    if thickness is None:
        thickness = float(rng.choice([1.0, 1.25, 2.0, 2.5, 3.0, 5.0], p=[0.1, 0.1, 0.1, 0.2, 0.15, 0.35]))
    else:
        rng.random()
    thickness = float(thickness)
    scale = rng.uniform(0.9, 1.06)
    tilted = rng.random() < 0.15 if tilt is None else bool(tilt)
    tilt_deg = float(rng.uniform(8, 22)) if tilted else 0.0
    px_512 = rng.uniform(0.4, 0.5)
    if proto.fov_mm is not None:  # drawn all the same, so the other draws stay as they were
        px_512 = proto.fov_mm / 512
    px = px_512 * 512 / size
    yaw, pitch, roll = rng.uniform(-10, 10), rng.uniform(-12, 8), rng.uniform(-5, 5)
    trans = np.array([rng.uniform(-12, 12), rng.uniform(-15, 15), 0.0])
    z_lo, z_hi = -76.0 * scale, 76.0 * scale
    if slices is None:
        slices = int(np.ceil((z_hi - z_lo) / thickness))
    coverage = slices * thickness
    if coverage >= z_hi - z_lo:
        zc = (z_lo + z_hi) / 2 + rng.uniform(-4, 4)
    else:
        zc = float(np.clip(rng.normal(8, 14) * scale, z_lo + coverage / 2, z_hi - coverage / 2))
    tau = np.deg2rad(tilt_deg)
    row_dir = np.array([1.0, 0.0, 0.0])
    col_dir = np.array([0.0, np.cos(tau), -np.sin(tau)])
    dz = thickness / np.cos(tau)
    half = (size - 1) / 2 * px
    first = np.array([0.0, 0.0, zc - (slices - 1) / 2 * dz]) - half * row_dir - half * col_dir
    affine = np.eye(4)
    affine[:3, 0], affine[:3, 1], affine[:3, 2], affine[:3, 3] = row_dir * px, col_dir * px, [0, 0, dz], first
    rot = rotation(yaw, pitch, roll)
    head2lps = np.eye(4)
    head2lps[:3, :3] = rot * scale
    head2lps[:3, 3] = trans
    vox2head = np.linalg.inv(head2lps) @ affine
    coarse = max(32, min(128, size // 2)) if size < 512 else size // 4
    g = Grid((slices, size, size), vox2head, px / scale, thickness / scale, coarse)
    # anatomy, lesions, storage
    a = sample_anatomy(rng, mimic)
    draw = bool(rng.random() < 0.64)
    force = _subtype_codes(subtypes)
    if force and positive is False:
        raise InputError("subtypes given for a case forced negative")
    positive = bool(force) or (draw if positive is None else bool(positive))
    zs = g.slice_head_z()
    zr = (float(max(zs.min(), -60)), float(min(zs.max(), 65)))
    n_draw = int(rng.choice([1, 2, 3], p=[0.6, 0.28, 0.12]))
    n_les = (len(force) if force else n_draw) if positive else 0
    level_y = float(trans[1])  # LPS y of the head centre; IVH levels sit posterior to it
    lesions = sample_lesions(rng, a, n_les, zr, contrast, lsize, subacute_p, level_y, force) if n_les else []
    k = rng.choice(len(_STORAGE), p=[s[2] for s in _STORAGE])
    storage, intercept = _STORAGE[k][0], _STORAGE[k][1]
    sigma = rng.uniform(2.6, 4.2) * noise_f * proto.noise * np.sqrt(5.0 / thickness) * (512 / size) ** 0.5 * 0.85
    fields = coarse_fields(g, a, rng)
    noise_rng = np.random.default_rng(int(rng.integers(0, 2**63)))
    # render chunk by chunk
    hu = np.empty((slices, size, size), np.int16)
    labels = np.zeros((slices, size, size), np.uint8)
    mimic_map = np.zeros((slices, size, size), np.uint8)
    lo, hi = min_hu(storage, intercept), max_hu(storage, intercept)
    codes = {v: k for k, v in MIMICS.items()}
    for z0 in range(0, slices, _CHUNK):
        z1 = min(z0 + _CHUNK, slices)
        r0, r1, c0, c1 = _head_box(g, a, z0, z1)
        out = np.full((z1 - z0, size, size), -1000.0, np.float32)
        if r1 > r0 and c1 > c0:
            sg = g.crop(z0, z1, r0, r1, c0, c1)
            r = render(sg, a, fields, z0)
            lps_y = _lps_linear(affine, 1, (z0, z1, r0, r1, c0, c1))
            render_lesions(sg, lesions, r, lps_y, labels[z0:z1, r0:r1, c0:c1])
            finish(r)
            _streaks(sg, a, r)
            if proto.sharpen > 0:
                _sharpen(r.hu, proto.sharpen)
            mm = mimic_map[z0:z1, r0:r1, c0:c1]
            for name, m in r.mimic_masks.items():
                mm[m & (mm == 0)] = codes[name]
            out[:, r0:r1, c0:c1] = r.hu
        out += ct_noise(noise_rng, out.shape, float(sigma), white=proto.white_noise)
        np.clip(np.rint(out), lo, hi, out=out)
        hu[z0:z1] = out.astype(np.int16)
    labels[hu < -200] = 0
    vox_ml = float(abs(np.linalg.det(affine[:3, :3]))) / 1000.0
    counts = np.bincount(labels.ravel(), minlength=len(SUBTYPES) + 1)
    vols = {SUBTYPES[c]: round(float(counts[c]) * vox_ml, 3) for c in SUBTYPES if counts[c]}
    meta: dict[str, Any] = {
        "seed": int(seed),
        "difficulty": diff.value,
        "thickness": thickness,
        "tilt_deg": round(tilt_deg, 3),
        "pixel_mm": px,
        "size": size,
        "slices": slices,
        "positive": bool(vols),
        "subtypes": sorted(vols),
        "volumes_ml": vols,
        "volume_ml": round(sum(vols.values()), 3),
        "lesions": [{"subtype": SUBTYPES[le.code], "kind": le.kind} for le in lesions],
        "mimics": sorted(
            MIMICS[int(c)] for c in np.nonzero(np.bincount(mimic_map.ravel(), minlength=len(MIMICS) + 1))[0] if c
        ),
        "calcifications": [{"kind": c.kind, "hu": round(c.hu, 1)} for c in a.calcs],
        "storage": storage,
        "intercept": intercept,
        "noise_hu": round(float(sigma), 2),
        "site": site,
        "pose": {
            "yaw": round(yaw, 2),
            "pitch": round(pitch, 2),
            "roll": round(roll, 2),
            "scale": round(scale, 3),
            "translation_mm": [round(float(t), 2) for t in trans[:2]],
        },
        "orientation": [*row_dir.tolist(), *col_dir.tolist()],
        "window": {"center": 40, "width": 80},
    }
    spacing = (float(thickness), float(px), float(px))
    return PhantomCase(hu, labels, spacing, affine, meta, mimic_map)


def _subtype_codes(subtypes: Sequence[str] | None) -> list[int]:
    """SUBTYPES names (or codes) -> codes; InputError for an unknown name."""
    if not subtypes:
        return []
    names = {v: k for k, v in SUBTYPES.items()}
    out = []
    for s in subtypes:
        if isinstance(s, (int, np.integer)) and int(s) in SUBTYPES:
            out.append(int(s))
        elif str(s) in names:
            out.append(names[str(s)])
        else:
            raise InputError(f"unknown hemorrhage subtype {s!r} ({', '.join(SUBTYPES.values())})")
    return out


def _head_box(g: Any, a: Any, z0: int, z1: int) -> tuple[int, int, int, int]:
    """Rows and columns of slices z0..z1-1 that can hold the head (everything else is air)."""
    n = g.shape[1]
    box = np.array([[c, r, k, 1.0] for c in (0, n - 1) for r in (0, n - 1) for k in (z0, z1 - 1)])
    hz = (g.vox2head @ box.T)[2]
    zmin, zmax = float(hz.min()), float(hz.max())
    ax, cz = a.axes, a.center[2]
    f = 1.0
    if zmin > -20:  # above the face: the head narrows towards the vertex
        zz = min(max(cz, zmin), zmax)
        f = float(np.sqrt(max(0.05, 1 - ((zz - cz) / (ax[2] + 12)) ** 2)))
    if zmin > ax[2] + cz + 25:
        return 0, 0, 0, 0
    xs, ys = (-(ax[0] + 22) * f, (ax[0] + 22) * f), (-(ax[1] + 40) * f, (ax[1] + 25) * f)
    corners = np.array([[x, y, z, 1.0] for x in xs for y in ys for z in (zmin - 5, zmax + 5)])
    v = (g.head2vox @ corners.T).T
    c0, c1 = int(np.clip(np.floor(v[:, 0].min()) - 2, 0, n)), int(np.clip(np.ceil(v[:, 0].max()) + 3, 0, n))
    r0, r1 = int(np.clip(np.floor(v[:, 1].min()) - 2, 0, n)), int(np.clip(np.ceil(v[:, 1].max()) + 3, 0, n))
    if c1 - c0 < 8 or r1 - r0 < 8:
        return 0, n, 0, n
    return r0, r1, c0, c1


def _sharpen(hu: np.ndarray, amount: float) -> None:
    """In place, per slice: hu += amount * (hu - blur(hu)), blur a separable [1, 2, 1] / 4 kernel."""
    b = hu.copy()
    b[:, 1:-1, :] = 0.25 * hu[:, :-2, :] + 0.5 * hu[:, 1:-1, :] + 0.25 * hu[:, 2:, :]
    c = b.copy()
    c[:, :, 1:-1] = 0.25 * b[:, :, :-2] + 0.5 * b[:, :, 1:-1] + 0.25 * b[:, :, 2:]
    hu += np.float32(amount) * (hu - c)


def _lps_linear(affine: np.ndarray, axis: int, box: tuple[int, int, int, int, int, int]) -> np.ndarray:
    """LPS coordinate `axis` of every voxel of a box (z0, z1, r0, r1, c0, c1), float32."""
    z0, z1, r0, r1, c0, c1 = box
    a = affine[axis]
    k = np.arange(z0, z1, dtype=float)
    out = (
        (a[3] + a[2] * k)[:, None, None]
        + (a[1] * np.arange(r0, r1, dtype=float))[None, :, None]
        + (a[0] * np.arange(c0, c1, dtype=float))[None, None, :]
    )
    return out.astype(np.float32)


def _streaks(sg: Any, a: Any, r: Any) -> None:
    """Beam-hardening streaks and the dark band between the petrous bones on skull-base slices."""
    hv = sg.head2vox
    zs = sg.slice_head_z()
    _, h, w = sg.shape
    rows = np.arange(h, dtype=np.float32)[:, None]
    cols = np.arange(w, dtype=np.float32)[None, :]
    items = list(a.streaks) + [(0.0, 10.0, 0.0, -18.0 * a.bh / 10.0)]
    sm = r.mimic_masks.setdefault("streak", np.zeros(r.hu.shape, bool))
    for k in range(sg.shape[0]):
        taper = float(np.exp(-(((zs[k] + 48) / 11) ** 2)))
        if taper < 0.05:
            continue
        acc = np.zeros((h, w), np.float32)
        for x, y, ang, amp in items:
            p = hv @ np.array([x, y, zs[k], 1.0])
            d = np.abs(
                (cols - np.float32(p[0])) * np.float32(np.sin(ang))
                - (rows - np.float32(p[1])) * np.float32(np.cos(ang))
            )
            d *= np.float32(sg.pixel_mm / 0.9)
            acc += np.float32(amp * taper) / (1 + d * d)
        m = r.incav[k]
        r.hu[k] += acc * m
        sm[k] = (np.abs(acc) > 8) & (m > 0.5)

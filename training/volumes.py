"""Volumes at the model's grid, cached, and the samplers that feed the two networks.

A `Volume` holds one scan already resized to the model input size (HU, float32), its slice
labels and, where known, its voxel truth. Windows and context stacks are made on the fly
with `edge_ich.preprocess` (the runtime's own definition), so training sees what the
runtime feeds the network.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edge_ich.card import Window
from edge_ich.errors import InputError
from edge_ich.preprocess import DEFAULT_WINDOWS, context_indices, prepare_slice, resize2d

Spacing = tuple[float, float, float]


@dataclass
class Volume:
    """One scan on the model grid: HU [Z,H,W] float32, labels, optional truth [Z,H,W] (0 none, 1..5 subtype)."""

    case_id: str
    hu: np.ndarray
    spacing: Spacing
    slice_labels: np.ndarray | None
    truth: np.ndarray | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    _windows: np.ndarray | None = field(default=None, repr=False)
    _brain: np.ndarray | None = field(default=None, repr=False)
    _cavity: np.ndarray | None = field(default=None, repr=False)

    @property
    def n(self) -> int:
        return int(self.hu.shape[0])

    def windows(self, windows: Sequence[Window] = DEFAULT_WINDOWS) -> np.ndarray:
        """Windowed slices [Z, n_windows, H, W] (computed once, kept as float16 to save memory)."""
        if self._windows is None or self._windows.shape[1] != len(windows):
            size = (int(self.hu.shape[1]), int(self.hu.shape[2]))
            self._windows = np.stack([prepare_slice(s, windows, size) for s in self.hu]).astype(np.float16)
        return self._windows

    def stack(self, z: int, context: int, windows: Sequence[Window] = DEFAULT_WINDOWS) -> np.ndarray:
        """Network input for slice z: neighbours z-k..z+k (edges repeat) x windows -> [C, H, W] float32."""
        w = self.windows(windows)
        return np.concatenate([w[j] for j in context_indices(z, self.n, context)], axis=0).astype(np.float32)

    def brain(self) -> np.ndarray:
        """Brain mask [Z,H,W] from edge_ich.analysis.brain (cached)."""
        if self._brain is None:
            from edge_ich.analysis.brain import brain_mask

            self._brain = np.asarray(brain_mask(self.hu), dtype=bool)
        return self._brain

    def cavity(self) -> np.ndarray:
        """Intracranial cavity [Z,H,W] up to the inner table, from edge_ich.analysis.brain (cached)."""
        if self._cavity is None:
            from edge_ich.analysis.brain import cavity_mask

            self._cavity = np.asarray(cavity_mask(self.hu), dtype=bool)
        return self._cavity

    def truth_binary(self) -> np.ndarray:
        if self.truth is None:
            raise InputError(f"case {self.case_id} has no voxel truth")
        return self.truth > 0


def to_model_grid(hu: np.ndarray, spacing: Spacing, size: tuple[int, int]) -> tuple[np.ndarray, Spacing]:
    """Resize each slice with the runtime's resize (block mean for integer factors)."""
    z, h, w = hu.shape
    out = np.stack([resize2d(s, size) for s in hu]).astype(np.float32)
    return out, (float(spacing[0]), float(spacing[1]) * h / size[0], float(spacing[2]) * w / size[1])


def mask_to_model_grid(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Label mask to the model grid: nearest neighbour (majority would blur subtype codes)."""
    z, h, w = mask.shape
    if (h, w) == tuple(size):
        return mask.astype(np.uint8)
    ry = (np.arange(size[0]) * h / size[0] + h / size[0] / 2).astype(int).clip(0, h - 1)
    rx = (np.arange(size[1]) * w / size[1] + w / size[1] / 2).astype(int).clip(0, w - 1)
    return mask[:, ry][:, :, rx].astype(np.uint8)


# --------------------------------------------------------------------------- phantoms


@dataclass(frozen=True)
class PhantomSpec:
    """Which phantoms to make: seeds start..start+count-1, generated directly at `gen_size`."""

    start: int
    count: int
    difficulty: str = "standard"
    slices: int | None = 24
    thickness: float | None = 5.0
    gen_size: int = 128
    site: str = "default"  # an acquisition protocol of edge_ich.phantom.generator.SITES

    def key(self, seed: int) -> str:
        spec = f"{seed}-{self.difficulty}-{self.slices}-{self.thickness}-{self.gen_size}"
        if self.site != "default":
            spec += f"-{self.site}"
        return hashlib.sha1(spec.encode()).hexdigest()[:16]


def _make_phantom(args: tuple[PhantomSpec, int, tuple[int, int], str]) -> str:
    spec, seed, size, cache = args
    path = Path(cache) / f"phantom_{spec.key(seed)}_{size[0]}.npz"
    if path.is_file():
        return str(path)
    from edge_ich.phantom.generator import generate_case

    kw: dict[str, Any] = {"difficulty": spec.difficulty, "size": spec.gen_size, "site": spec.site}
    if spec.slices is not None:
        kw["slices"] = spec.slices
    if spec.thickness is not None:
        kw["thickness"] = spec.thickness
    case = generate_case(seed, **kw)
    hu, spacing = to_model_grid(np.asarray(case.hu), tuple(case.spacing), size)  # type: ignore[arg-type]
    truth = mask_to_model_grid(np.asarray(case.labels), size)
    tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp.npz")  # several processes may fill one cache
    np.savez_compressed(
        tmp,
        hu=hu.astype(np.float32),
        truth=truth,
        spacing=np.array(spacing),
        slice_labels=(truth.reshape(truth.shape[0], -1).max(1) > 0).astype(np.uint8),
        meta=json.dumps({"seed": seed, "difficulty": spec.difficulty, "site": spec.site}),
    )
    tmp.replace(path)
    return str(path)


def load_npz(path: Path, case_id: str) -> Volume:
    with np.load(path) as d:
        return Volume(
            case_id=case_id,
            hu=d["hu"],
            spacing=tuple(float(v) for v in d["spacing"]),  # type: ignore[arg-type]
            slice_labels=d["slice_labels"],
            truth=d["truth"],
            meta=json.loads(str(d["meta"])),
        )


def phantom_volumes(spec: PhantomSpec, size: tuple[int, int], cache: Path, workers: int = 1) -> list[Volume]:
    """Generate (or read from the .npz cache) phantoms on the model grid."""
    cache = Path(cache)
    cache.mkdir(parents=True, exist_ok=True)
    jobs = [(spec, seed, size, str(cache)) for seed in range(spec.start, spec.start + spec.count)]
    if workers > 1 and len(jobs) > 1:
        with ProcessPoolExecutor(workers) as ex:
            paths = list(ex.map(_make_phantom, jobs, chunksize=4))
    else:
        paths = [_make_phantom(j) for j in jobs]
    return [load_npz(Path(p), f"phantom-{seed:05d}") for p, (_, seed, _, _) in zip(paths, jobs)]


def dataset_volumes(kind: str, root: Path, size: tuple[int, int], limit: int | None = None, **kw: Any) -> list[Volume]:
    """Non-phantom data through the dataset adapters (`training.data.open_dataset`)."""
    from training.data import open_dataset

    cases = open_dataset(kind, root, **kw)
    out: list[Volume] = []
    for case in list(cases)[:limit]:
        hu, spacing = case.load()
        hu_m, sp = to_model_grid(np.asarray(hu), spacing, size)
        truth = None
        if case.load_mask is not None:
            truth = mask_to_model_grid(np.asarray(case.load_mask()), size)
        labels = case.slice_labels
        if labels is None and truth is not None:
            labels = (truth.reshape(truth.shape[0], -1).max(1) > 0).astype(np.uint8)
        out.append(Volume(case.case_id, hu_m, sp, None if labels is None else np.asarray(labels, np.uint8), truth))
    return out


# --------------------------------------------------------------------------- samplers


def window_starts(n: int, length: int, stride: int) -> list[int]:
    """Starts of windows of `length` slices covering 0..n-1 (the last one aligned to the end)."""
    if n <= length:
        return [0]
    starts = list(range(0, n - length + 1, stride))
    if starts[-1] != n - length:
        starts.append(n - length)
    return starts


def sequence_window(vol: Volume, start: int, length: int, windows: Sequence[Window]) -> tuple[np.ndarray, np.ndarray]:
    """Classifier input [T, C, H, W] for slices start..start+T-1 (the last slice repeats if short) and a valid flag [T]."""
    w = vol.windows(windows)
    idx = [min(start + t, vol.n - 1) for t in range(length)]
    valid = np.array([start + t < vol.n for t in range(length)], dtype=np.float32)
    return w[idx].astype(np.float32), valid


class ClassifierSampler:
    """Random windows of contiguous slices with their slice labels (weak supervision only).

    With `augment`, each window is flipped left-right half the time and shifted in-plane by up
    to `max_shift` pixels (the same for all its slices): the label of a slice does not depend on
    either. Without it tens of scans are memorised, and on hundreds the CAMs spread wider.
    """

    def __init__(
        self,
        vols: Sequence[Volume],
        length: int,
        windows: Sequence[Window] = DEFAULT_WINDOWS,
        augment: bool = False,
        max_shift: int = 4,
    ) -> None:
        self.augment = augment
        self.max_shift = max_shift
        self.vols = [v for v in vols if v.slice_labels is not None]
        if not self.vols:
            raise InputError("no case has slice labels; the classifier needs them")
        self.length = length
        self.windows = windows
        pos = np.array([float(v.slice_labels.any()) for v in self.vols])  # type: ignore[union-attr]
        # balance scans with and without bleeding
        p = np.where(pos > 0, 0.5 / max(pos.sum(), 1), 0.5 / max((1 - pos).sum(), 1))
        self.p = p / p.sum()

    def sample(self, rng: np.random.Generator, batch: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        xs, ys, ms = [], [], []
        for i in rng.choice(len(self.vols), size=batch, p=self.p):
            v = self.vols[int(i)]
            start = int(rng.integers(0, max(v.n - self.length, 0) + 1))
            x, valid = sequence_window(v, start, self.length, self.windows)
            if self.augment:
                x = self._augment(x, rng)
            y = np.array([v.slice_labels[min(start + t, v.n - 1)] for t in range(self.length)], np.float32)  # type: ignore[index]
            xs.append(x)
            ys.append(y)
            ms.append(valid)
        return np.stack(xs), np.stack(ys), np.stack(ms)

    def _augment(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """x [T, C, H, W]: one flip and one shift for the whole window; pixels shifted in are 0 (air in every window)."""
        if rng.random() < 0.5:
            x = x[..., ::-1]
        if self.max_shift > 0:
            dy, dx = (int(d) for d in rng.integers(-self.max_shift, self.max_shift + 1, size=2))
            out = np.zeros_like(x)
            h, w = x.shape[-2:]
            out[..., max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)] = x[
                ..., max(-dy, 0) : h + min(-dy, 0), max(-dx, 0) : w + min(-dx, 0)
            ]
            x = out
        return np.ascontiguousarray(x)


class SegmenterSampler:
    """Random slices with their target masks; half the batch from slices whose target is not empty.

    `skip_unresolved`: leave out slices labelled positive whose target came out empty (a
    pseudo-mask the refinement could not find). Trained as empty, they would teach the
    segmenter that blood is background.
    """

    def __init__(
        self,
        vols: Sequence[Volume],
        targets: Sequence[np.ndarray],
        context: int,
        windows: Sequence[Window] = DEFAULT_WINDOWS,
        pos_fraction: float = 0.5,
        skip_unresolved: bool = False,
    ) -> None:
        self.vols = list(vols)
        self.targets = [np.asarray(t, dtype=bool) for t in targets]
        self.context = context
        self.windows = windows
        self.pos_fraction = pos_fraction
        self.pos: list[tuple[int, int]] = []
        self.neg: list[tuple[int, int]] = []
        self.skipped = 0
        for i, t in enumerate(self.targets):
            has = t.reshape(t.shape[0], -1).any(axis=1)
            labels = self.vols[i].slice_labels
            for z in range(t.shape[0]):
                if skip_unresolved and not has[z] and labels is not None and labels[z]:
                    self.skipped += 1
                    continue
                (self.pos if has[z] else self.neg).append((i, z))
        if not self.pos and not self.neg:
            why = f" (all {self.skipped} bleed slices came out without a pseudo-mask)" if self.skipped else ""
            raise InputError(f"no slices to train the segmenter on{why}")

    def sample(self, rng: np.random.Generator, batch: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Inputs [B,C,H,W], targets [B,1,H,W], and 1.0 per slice known to hold no blood (labelled negative)."""
        xs, ys, negs = [], [], []
        for _ in range(batch):
            pool = self.pos if (self.pos and (not self.neg or rng.random() < self.pos_fraction)) else self.neg
            i, z = pool[int(rng.integers(0, len(pool)))]
            x = self.vols[i].stack(z, self.context, self.windows)
            y = self.targets[i][z]
            if rng.random() < 0.5:  # left-right flip: heads are roughly symmetric
                x, y = x[:, :, ::-1], y[:, ::-1]
            xs.append(x)
            ys.append(y[None].astype(np.float32))
            labels = self.vols[i].slice_labels
            negs.append(float(labels is not None and not labels[z] and not y.any()))
        return (
            np.ascontiguousarray(np.stack(xs)),
            np.ascontiguousarray(np.stack(ys)),
            np.asarray(negs, dtype=np.float32),
        )

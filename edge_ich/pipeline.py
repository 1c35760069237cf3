"""The streaming path: slices in -> preprocess -> backend -> postprocess.

A reader thread decodes and preprocesses slices ahead of inference through a bounded queue,
so decoding overlaps compute and memory stays flat in the series length (only the output
mask grows). A slice is inferred as soon as its context neighbours are prepared.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edge_ich.analysis.labels import components, label8, runs_of, touching
from edge_ich.analysis.masks import SliceMask, slices_with_content
from edge_ich.backends.base import Backend
from edge_ich.card import ModelCard
from edge_ich.preprocess import context_indices, prepare_slice, resize_back_above, resize_back_box
from edge_ich.sources.volume import SliceSource

STAGES = ("read", "preprocess", "h2d", "compute", "d2h", "postprocess", "write")


@dataclass
class StageTimes:
    """Seconds per slice for each stage; batched stages are split evenly over their slices."""

    per_slice: dict[str, list[float]] = field(default_factory=lambda: {s: [] for s in STAGES})
    wall_s: float = 0.0
    first_infer_s: float | None = None
    last_read_at: float | None = None  # perf_counter() when the last slice had been read
    phases: dict[str, float] = field(default_factory=dict)  # seconds per phase of a run (report timings.phases_s)

    def add(self, stage: str, seconds: float, n: int = 1) -> None:
        share = seconds / max(n, 1)
        self.per_slice[stage].extend([share] * n)

    def spread(self, stage: str, seconds: float) -> None:
        """Add a per-series cost evenly onto the slices already timed for `stage`."""
        vals = self.per_slice[stage]
        if not vals:
            return
        share = seconds / len(vals)
        self.per_slice[stage] = [v + share for v in vals]

    def totals(self) -> dict[str, float]:
        return {s: float(sum(v)) for s, v in self.per_slice.items()}


@dataclass
class Segmentation:
    """What the network said about one series, on the native grid."""

    mask: SliceMask  # [Z, Y, X] 0/1, thresholded probability (before component filtering), a box per slice
    slice_prob: np.ndarray  # float32 [Z], max probability per slice
    timings: StageTimes
    # probability on the model grid, float16 [h, w] per slice: a [Z, h, w] array, or a dict holding only
    # the slices with something above the threshold (the others' native mask is empty); None: not kept
    prob: np.ndarray | dict[int, np.ndarray] | None = None
    constant: list[int] = field(default_factory=list)  # slices that held one value only (no image)

    def native_prob(
        self, z: int, shape: tuple[int, int], box: tuple[slice, slice] = (slice(None), slice(None))
    ) -> np.ndarray | None:
        """Probability of slice z on the native grid (the mask is this >= the threshold), or the `box`
        (rows, cols) part of it: the same values, computed only there."""
        p = self.prob.get(z) if isinstance(self.prob, dict) else None if self.prob is None else self.prob[z]
        return None if p is None else resize_back_box(p, shape, *box)


_DONE = object()


def probability(raw: np.ndarray, card: ModelCard) -> np.ndarray:
    """The network's raw output [N, H, W] -> probability, per the card's output kind."""
    if card.output_kind == "probability":
        return raw.astype(np.float32, copy=False)
    return (1.0 / (1.0 + np.exp(-np.clip(raw, -60.0, 60.0)))).astype(np.float32)


def native_mask(prob: np.ndarray, card: ModelCard, shape: tuple[int, int]) -> np.ndarray:
    """One model-grid probability [H, W] -> thresholded uint8 mask on the native grid [rows, cols]."""
    return resize_back_above(prob, shape, card.threshold).view(np.uint8)


def _reader(
    source: SliceSource,
    card: ModelCard,
    q: queue.Queue[Any],
    timings: StageTimes,
    stop: threading.Event,
    constant: list[int],
) -> None:
    """Decode and preprocess slices in order into the queue; pass an exception on if one happens."""
    try:
        for i in range(source.geometry.shape[0]):
            if stop.is_set():
                return
            t0 = time.perf_counter()
            hu = source.read_hu(i)
            if hu.size and float(hu.max()) == float(hu.min()):
                constant.append(i)
            t1 = time.perf_counter()
            prepared = prepare_slice(hu, card.windows, card.input_size)
            t2 = time.perf_counter()
            timings.add("read", t1 - t0)
            timings.add("preprocess", t2 - t1)
            q.put((i, prepared))
        timings.last_read_at = time.perf_counter()
        q.put(_DONE)
    except BaseException as exc:  # handed to the consumer, which re-raises it
        q.put(exc)


def segment(
    source: SliceSource,
    backend: Backend,
    *,
    batch: int = 4,
    queue_depth: int = 8,
    progress: Callable[[int, int], None] | None = None,
) -> Segmentation:
    """Run the model over every slice of `source`, streaming; return the native-grid mask."""
    card = backend.card
    n, rows, cols = source.geometry.shape
    k = card.context
    mask = SliceMask((n, rows, cols))
    slice_prob = np.zeros(n, dtype=np.float32)
    prob: dict[int, np.ndarray] = {}  # only slices with content: memory flat in series length
    constant: list[int] = []
    timings = StageTimes()
    q: queue.Queue[Any] = queue.Queue(maxsize=max(queue_depth, 2 * k + 2))
    stop = threading.Event()
    t_start = time.perf_counter()
    reader = threading.Thread(
        target=_reader, args=(source, card, q, timings, stop, constant), name="edge-ich-reader", daemon=True
    )
    reader.start()

    window: dict[int, np.ndarray] = {}  # prepared slices still needed as context
    pending: list[int] = []  # slices stacked into the current batch
    inputs: list[np.ndarray] = []
    next_to_stack = 0
    done_count = 0
    have = -1  # highest prepared index received

    def flush() -> None:
        nonlocal done_count
        if not pending:
            return
        x = np.stack(inputs)
        out = backend.infer(x)
        t = backend.last_times
        if timings.first_infer_s is None:
            timings.first_infer_s = t.total
        m = len(pending)
        timings.add("h2d", t.h2d, m)
        timings.add("compute", t.compute, m)
        timings.add("d2h", t.d2h, m)
        t0 = time.perf_counter()
        prob_small = probability(out[:, 0], card)
        for j, idx in enumerate(pending):
            mask[idx] = native_mask(prob_small[j], card, (rows, cols))
            slice_prob[idx] = float(prob_small[j].max())
            if slice_prob[idx] >= card.threshold:
                prob[idx] = prob_small[j].astype(np.float16)
        timings.add("postprocess", time.perf_counter() - t0, m)
        done_count += m
        pending.clear()
        inputs.clear()
        if progress is not None:
            progress(done_count, n)

    try:
        finished = False
        while not finished:
            item = q.get()
            if item is _DONE:
                finished = True
            elif isinstance(item, BaseException):
                raise item
            else:
                i, prepared = item
                window[i] = prepared
                have = i
            # stack every slice whose neighbours are all prepared
            while next_to_stack < n and (finished or have >= min(next_to_stack + k, n - 1)):
                idx = context_indices(next_to_stack, n, k)
                inputs.append(np.concatenate([window[j] for j in idx], axis=0))
                pending.append(next_to_stack)
                next_to_stack += 1
                for old in [j for j in window if j < next_to_stack - k]:
                    del window[old]
                if len(pending) >= batch:
                    flush()
        flush()
    finally:
        stop.set()
        # unblock a reader waiting on a full queue, then let it finish
        while reader.is_alive():
            try:
                q.get_nowait()
            except queue.Empty:
                reader.join(timeout=0.05)
    timings.wall_s = time.perf_counter() - t_start
    return Segmentation(mask=mask, slice_prob=slice_prob, timings=timings, prob=prob, constant=sorted(constant))


@dataclass
class Component:
    """One connected hemorrhage region after size filtering."""

    id: int
    voxels: int
    volume_ml: float
    slices: tuple[int, int]
    centroid_voxel: tuple[float, float, float]  # (slice, row, col)
    centroid_lps_mm: tuple[float, float, float]
    max_probability: float | None = None  # highest native-grid probability inside the region


def _box_of(mask: Any, z: int) -> tuple[int, int, np.ndarray]:
    """(first row, first column, box) around slice z's content, of a SliceMask or a dense array."""
    if isinstance(mask, SliceMask):
        box = mask.box(z)
        assert box is not None
        return box
    plane = np.asarray(mask[z])
    rows, cols = np.flatnonzero(plane.any(axis=1)), np.flatnonzero(plane.any(axis=0))
    r0, c0 = int(rows[0]), int(cols[0])
    return r0, c0, plane[r0 : int(rows[-1]) + 1, c0 : int(cols[-1]) + 1]


def _set_box(mask: Any, z: int, r0: int, c0: int, box: np.ndarray) -> None:
    if isinstance(mask, SliceMask):
        mask.set_box(z, r0, c0, box)
    else:
        mask[z, r0 : r0 + box.shape[0], c0 : c0 + box.shape[1]] = box


def postprocess(
    mask: Any, spacing: tuple[float, float, float], affine_lps: np.ndarray, min_component_mm3: float
) -> tuple[Any, list[Component]]:
    """Label 3D components (26-connected), drop those under `min_component_mm3`, measure the rest."""
    kept, comps, _ = find_components(mask, spacing, affine_lps, min_component_mm3)
    return kept, comps


def find_components(
    mask: Any,
    spacing: tuple[float, float, float],
    affine_lps: np.ndarray,
    min_component_mm3: float,
    prob_of: Callable[[int, tuple[slice, slice]], np.ndarray | None] | None = None,
) -> tuple[Any, list[Component], list[Component]]:
    """Label 3D components (26-connected); return (mask of the kept, reported, candidates below the size).

    Nothing is dropped silently: components under `min_component_mm3` come back as candidates,
    measured like the reported ones. prob_of(z, (rows, cols)) gives that box of slice z's native-grid
    probability (the box around the slice's mask), so each region carries its highest probability.
    The mask (a SliceMask or a dense uint8 [Z, Y, X] array) is filtered IN PLACE and returned.
    Components are found slice by slice (2D labels of runs of pixels, then links between touching
    runs of adjacent slices), so memory stays at one slice's runs whatever the series length.
    """
    voxel_mm3 = float(np.prod(spacing))
    zs = slices_with_content(mask)
    if zs.size == 0:
        return mask, [], []
    width = mask.shape[2]
    offsets: dict[int, tuple[int, int]] = {}  # slice -> (first global 2D label, count)
    size2, sy2, sx2, z2, links, pmax2 = [], [], [], [], [], []
    total, prev, prev_z, prev_off = 0, None, -2, 0
    for z in (int(v) for v in zs):
        r0, c0, box = _box_of(mask, z)
        runs = runs_of(box, r0, c0)  # 8-connected 2D components, as runs of pixels
        n, length = runs.count, runs.length
        size2.append(np.bincount(runs.label, weights=length, minlength=n))
        sy2.append(np.bincount(runs.label, weights=runs.row * length, minlength=n))
        # the columns of a run sum to length * (start + end - 1) / 2: exact in float64, as the pixel sum was
        sx2.append(np.bincount(runs.label, weights=length * (runs.start + runs.end - 1) / 2.0, minlength=n))
        z2.append(np.full(n, z))
        pz = prob_of(z, (slice(r0, r0 + box.shape[0]), slice(c0, c0 + box.shape[1]))) if prob_of is not None else None
        pm = np.full(n, np.nan)
        if pz is not None:
            vals = np.asarray(pz, dtype=np.float64)[np.asarray(box) != 0]  # raster order, run after run
            firsts = np.concatenate([[0], np.cumsum(length)[:-1]])
            pm[:] = -np.inf
            np.maximum.at(pm, runs.label, np.maximum.reduceat(vals, firsts))
        pmax2.append(pm)
        if prev is not None and prev_z == z - 1:
            pairs = touching(prev, runs, width)
            links.append(np.stack([pairs[:, 0] + prev_off, pairs[:, 1] + total], axis=1))
        offsets[z] = (total, n)
        prev, prev_z, prev_off = runs, z, total
        total += n
    edges = np.concatenate(links) if links else np.zeros((0, 2), dtype=np.int64)
    count, comp = components(total, edges[:, 0], edges[:, 1])
    size2a, z2a = np.concatenate(size2), np.concatenate(z2)
    sizes = np.bincount(comp, weights=size2a, minlength=count)
    sums = [
        np.bincount(comp, weights=z2a * size2a, minlength=count),
        np.bincount(comp, weights=np.concatenate(sy2), minlength=count),
        np.bincount(comp, weights=np.concatenate(sx2), minlength=count),
    ]
    zmin = np.full(count, mask.shape[0], dtype=np.int64)
    zmax = np.full(count, -1, dtype=np.int64)
    np.minimum.at(zmin, comp, z2a)
    np.maximum.at(zmax, comp, z2a)
    pmax = np.full(count, -np.inf)
    np.maximum.at(pmax, comp, np.nan_to_num(np.concatenate(pmax2), nan=-np.inf))
    keep = sizes * voxel_mm3 >= min_component_mm3
    keep2 = keep[comp]
    for z, (off, n) in offsets.items():  # second pass: clear the dropped components
        if not keep2[off : off + n].all():
            r0, c0, box = _box_of(mask, z)
            lab, _ = label8(box)
            lut = np.concatenate([[0], keep2[off : off + n]]).astype(np.uint8)
            _set_box(mask, z, r0, c0, lut[lab])

    def measure(c: int) -> Component:
        cz, cy, cx = (float(sums[a][c] / sizes[c]) for a in range(3))
        world = affine_lps @ np.array([cx, cy, cz, 1.0])
        return Component(
            id=0,
            voxels=int(sizes[c]),
            volume_ml=float(sizes[c]) * voxel_mm3 / 1000.0,
            slices=(int(zmin[c]), int(zmax[c])),
            centroid_voxel=(cz, cy, cx),
            centroid_lps_mm=(float(world[0]), float(world[1]), float(world[2])),
            max_probability=float(pmax[c]) if np.isfinite(pmax[c]) else None,
        )

    comps = sorted((measure(int(c)) for c in np.flatnonzero(keep)), key=lambda c: -c.volume_ml)
    small = sorted((measure(int(c)) for c in np.flatnonzero(~keep)), key=lambda c: -c.volume_ml)
    for group in (comps, small):
        for j, found in enumerate(group, 1):
            found.id = j
    return mask, comps, small

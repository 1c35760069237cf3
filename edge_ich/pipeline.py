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

from edge_ich.backends.base import Backend
from edge_ich.card import ModelCard
from edge_ich.preprocess import context_indices, prepare_slice, resize_back_above
from edge_ich.volume import SliceSource

STAGES = ("read", "preprocess", "h2d", "compute", "d2h", "postprocess", "write")


@dataclass
class StageTimes:
    """Seconds per slice for each stage; batched stages are split evenly over their slices."""

    per_slice: dict[str, list[float]] = field(default_factory=lambda: {s: [] for s in STAGES})
    wall_s: float = 0.0
    first_infer_s: float | None = None
    last_read_at: float | None = None  # perf_counter() when the last slice had been read

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

    mask: np.ndarray  # uint8 [Z, Y, X], thresholded probability (before component filtering)
    slice_prob: np.ndarray  # float32 [Z], max probability per slice
    timings: StageTimes


_DONE = object()


def probability(raw: np.ndarray, card: ModelCard) -> np.ndarray:
    """The network's raw output [N, H, W] -> probability, per the card's output kind."""
    if card.output_kind == "probability":
        return raw.astype(np.float32, copy=False)
    return (1.0 / (1.0 + np.exp(-np.clip(raw, -60.0, 60.0)))).astype(np.float32)


def native_mask(prob: np.ndarray, card: ModelCard, shape: tuple[int, int]) -> np.ndarray:
    """One model-grid probability [H, W] -> thresholded uint8 mask on the native grid [rows, cols]."""
    return resize_back_above(prob, shape, card.threshold).view(np.uint8)


def _reader(source: SliceSource, card: ModelCard, q: "queue.Queue[Any]", timings: StageTimes, stop: threading.Event) -> None:
    """Decode and preprocess slices in order into the queue; pass an exception on if one happens."""
    try:
        for i in range(source.geometry.shape[0]):
            if stop.is_set():
                return
            t0 = time.perf_counter()
            hu = source.read_hu(i)
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
    mask = np.zeros((n, rows, cols), dtype=np.uint8)
    slice_prob = np.zeros(n, dtype=np.float32)
    timings = StageTimes()
    q: queue.Queue[Any] = queue.Queue(maxsize=max(queue_depth, 2 * k + 2))
    stop = threading.Event()
    t_start = time.perf_counter()
    reader = threading.Thread(target=_reader, args=(source, card, q, timings, stop), name="edge-ich-reader", daemon=True)
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
    return Segmentation(mask=mask, slice_prob=slice_prob, timings=timings)


@dataclass
class Component:
    """One connected hemorrhage region after size filtering."""

    id: int
    voxels: int
    volume_ml: float
    slices: tuple[int, int]
    centroid_voxel: tuple[float, float, float]  # (slice, row, col)
    centroid_lps_mm: tuple[float, float, float]


def _components(coords: np.ndarray, shape: tuple[int, int, int]) -> tuple[np.ndarray, int]:
    """26-connected component label of each positive voxel (coords [P, 3] in C order), and their count.

    Works on the positive voxels alone (a sparse graph of their neighbour pairs), so memory
    follows the lesion size, not the series length.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    n = coords.shape[0]
    dims = np.asarray(shape, dtype=np.int64)
    lin = np.ravel_multi_index(coords.T, shape)  # sorted, since coords come from np.nonzero
    src: list[np.ndarray] = []
    dst: list[np.ndarray] = []
    # the 13 "forward" neighbour offsets cover every 26-connected pair once
    for dz in (0, 1):
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                if (dz, dy, dx) <= (0, 0, 0):
                    continue
                nb = coords + np.array([dz, dy, dx])
                ok = np.all((nb >= 0) & (nb < dims), axis=1)
                nb_lin = np.ravel_multi_index(nb[ok].T, shape)
                pos = np.searchsorted(lin, nb_lin)
                pos[pos == n] = n - 1
                hit = lin[pos] == nb_lin
                src.append(np.flatnonzero(ok)[hit])
                dst.append(pos[hit])
    rows, cols = np.concatenate(src), np.concatenate(dst)
    graph = coo_matrix((np.ones(rows.size, dtype=np.int8), (rows, cols)), shape=(n, n))
    count, labels = connected_components(graph, directed=False)
    return labels, int(count)


def postprocess(mask: np.ndarray, spacing: tuple[float, float, float], affine_lps: np.ndarray, min_component_mm3: float) -> tuple[np.ndarray, list[Component]]:
    """Label 3D components (26-connected), drop those under `min_component_mm3`, measure the rest.

    The mask is filtered IN PLACE and returned. Labelling works on the positive voxels only, so
    nothing volume-sized is allocated: memory stays at one byte per voxel (the mask itself)
    whatever the series length.
    """
    voxel_mm3 = float(np.prod(spacing))
    comps: list[Component] = []
    coords = np.argwhere(mask)
    if coords.shape[0] == 0:
        return mask, comps
    labels, count = _components(coords, mask.shape)
    sizes = np.bincount(labels, minlength=count)
    keep = sizes * voxel_mm3 >= min_component_mm3
    drop = ~keep[labels]
    mask[tuple(coords[drop].T)] = 0
    sums = [np.bincount(labels, weights=coords[:, a], minlength=count) for a in range(3)]
    zmin = np.full(count, mask.shape[0], dtype=np.int64)
    zmax = np.full(count, -1, dtype=np.int64)
    np.minimum.at(zmin, labels, coords[:, 0])
    np.maximum.at(zmax, labels, coords[:, 0])
    for lab in np.flatnonzero(keep):
        cz, cy, cx = (float(sums[a][lab] / sizes[lab]) for a in range(3))
        world = affine_lps @ np.array([cx, cy, cz, 1.0])
        comps.append(
            Component(
                id=0,
                voxels=int(sizes[lab]),
                volume_ml=float(sizes[lab]) * voxel_mm3 / 1000.0,
                slices=(int(zmin[lab]), int(zmax[lab])),
                centroid_voxel=(cz, cy, cx),
                centroid_lps_mm=(float(world[0]), float(world[1]), float(world[2])),
            )
        )
    comps.sort(key=lambda c: -c.volume_ml)
    for j, c in enumerate(comps, 1):
        c.id = j
    return mask, comps

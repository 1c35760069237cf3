"""Per-series incremental inference for `edge-ich serve`: slices are inferred as they arrive.

Each series keeps its slices sorted by position along the slice normal. A slice is inferred
as soon as its context neighbours (k on each side, k = the card's context) are present and
look adjacent (gap near the series' slice spacing). The neighbours it was inferred with are
remembered; at completion the final sorted order (from the series reader) decides, and only
slices whose neighbour set changed, the clamped end slices and slices never inferred are run
again. The arithmetic per slice is the pipeline's (same preprocessing, sigmoid, threshold,
resize back), so the result equals `edge-ich run` on the same files.
"""

from __future__ import annotations

import bisect
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edge_ich.analysis.masks import SliceMask
from edge_ich.backends.base import Backend
from edge_ich.pipeline import STAGES, Segmentation, StageTimes, native_mask, probability
from edge_ich.preprocess import context_indices, prepare_slice

#: Neighbours count as adjacent when their gap is at most this times the expected spacing.
ADJACENT_FACTOR = 1.5


@dataclass
class SliceRec:
    """One received slice: where it lies, its prepared input, and its result once inferred."""

    sop_uid: str
    path: Path
    position: float
    shape: tuple[int, int]
    prepared: np.ndarray | None = None  # [n_windows, H, W] at the model size
    mask: np.ndarray | None = None  # uint8 [rows, cols], thresholded probability on the native grid
    max_prob: float = 0.0
    prob: np.ndarray | None = None  # float16 [h, w], probability on the model grid
    ctx_used: tuple[str, ...] | None = None  # SOP UIDs of the neighbours it was inferred with
    seq: int = 0  # arrival order across all series (oldest ready slice is inferred first)
    header: tuple[Any, Any, str] | None = None  # `discover.read_header` of the spooled file, read on arrival


@dataclass
class SeriesState:
    """Everything known about one series while it is being received."""

    uid: str
    first_arrival: float  # perf_counter
    last_arrival: float
    slices: dict[str, SliceRec] = field(default_factory=dict)
    order: list[tuple[float, str]] = field(default_factory=list)  # (position, sop) sorted
    normal: np.ndarray | None = None
    expected_spacing: float | None = None
    open_assocs: set[int] = field(default_factory=set)
    assocs_seen: set[int] = field(default_factory=set)  # every association (or pseudo one) that sent to it
    released: set[int] = field(default_factory=set)  # network associations that ended by A-RELEASE
    ended_at: float | None = None  # perf_counter when its last open association ended
    duplicates: int = 0
    streamed: int = 0  # inferences done while receiving
    times: dict[str, list[float]] = field(default_factory=lambda: {s: [] for s in STAGES})
    first_infer_s: float | None = None
    finishing: bool = False  # a completion worker holds it (the inference thread keeps off)
    staged: Any = None  # outputs prepared after the last association ended, published once quiet

    def signature(self) -> tuple[int, float]:
        """Changes whenever an instance arrives: a staged answer is valid only for the same signature."""
        return len(self.slices), self.last_arrival

    def complete_on_release(self) -> bool:
        """Complete without waiting for the quiet period: every instance came over one network
        association, and that association was released (not aborted, not a watch-folder poll or a
        restart's reload, whose keys are negative). A later arrival answers the series again."""
        if self.open_assocs or len(self.assocs_seen) != 1:
            return False
        (key,) = self.assocs_seen
        return key >= 0 and key in self.released

    def add(self, rec: SliceRec) -> None:
        if rec.sop_uid in self.slices:
            self.duplicates += 1
            return
        self.slices[rec.sop_uid] = rec
        bisect.insort(self.order, (rec.position, rec.sop_uid))

    def _expected_gap(self) -> float | None:
        """The smallest slice gap seen so far; the header's spacing until two slices are known.

        The header is not trusted once gaps are seen: SliceThickness under the real spacing (gapped
        series) would otherwise make every neighbour look missing.
        """
        pos = [p for p, _ in self.order]
        gaps = [float(g) for g in np.diff(pos) if g > 1e-3] if len(pos) > 1 else []
        return min(gaps) if gaps else self.expected_spacing

    def ready(self, k: int) -> list[tuple[SliceRec, tuple[SliceRec, ...]]]:
        """Interior slices whose neighbours are present and adjacent and that lack a current result."""
        out = []
        n = len(self.order)
        gap = self._expected_gap()
        limit = ADJACENT_FACTOR * gap + 1e-3 if gap else float("inf")
        for i in range(k, n - k):
            rec = self.slices[self.order[i][1]]
            ctx = tuple(self.slices[self.order[j][1]] for j in range(i - k, i + k + 1))
            key = tuple(r.sop_uid for r in ctx)
            if rec.ctx_used == key or any(r.prepared is None for r in ctx):
                continue
            if all(abs(ctx[j + 1].position - ctx[j].position) <= limit for j in range(len(ctx) - 1)):
                out.append((rec, ctx))
        return out


def slice_position(ds: Any) -> tuple[float, np.ndarray | None]:
    """Position along the slice normal (mm) and the normal, from the image plane attributes."""
    try:
        iop = np.asarray([float(v) for v in ds.ImageOrientationPatient], dtype=float)
        ipp = np.asarray([float(v) for v in ds.ImagePositionPatient], dtype=float)
        n = np.cross(iop[:3], iop[3:])
        n /= np.linalg.norm(n)
        return float(ipp @ n), n
    except (AttributeError, TypeError, ValueError, ZeroDivisionError):
        return float(ds.get("InstanceNumber", 0) or 0), None


def expected_spacing(ds: Any) -> float | None:
    for key in ("SpacingBetweenSlices", "SliceThickness"):
        try:
            v = float(ds.get(key) or 0)
        except (TypeError, ValueError):
            continue
        if v > 0:
            return v
    return None


class StreamingInferer:
    """Runs the backend on ready slices of every series, in batches, one call at a time."""

    def __init__(self, backend: Backend, batch: int = 4) -> None:
        self.backend = backend
        self.card = backend.card
        self.batch = max(1, batch)
        self.lock = threading.Lock()  # the backend is used by one thread at a time

    def prepare(self, hu: np.ndarray) -> np.ndarray:
        return prepare_slice(hu, self.card.windows, self.card.input_size)

    def infer(
        self, stacks: list[np.ndarray], shapes: list[tuple[int, int]]
    ) -> tuple[list[np.ndarray], list[float], list[np.ndarray], float]:
        """Infer stacked inputs; return native-grid masks, max probabilities, model-grid probabilities
        (float16) and compute seconds."""
        masks: list[np.ndarray] = []
        maxes: list[float] = []
        probs: list[np.ndarray] = []
        compute = 0.0
        for s in range(0, len(stacks), self.batch):
            x = np.stack(stacks[s : s + self.batch])
            with self.lock:
                out = self.backend.infer(x)
                compute += self.backend.last_times.total
            prob = probability(out[:, 0], self.card)
            for j in range(prob.shape[0]):
                masks.append(native_mask(prob[j], self.card, shapes[s + j]))
                maxes.append(float(prob[j].max()))
                probs.append(prob[j].astype(np.float16))
        return masks, maxes, probs, compute

    def run_ready(self, work: list[tuple[SeriesState, SliceRec, tuple[SliceRec, ...]]]) -> int:
        """Infer a batch of ready slices (from any series) and store their results."""
        if not work:
            return 0
        stacks = [np.concatenate([r.prepared for r in ctx], axis=0) for _, _, ctx in work]
        t0 = time.perf_counter()
        masks, maxes, probs, compute = self.infer(stacks, [rec.shape for _, rec, _ in work])
        post = time.perf_counter() - t0 - compute
        for (state, rec, ctx), m, p, pr in zip(work, masks, maxes, probs):
            rec.mask, rec.max_prob, rec.prob, rec.ctx_used = m, p, pr, tuple(r.sop_uid for r in ctx)
            state.streamed += 1
            state.times["compute"].append(compute / len(work))
            state.times["postprocess"].append(post / len(work))
            if state.first_infer_s is None:
                state.first_infer_s = compute / max(1, -(-len(work) // self.batch))
        return len(work)

    def complete(self, state: SeriesState | None, source: Any, sops: list[str]) -> tuple[Segmentation, int]:
        """The whole series' Segmentation in the reader's final order; returns it and the slices re-run."""
        n, rows, cols = source.geometry.shape
        k = self.card.context
        recs = dict(state.slices) if state is not None else {}
        mask = SliceMask((n, rows, cols))
        slice_prob = np.zeros(n, dtype=np.float32)
        prob = np.zeros((n, *self.card.input_size), dtype=np.float16)
        prepared: dict[int, np.ndarray] = {}
        timings = StageTimes()

        def get(j: int) -> np.ndarray:
            if j not in prepared:
                rec = recs.get(sops[j])
                if rec is not None and rec.prepared is not None:
                    prepared[j] = rec.prepared
                else:
                    t0 = time.perf_counter()
                    hu = source.read_hu(j)
                    t1 = time.perf_counter()
                    prepared[j] = self.prepare(hu)
                    timings.add("read", t1 - t0)
                    timings.add("preprocess", time.perf_counter() - t1)
            return prepared[j]

        todo: list[int] = []
        for i in range(n):
            idx = context_indices(i, n, k)
            key = tuple(sops[j] for j in idx)
            rec = recs.get(sops[i])
            if (
                rec is not None
                and rec.mask is not None
                and rec.prob is not None
                and rec.ctx_used == key
                and rec.mask.shape == (rows, cols)
            ):
                mask[i], slice_prob[i], prob[i] = rec.mask, rec.max_prob, rec.prob
            else:
                todo.append(i)
        if todo:
            stacks = [np.concatenate([get(j) for j in context_indices(i, n, k)], axis=0) for i in todo]
            t0 = time.perf_counter()
            masks, maxes, probs, compute = self.infer(stacks, [(rows, cols)] * len(todo))
            timings.add("compute", compute, len(todo))
            timings.add("postprocess", time.perf_counter() - t0 - compute, len(todo))
            for i, m, p, pr in zip(todo, masks, maxes, probs):
                mask[i], slice_prob[i], prob[i] = m, p, pr
        if state is not None:
            for stage in ("read", "preprocess", "compute", "postprocess"):
                timings.per_slice[stage].extend(state.times[stage])
            timings.first_infer_s = state.first_infer_s
            timings.last_read_at = state.last_arrival
            timings.wall_s = time.perf_counter() - state.first_arrival
        return Segmentation(mask=mask, slice_prob=slice_prob, timings=timings, prob=prob), len(todo)

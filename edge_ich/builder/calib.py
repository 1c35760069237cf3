"""Calibration and held-out slices, read with the runtime's own reader and preprocessing.

Slices come from series (a DICOM folder read by `edge_ich.sources.dicom.source.open_series`, or any
SliceSource such as an in-memory phantom). Each slice is called bleed or non-bleed by the
series' truth masks when present (phantom `truth.npz`), else by the FP32 model itself; the
calibration set and a disjoint held-out set are drawn stratified over both strata.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edge_ich.card import ModelCard
from edge_ich.errors import InputError
from edge_ich.preprocess import prepare_slice, stack_context
from edge_ich.sources.volume import SliceSource

#: Truth masks that travel with a phantom series (labels uint8 [Z, Y, X], ascending slice order).
TRUTH_FILE = "truth.npz"


@dataclass
class LabelledSeries:
    """One series and, where known, its voxel truth in the series' sorted slice order."""

    source: SliceSource
    name: str
    labels: np.ndarray | None = None


@dataclass
class SliceSet:
    """Prepared network inputs [N, C, H, W] with their origin and optional native truth masks."""

    inputs: np.ndarray
    keys: list[tuple[str, int]]
    positive: np.ndarray  # bool [N]: bleed slice (by truth, or by the FP32 model)
    truth: list[np.ndarray] | None = None  # native-grid bool masks, one per slice
    native_shapes: list[tuple[int, int]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.keys)

    def digest(self) -> str:
        """sha256 over the slice keys and the prepared inputs: names the calibration set."""
        h = hashlib.sha256()
        for name, i in self.keys:
            h.update(f"{name}:{i};".encode())
        h.update(np.ascontiguousarray(self.inputs, dtype=np.float32).tobytes())
        return h.hexdigest()


@dataclass
class CalibSplit:
    """Calibration slices and the disjoint held-out slices the gate scores on."""

    calib: SliceSet
    heldout: SliceSet
    truth_source: str  # "truth" or "fp32"
    notes: list[str] = field(default_factory=list)


def _truth_for(folder: Path, n_slices: int, shape: tuple[int, int]) -> np.ndarray | None:
    """`truth.npz` labels in the series folder or its parent (phantom layout), if they fit the series."""
    for cand in (folder / TRUTH_FILE, folder.parent / TRUTH_FILE):
        if cand.is_file():
            with np.load(cand) as z:
                labels = np.asarray(z["labels"]) if "labels" in z else None
            return labels if labels is not None and labels.shape == (n_slices, *shape) else None
    return None


def read_folder(root: Path) -> tuple[list[LabelledSeries], list[str]]:
    """Every CT series under `root`, read by the runtime's DICOM reader; truth.npz attached where it fits."""
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"calibration folder not found: {root}")
    try:
        from edge_ich.sources.dicom.discover import discover
        from edge_ich.sources.dicom.source import DicomSeries
    except ImportError:
        from edge_ich.errors import MissingDependency

        raise MissingDependency(
            "the DICOM series reader (edge_ich.sources.dicom) is not available in this installation"
        ) from None
    result = discover(root)
    series: list[LabelledSeries] = []
    notes = (
        [f"{len(result.skipped)} files under the calibration folder are not CT images (skipped)"]
        if result.skipped
        else []
    )
    for k, cand in enumerate(result.candidates):
        try:
            src = DicomSeries(cand, root=root)
        except InputError as exc:
            notes.append(f"series {k} skipped: {exc}")
            continue
        folder = Path(os.path.commonpath([str(Path(f).parent) for f in cand.files]))
        z, y, x = src.geometry.shape
        labels = _truth_for(folder, z, (y, x))
        rel = folder.relative_to(root) if folder.is_relative_to(root) else Path(folder.name)
        series.append(LabelledSeries(src, f"{rel}#{k}", labels))
    if not series:
        raise InputError(f"no readable CT series under the calibration folder {root}")
    series.sort(key=lambda s: s.name)
    return series, notes


class _Prepared:
    """Per-series cache of prepared slices so context neighbours are read once."""

    def __init__(self, s: LabelledSeries, card: ModelCard) -> None:
        self.s, self.card, self.cache = s, card, {}  # type: ignore[var-annotated]
        self.n = s.source.geometry.shape[0]

    def get(self, i: int) -> np.ndarray:
        if i not in self.cache:
            self.cache[i] = prepare_slice(self.s.source.read_hu(i), self.card.windows, self.card.input_size)
        return self.cache[i]

    def input(self, i: int) -> np.ndarray:
        """Network input of slice i; slices below i - context are dropped (callers go in ascending order)."""
        for j in [j for j in self.cache if j < i - self.card.context]:
            del self.cache[j]
        return stack_context(self.get, i, self.n, self.card.context)


def _stack(prepared: list[_Prepared], keys: list[tuple[int, int]]) -> np.ndarray:
    """Inputs for (series, slice) keys in ascending order, keeping only a context window of slices in memory."""
    out = None
    last = -1
    for n, (k, i) in enumerate(keys):
        if k != last and last >= 0:
            prepared[last].cache.clear()
        last = k
        x = prepared[k].input(i)
        if out is None:
            out = np.empty((len(keys), *x.shape), np.float32)
        out[n] = x
    if last >= 0:
        prepared[last].cache.clear()
    assert out is not None
    return out


def _stratified(
    rng: np.random.Generator, pos: list[int], neg: list[int], n_calib: int, n_held: int
) -> tuple[list[int], list[int], list[str]]:
    """Split candidate indices into calibration and held-out, half bleed/half non-bleed where possible."""
    notes = []
    total = len(pos) + len(neg)
    if total < n_calib + n_held:
        frac = n_held / (n_calib + n_held)
        n_held = max(1, int(round(total * frac)))
        n_calib = total - n_held
        notes.append(f"only {total} slices available: calibrating on {n_calib}, holding out {n_held}")
    pos, neg = list(rng.permutation(pos)), list(rng.permutation(neg))
    # Held-out first, each stratum in proportion to what exists (so a short folder keeps bleed in both sets).
    frac = n_held / (n_calib + n_held)
    h_pos = min(len(pos), (n_held + 1) // 2, max(1, round(len(pos) * frac))) if pos else 0
    h_neg = min(len(neg), n_held - h_pos)
    h_pos = min(len(pos), n_held - h_neg)
    held, pos, neg = pos[:h_pos] + neg[:h_neg], pos[h_pos:], neg[h_neg:]
    c_pos = min(len(pos), (n_calib + 1) // 2)
    c_neg = min(len(neg), n_calib - c_pos)
    c_pos = min(len(pos), n_calib - c_neg)
    calib = pos[:c_pos] + neg[:c_neg]
    return [int(i) for i in calib], [int(i) for i in held], notes


def split_slices(
    series: Sequence[LabelledSeries],
    card: ModelCard,
    n_calib: int = 500,
    n_heldout: int | None = None,
    seed: int = 0,
    fp32_calls: Callable[[np.ndarray], np.ndarray] | None = None,
) -> CalibSplit:
    """Draw stratified calibration and disjoint held-out slices from `series`.

    Bleed/non-bleed comes from truth where every series has it, else from `fp32_calls`
    (prepared batch -> bool per slice), which is then required.
    """
    if not series:
        raise InputError("no series to calibrate on")
    n_heldout = n_heldout if n_heldout is not None else max(32, n_calib // 2)
    rng = np.random.default_rng(seed)
    prepared = [_Prepared(s, card) for s in series]
    keys = [(k, i) for k, p in enumerate(prepared) for i in range(p.n)]
    use_truth = all(s.labels is not None for s in series)
    notes: list[str] = []
    if use_truth:
        positive = np.array([bool(series[k].labels[i].any()) for k, i in keys])  # type: ignore[index]
    else:
        if fp32_calls is None:
            raise InputError("calibration series carry no truth masks and no FP32 model was given to call bleed slices")
        # Score a bounded random pool with the FP32 model rather than every slice of a large folder.
        pool_n = min(len(keys), 3 * (n_calib + n_heldout))
        pool = sorted(rng.choice(len(keys), size=pool_n, replace=False).tolist())
        keys = [keys[j] for j in pool]
        positive = np.zeros(len(keys), bool)
        for a in range(0, len(keys), 16):
            chunk = keys[a : a + 16]
            positive[a : a + len(chunk)] = fp32_calls(_stack(prepared, chunk))
        notes.append("bleed/non-bleed strata from the FP32 model's own calls (no truth masks)")
    pos = [j for j in range(len(keys)) if positive[j]]
    neg = [j for j in range(len(keys)) if not positive[j]]
    calib_idx, held_idx, more = _stratified(rng, pos, neg, n_calib, n_heldout)
    notes.extend(more)
    if not calib_idx or not held_idx:
        raise InputError(
            f"too few slices under the calibration folder ({len(keys)}) for calibration and a held-out set"
        )

    def gather(idx: list[int], with_truth: bool) -> SliceSet:
        idx = sorted(idx, key=lambda j: keys[j])
        ks = [keys[j] for j in idx]
        inputs = _stack(prepared, ks)
        shapes = [tuple(series[k].source.geometry.shape[1:]) for k, _ in ks]
        truth = [np.asarray(series[k].labels[i] > 0) for k, i in ks] if with_truth else None  # type: ignore[index]
        return SliceSet(inputs, [(series[k].name, i) for k, i in ks], positive[idx], truth, shapes)  # type: ignore[arg-type]

    return CalibSplit(gather(calib_idx, False), gather(held_idx, use_truth), "truth" if use_truth else "fp32", notes)

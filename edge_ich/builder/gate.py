"""The accuracy gate: a precision ONNX must stay within a stated Dice and sensitivity drop of FP32.

Measured on the CPU with ONNX Runtime on held-out slices (a Q/DQ ONNX runs there too):
Dice and sensitivity against truth masks where they exist (phantoms), and always against the
FP32 model's own masks. The drop is FP32's score minus the candidate's against each reference (truth when present, and
the FP32 masks, against which FP32 scores 1); the gate judges the truth drop where truth exists,
else the drop against FP32. Dice is pooled over all held-out pixels (one Dice, not a mean).
"""

from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edge_ich.builder.calib import SliceSet
from edge_ich.card import ModelCard
from edge_ich.errors import InputError, ModelError
from edge_ich.preprocess import resize_back


class GateRefused(ModelError):
    """The precision model lost too much accuracy against FP32 (or could not be measured); nothing was written."""


@dataclass
class Scores:
    """One model on the held-out slices."""

    dice_vs_fp32: float
    sens_vs_fp32: float  # pixel sensitivity, FP32 mask as reference
    slice_sens_vs_fp32: float  # FP32-positive slices the model also calls positive
    dice_vs_truth: float | None = None
    sens_vs_truth: float | None = None
    latency_ms_per_slice: float | None = None  # ONNX Runtime CPU, median over batches
    size_bytes: int | None = None


@dataclass
class GateReport:
    """Both models' scores, the drops and the verdict."""

    precision: str
    n_heldout: int
    n_bleed_slices: int
    reference: str  # "truth" or "fp32"
    fp32: Scores
    candidate: Scores | None
    dice_drop: float | None
    sens_drop: float | None
    max_dice_drop: float
    max_sens_drop: float
    measured: bool
    note: str = ""
    threads: int | None = None
    drops: dict[str, float] = field(default_factory=dict)  # per reference; dice_drop/sens_drop are the worst

    @property
    def passed(self) -> bool:
        if not self.measured:
            return True
        assert self.dice_drop is not None and self.sens_drop is not None
        return self.dice_drop <= self.max_dice_drop and self.sens_drop <= self.max_sens_drop

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["passed"] = self.passed
        return d

    def lines(self) -> list[str]:
        """Human summary: FP32 vs candidate Dice (truth, FP32), sensitivity and CPU latency."""

        def f(v: float | None, nd: int = 3) -> str:
            return "n/a" if v is None else f"{v:.{nd}f}"

        out = [f"gate: {self.n_heldout} held-out slices ({self.n_bleed_slices} bleed by {self.reference})"]
        rows = [("fp32", self.fp32)] + ([(self.precision, self.candidate)] if self.candidate else [])
        for name, s in rows:
            out.append(
                f"  {name:5s} Dice vs truth {f(s.dice_vs_truth)}  Dice vs FP32 {f(s.dice_vs_fp32)}  "
                f"sens vs FP32 {f(s.sens_vs_fp32)}  ORT CPU {f(s.latency_ms_per_slice, 2)} ms/slice"
            )
        if self.measured:
            out.append(f"  {self._drop_text()}: {'PASS' if self.passed else 'REFUSED'}")
        else:
            out.append(f"  {self.precision}: not measured ({self.note})")
        return out

    def _drop_text(self) -> str:
        def part(kind: str) -> str:
            return ", ".join(
                f"vs {ref} {self.drops[f'{kind}_vs_{ref.lower()}']:.4f}"
                for ref in ("truth", "FP32")
                if f"{kind}_vs_{ref.lower()}" in self.drops
            )

        judged = "truth" if self.reference == "truth" else "FP32"
        return (
            f"Dice drop vs {judged} {self.dice_drop:.4f} (max {self.max_dice_drop}; {part('dice')}), sensitivity drop "
            f"vs {judged} {self.sens_drop:.4f} (max {self.max_sens_drop}; {part('sens')})"
        )

    def refusal(self) -> str:
        """The one line a refused build ends with."""
        c = self.candidate
        assert c is not None
        truth = (
            f"Dice vs truth FP32 {self.fp32.dice_vs_truth:.4f} -> {c.dice_vs_truth:.4f}, "
            if c.dice_vs_truth is not None and self.fp32.dice_vs_truth is not None
            else ""
        )
        return (
            f"{self.precision} refused by the accuracy gate on {self.n_heldout} held-out slices: {self._drop_text()}; "
            f"{truth}Dice vs FP32 {c.dice_vs_fp32:.4f}; nothing written (calibrate on representative slices or build fp16)"
        )


def _probabilities(logits: np.ndarray, card: ModelCard) -> np.ndarray:
    x = logits[:, 0].astype(np.float32)
    return x if card.output_kind == "probability" else 1.0 / (1.0 + np.exp(-np.clip(x, -60.0, 60.0)))


def run_model(
    path: Path, card: ModelCard, inputs: np.ndarray, threads: int | None = None, batch: int = 8
) -> tuple[np.ndarray, float]:
    """Probabilities [N, H, W] from ONNX Runtime on the CPU, and median ms per slice (first batch is warm-up)."""
    from edge_ich.backends.onnxrt import OnnxRuntimeBackend

    be = OnnxRuntimeBackend(Path(path), card, threads=threads)
    try:
        be.infer(inputs[:batch])  # warm-up, not timed
        outs, times = [], []
        for a in range(0, len(inputs), batch):
            chunk = inputs[a : a + batch]
            t0 = time.perf_counter()
            outs.append(be.infer(chunk))
            times.append((time.perf_counter() - t0) * 1000.0 / len(chunk))
    finally:
        be.close()
    return _probabilities(np.concatenate(outs), card), float(statistics.median(times))


def _dice_sens(pred: list[np.ndarray], ref: list[np.ndarray]) -> tuple[float, float]:
    inter = sum(int(np.logical_and(p, r).sum()) for p, r in zip(pred, ref))
    sp, sr = sum(int(p.sum()) for p in pred), sum(int(r.sum()) for r in ref)
    dice = 1.0 if sp + sr == 0 else 2.0 * inter / (sp + sr)
    sens = 1.0 if sr == 0 else inter / sr
    return dice, sens


def _native(prob: np.ndarray, shapes: list[tuple[int, int]], threshold: float) -> list[np.ndarray]:
    return [resize_back(p, s) >= threshold for p, s in zip(prob, shapes)]


def score(prob: np.ndarray, fp32_mask: np.ndarray, held: SliceSet, card: ModelCard) -> Scores:
    """Dice/sensitivity of probabilities against the FP32 masks (model grid) and truth (native grid)."""
    mask = prob >= card.threshold
    d32, s32 = _dice_sens(list(mask), list(fp32_mask))
    ref_pos = fp32_mask.reshape(len(mask), -1).any(axis=1)
    hit = mask.reshape(len(mask), -1).any(axis=1)
    slice_sens = float((hit & ref_pos).sum() / ref_pos.sum()) if ref_pos.any() else 1.0
    s = Scores(d32, s32, slice_sens)
    if held.truth is not None:
        s.dice_vs_truth, s.sens_vs_truth = _dice_sens(_native(prob, held.native_shapes, card.threshold), held.truth)
    return s


def run_gate(
    fp32_path: Path,
    cand_path: Path | None,
    card: ModelCard,
    held: SliceSet,
    precision: str,
    max_dice_drop: float = 0.01,
    max_sens_drop: float = 0.02,
    threads: int | None = None,
    measure_note: str = "",
) -> GateReport:
    """Score FP32 and the candidate on `held`; the candidate is skipped (not measured) when `cand_path` is None."""
    if len(held) == 0:
        raise InputError("the gate has no held-out slices")
    p32, t32 = run_model(fp32_path, card, held.inputs, threads)
    m32 = p32 >= card.threshold
    fp32 = score(p32, m32, held, card)
    fp32.latency_ms_per_slice, fp32.size_bytes = t32, Path(fp32_path).stat().st_size
    reference = "truth" if held.truth is not None else "fp32"
    n_bleed = (
        int(sum(t.any() for t in held.truth))
        if held.truth is not None
        else int(m32.reshape(len(m32), -1).any(axis=1).sum())
    )
    report = GateReport(
        precision,
        len(held),
        n_bleed,
        reference,
        fp32,
        None,
        None,
        None,
        max_dice_drop,
        max_sens_drop,
        measured=False,
        note=measure_note,
        threads=threads,
    )
    if cand_path is None:
        return report
    pc, tc = run_model(cand_path, card, held.inputs, threads)
    cand = score(pc, m32, held, card)
    cand.latency_ms_per_slice, cand.size_bytes = tc, Path(cand_path).stat().st_size
    report.candidate, report.measured = cand, True
    _set_drops(report)
    return report


def _set_drops(report: GateReport) -> None:
    """Drop = FP32's score minus the candidate's, against truth (when present) and against FP32's own masks
    (where FP32 scores 1). The gate judges the truth drop where truth exists (is the model worse?), else
    the drop against FP32 (is it different?); both are reported."""
    fp32, cand = report.fp32, report.candidate
    assert cand is not None
    d = {"dice_vs_fp32": 1.0 - cand.dice_vs_fp32, "sens_vs_fp32": 1.0 - cand.sens_vs_fp32}
    if fp32.dice_vs_truth is not None and cand.dice_vs_truth is not None:
        d["dice_vs_truth"] = fp32.dice_vs_truth - cand.dice_vs_truth
        d["sens_vs_truth"] = (fp32.sens_vs_truth or 0.0) - (cand.sens_vs_truth or 0.0)
    report.drops = d
    ref = "truth" if "dice_vs_truth" in d else "fp32"
    report.dice_drop, report.sens_drop = d[f"dice_vs_{ref}"], d[f"sens_vs_{ref}"]


def enforce(report: GateReport) -> None:
    """Raise GateRefused when the gate could not judge (no bleed held out) or the drop is too large."""
    if report.measured and report.n_bleed_slices == 0:
        raise GateRefused(
            f"{report.precision} refused: none of the {report.n_heldout} held-out slices holds a bleed "
            f"(by {report.reference}), so the gate cannot measure accuracy; calibrate on representative "
            "series with bleed and non-bleed slices; nothing written"
        )
    if not report.passed:
        raise GateRefused(report.refusal())


def gate_engine(
    plan: Path,
    fp32_path: Path,
    card: ModelCard,
    plan_card: ModelCard,
    held: SliceSet,
    precision: str,
    max_dice_drop: float,
    max_sens_drop: float,
    lines: list[str],
) -> dict[str, Any]:
    """Gate the built TensorRT engine itself (GPU) against FP32 ONNX Runtime on the held-out slices."""
    from edge_ich.backends.tensorrt import TensorRTBackend

    p32, t32 = run_model(fp32_path, card, held.inputs)
    m32 = p32 >= card.threshold
    fp32 = score(p32, m32, held, card)
    fp32.latency_ms_per_slice = t32
    with TensorRTBackend(plan, plan_card) as be:
        outs = [be.infer(held.inputs[a : a + 8]) for a in range(0, len(held.inputs), 8)]
    cand = score(_probabilities(np.concatenate(outs), card), m32, held, card)
    reference = "truth" if held.truth is not None else "fp32"
    n_bleed = (
        int(sum(t.any() for t in held.truth))
        if held.truth is not None
        else int(m32.reshape(len(m32), -1).any(axis=1).sum())
    )
    report = GateReport(
        f"{precision} engine",
        len(held),
        n_bleed,
        reference,
        fp32,
        cand,
        None,
        None,
        max_dice_drop,
        max_sens_drop,
        measured=True,
        note="TensorRT engine on the GPU vs FP32 ONNX Runtime on the CPU",
    )
    _set_drops(report)
    lines.extend(report.lines())
    enforce(report)
    return report.to_dict()

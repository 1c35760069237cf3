"""`python -m training train`: data -> weakly (or fully) supervised segmenter -> ONNX + card.

Phantoms are split by seed into train / validation / test; a site's own data (through the
dataset adapters) is split by case order. The threshold is chosen on the validation cases,
the card's evaluation numbers come from the test cases (phantoms: against voxel truth), and
the exported model is run once through edge_ich's own ONNX Runtime backend before it is kept.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from edge_ich.errors import InputError
from training.evaluate import score_case, summarize, threshold_baseline_on
from training.export import export_onnx, write_card
from training.loops import init_distributed, log, resolve_device
from training.pipeline import (
    PipelineConfig,
    TrainResult,
    binarize,
    predict_probs,
    run_fully_supervised,
    run_weakly_supervised,
)
from training.volumes import PhantomSpec, Volume, dataset_volumes, phantom_volumes


@dataclass
class TrainOptions:
    """What `python -m training train` was asked to do."""

    data: str = "phantom"
    root: Path | None = None
    cases: int = 120
    val_cases: int = 12
    test_cases: int = 24
    seed: int = 0
    difficulty: str = "standard"
    slices: int | None = 24
    thickness: float | None = 5.0
    gen_size: int | None = None  # phantom generation size (default: the model's input size)
    supervision: str = "weak"
    work: Path = Path("runs/train")
    cache: Path = Path("runs/cache")
    out: Path | None = Path("engines/ich_segmenter.onnx")
    name: str = "ich_segmenter"
    workers: int = 1
    pipeline: PipelineConfig = field(default_factory=PipelineConfig)


def load_splits(o: TrainOptions) -> tuple[list[Volume], list[Volume], list[Volume]]:
    """Train / validation / test volumes on the model grid."""
    size = (o.pipeline.size, o.pipeline.size)
    if o.data == "phantom":
        gen = o.gen_size or o.pipeline.size

        def spec(start: int, count: int) -> PhantomSpec:
            return PhantomSpec(start, count, o.difficulty, o.slices, o.thickness, gen)

        base = o.seed * 100_000
        t0 = time.perf_counter()
        train = phantom_volumes(spec(base, o.cases), size, o.cache, o.workers)
        val = phantom_volumes(spec(base + 50_000, o.val_cases), size, o.cache, o.workers)
        test = phantom_volumes(spec(base + 80_000, o.test_cases), size, o.cache, o.workers)
        log(f"[data] {len(train)}/{len(val)}/{len(test)} phantoms ready in {time.perf_counter() - t0:.0f}s")
        return train, val, test
    if o.root is None:
        raise InputError(f"--root is required for --data {o.data}")
    vols = dataset_volumes(o.data, o.root, size)
    n_val = min(o.val_cases, max(0, len(vols) // 5))
    n_test = min(o.test_cases, max(0, (len(vols) - n_val) // 5))
    if len(vols) - n_val - n_test < 1:
        raise InputError(f"dataset has {len(vols)} usable cases: too few to train")
    return vols[n_val + n_test :], vols[:n_val], vols[n_val : n_val + n_test]


def evaluate_on(result: TrainResult, vols: list[Volume], cfg: PipelineConfig) -> dict[str, Any]:
    """Test-set numbers against voxel truth (where the volumes have it)."""
    have = [v for v in vols if v.truth is not None]
    if not have:
        return {}
    preds = binarize(predict_probs(result.segmenter, have, cfg), have, result.threshold, result.min_component_mm3)
    s = summarize([score_case(v.case_id, p, v.truth, v.spacing) for v, p in zip(have, preds)])  # type: ignore[arg-type]
    s.pop("per_case_dice", None)
    return s


def _round(d: Any) -> Any:
    if isinstance(d, float):
        return round(d, 4)
    if isinstance(d, dict):
        return {k: _round(v) for k, v in d.items()}
    if isinstance(d, list):
        return [_round(v) for v in d]
    return d


def check_with_runtime(path: Path, vol: Volume, cfg: PipelineConfig, model: torch.nn.Module) -> float:
    """Run the exported model through edge_ich's ONNX Runtime backend; max |diff| to torch."""
    from edge_ich.backends import open_backend
    from edge_ich.card import load_card

    card = load_card(path)
    batch = np.stack([vol.stack(z, cfg.context, cfg.windows) for z in range(min(4, vol.n))])
    with open_backend("onnxrt", path, card) as be:
        got = be.infer(batch)
    with torch.no_grad():
        want = model.cpu().eval()(torch.from_numpy(batch)).numpy()
    return float(np.abs(got - want).max())


def train_main(o: TrainOptions) -> dict[str, Any]:
    """Train, evaluate, export; return the summary that was also written to `work/summary.json`."""
    cfg = o.pipeline
    rank, world = init_distributed(resolve_device(cfg.device))
    cfg.device = resolve_device(cfg.device)
    if cfg.device == "cpu" and world > 1:
        torch.set_num_threads(max(1, torch.get_num_threads() // world))
    t0 = time.perf_counter()
    train, val, test = load_splits(o)
    work = Path(o.work)
    if o.supervision == "weak":
        result = run_weakly_supervised(train, val, cfg, work)
    elif o.supervision == "full":
        result = run_fully_supervised(train, val, cfg, work)
    else:
        raise InputError(f"--supervision must be weak or full, not {o.supervision!r}")
    summary: dict[str, Any] = {
        "training": result.summary,
        "world_size": world,
        "device": cfg.device,
        "config": cfg.to_dict(),
        "data": o.data,
    }
    if rank != 0:
        return summary
    evaluation = evaluate_on(result, test, cfg)
    if evaluation and o.data == "phantom":
        evaluation = {
            "test_set": f"{len(test)} held-out phantoms ({o.difficulty}), model grid {cfg.size}x{cfg.size}",
            "segmenter": evaluation,
        }
        try:
            evaluation["threshold_baseline"] = threshold_baseline_on(test, val, result.min_component_mm3)
        except ImportError:
            pass
    summary["evaluation"] = evaluation
    summary["wall_seconds_this_invocation"] = round(time.perf_counter() - t0, 1)  # resumed stages cost ~0 here
    if o.out is not None:
        ref = (test or val or train)[0]
        check = np.stack([ref.stack(z, cfg.context, cfg.windows) for z in range(min(4, ref.n))])
        diff = export_onnx(result.segmenter, Path(o.out), cfg.in_channels, (cfg.size, cfg.size), check)
        training = _round(
            {
                **result.summary,
                "data": o.data,
                "difficulty": o.difficulty if o.data == "phantom" else None,
                "config": cfg.to_dict(),
                "wall_seconds_this_invocation": summary["wall_seconds_this_invocation"],
                "device": cfg.device,
                "onnx_vs_torch_max_abs_diff": diff,
            }
        )
        write_card(
            result.segmenter,
            Path(o.out),
            o.name,
            (cfg.size, cfg.size),
            cfg.context,
            cfg.windows,
            result.threshold,
            result.min_component_mm3,
            training,
            _round(evaluation),
        )
        summary["runtime_check_max_abs_diff"] = check_with_runtime(Path(o.out), ref, cfg, result.segmenter)
        summary["model"] = str(o.out)
        log(
            f"[export] {o.out} written; ONNX vs torch {diff:.2e}; runtime backend vs torch {summary['runtime_check_max_abs_diff']:.2e}"
        )
    work.mkdir(parents=True, exist_ok=True)
    (work / "summary.json").write_text(json.dumps(_round(summary), indent=2, default=str) + "\n")
    return summary

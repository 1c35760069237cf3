"""The bundled model's accuracy on held-out phantoms, from the shipped ONNX file, with bootstrap CIs.

Runs the model through edge_ich's own ONNX Runtime backend on held-out phantoms (model grid, the
card's threshold and smallest component), scores it against voxel truth with the training
evaluation's conventions, and sets it beside the threshold baseline at the baseline's own operating
point (tuned on validation phantoms against their voxel truth). Bleeding volumes and empty volumes
are reported apart; 95% CIs by bootstrap over cases; the paired difference to the threshold with its
CI and a Wilcoxon p-value. Seeds are the training command's: test 80000.., validation 50000.. .

    python benchmarks/model_report.py [--model M] [--cases 120] [--val 40] [--difficulty standard]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import _common  # noqa: F401  (puts the repo root on sys.path)
import numpy as np
from _common import command_line, default_model, env_block, env_lines, write_report

from edge_ich.bench import envinfo
from edge_ich.card import load_card
from training.evaluate import remove_small, score_case, summarize, threshold_baseline_on, wilcoxon_p
from training.volumes import PhantomSpec, phantom_volumes


def bootstrap_ci(values: list[float], n: int = 2000, seed: int = 0) -> tuple[float, float]:
    """95% percentile interval of the mean over cases."""
    v = np.asarray(values, float)
    if v.size == 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = v[rng.integers(0, v.size, (n, v.size))].mean(axis=1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=None)
    ap.add_argument("--cases", type=int, default=120)
    ap.add_argument("--val", type=int, default=40)
    ap.add_argument("--difficulty", default="standard")
    ap.add_argument("--slices", type=int, default=32)
    ap.add_argument("--cache", type=Path, default=Path("runs/cache"))
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--name", default=None, help="report folder name (default model_<difficulty>)")
    a = ap.parse_args()
    from edge_ich.backends import open_backend

    model, model_note = (a.model, str(a.model)) if a.model else default_model()
    card = load_card(model)
    size = tuple(card.input_size)
    acct = envinfo.CpuAccount().start()
    t0 = time.perf_counter()

    def spec(start: int, n: int) -> PhantomSpec:
        return PhantomSpec(start, n, a.difficulty, a.slices, None, size[0])

    test = phantom_volumes(spec(80_000, a.cases), size, a.cache, a.workers)
    val = phantom_volumes(spec(50_000, a.val), size, a.cache, a.workers)
    scores = []
    with open_backend("onnxrt", model, card, threads=2) as be:
        for v in test:
            x = np.stack([v.stack(z, card.context, card.windows) for z in range(v.n)])
            logits = np.concatenate([be.infer(x[i : i + 16]) for i in range(0, v.n, 16)])[:, 0]
            prob = 1.0 / (1.0 + np.exp(-logits)) if card.output_kind == "logits" else logits
            pred = remove_small(prob >= card.threshold, v.spacing, card.min_component_mm3)
            scores.append(score_case(v.case_id, pred, v.truth, v.spacing))  # type: ignore[arg-type]
    model_s = summarize(scores)
    base = threshold_baseline_on(test, val, keep_scores=True)
    base_scores = base.pop("_scores")
    pos = [i for i, s in enumerate(scores) if s.scan_truth]
    m_pos = [scores[i].dice for i in pos]
    b_pos = [base_scores[i].dice for i in pos]
    diff = [m - b for m, b in zip(m_pos, b_pos)]
    doc: dict[str, Any] = {
        "command": command_line(),
        "model_file": model_note,
        "card_id": card.card_id,
        "test": f"{len(test)} held-out phantoms ({a.difficulty}), seeds 80000.., model grid {size[0]}x{size[1]}",
        "positive_cases": len(pos),
        "model": model_s,
        "model_dice_bleeding_ci95": bootstrap_ci(m_pos),
        "threshold_baseline": base,
        "threshold_dice_bleeding_ci95": bootstrap_ci(b_pos),
        "paired_difference_bleeding": float(np.mean(diff)) if diff else float("nan"),
        "paired_difference_ci95": bootstrap_ci(diff),
        "wilcoxon_p_model_vs_threshold": wilcoxon_p(m_pos, b_pos),
        "seconds": round(time.perf_counter() - t0, 1),
        "environment": env_block(2),
        "machine_load": acct.stop(threads_used=2),
    }
    doc["model"].pop("per_case_dice", None)
    ms, bs = doc["model"], base

    def row(name: str, s: dict[str, Any], ci: tuple[float, float]) -> str:
        return (
            f"| {name} | {s['dice_bleeding_volumes']:.3f} [{ci[0]:.3f}, {ci[1]:.3f}] | "
            f"{s['empty_volumes_called_empty']:.2f} | {s['scan_sensitivity_reportable']:.2f} | "
            f"{s['scan_specificity']:.2f} | {s['median_abs_volume_error_pct']:.1f} % | {s['dice_all']:.3f} |"
        )

    md = [
        f"# The bundled model on held-out phantoms ({a.difficulty})",
        "",
        f"`{command_line()}`: {doc['test']}, {len(pos)} with blood; model `{card.card_id}` "
        f"(threshold {card.threshold}, smallest component {card.min_component_mm3} mm3).",
        "",
        "| | Dice, bleeding volumes [95% CI] | empty volumes called empty | scan sensitivity, bleeds >= 0.5 mL "
        "| scan specificity | median abs. volume error | Dice, all volumes |",
        "|---|---|---|---|---|---|---|",
        row("bundled model", ms, doc["model_dice_bleeding_ci95"]),
        row("threshold baseline, own operating point", bs, doc["threshold_dice_bleeding_ci95"]),
        "",
        f"Paired difference on bleeding volumes (model - threshold): {doc['paired_difference_bleeding']:+.3f} "
        f"[{doc['paired_difference_ci95'][0]:+.3f}, {doc['paired_difference_ci95'][1]:+.3f}], "
        f"Wilcoxon p = {doc['wilcoxon_p_model_vs_threshold']:.2g}.",
        f"Threshold operating point: HU >= {bs['operating_point']['hu_low']}, components >= "
        f"{bs['operating_point']['min_component_mm3']} mm3, chosen on {bs['operating_point']['chosen_on']}.",
        "",
        "Per subtype (model / threshold): "
        + ", ".join(
            f"{k} {ms['subtype_dice'][k]:.2f} / {bs['subtype_dice'].get(k, float('nan')):.2f}"
            for k in ms["subtype_dice"]
        ),
        "",
        "Goals (issue: bundled model): Dice on bleeding volumes >= 0.70 and >= threshold + 0.15; scan sensitivity "
        ">= 0.95 for bleeds >= 0.5 mL; specificity >= 0.95; median absolute volume error <= 15 %.",
        "",
        *env_lines(doc["environment"], doc["machine_load"]),
    ]
    name = a.name or f"model_{a.difficulty}"
    print("\n".join(md[:12]))
    print(f"-> {write_report(name, doc, md)}")


if __name__ == "__main__":
    main()

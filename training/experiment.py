"""The seed paper's headline experiment in silico, on phantoms.

Sets (disjoint phantom seeds): a large set with slice labels only, a small set with voxel
masks (k-fold), a validation set (slice labels for the weakly supervised threshold, masks for
the ceiling's), and one held-out test set scored against voxel truth for every method.
Methods: weakly supervised on the large set restricted to the first cases (in seed order)
that hold 10/25/50/100% of its bleed slices; fully supervised on the small set (each fold's
model scored on the test set; per-case Dice averaged over folds); fully supervised on the
whole large set with all masks (the ceiling); the threshold baseline. Paired Wilcoxon tests
on per-case test Dice. Writes results.json, results.md, dice.png and command.txt.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from edge_ich.outputs.atomic import write_text_atomic
from training.evaluate import CaseScores, remove_small, score_case, summarize, wilcoxon_p
from training.loops import log
from training.pipeline import (
    PipelineConfig,
    TrainResult,
    binarize,
    predict_probs,
    pseudo_mask_dice,
    run_fully_supervised,
    run_weakly_supervised,
)
from training.volumes import PhantomSpec, Volume, phantom_volumes


@dataclass
class ExperimentOptions:
    out: Path = Path("benchmarks/reports/experiment")
    work: Path = Path("runs/experiment")
    large: int = 300
    small: int = 20
    val: int = 20
    test: int = 40
    folds: int = 5
    fractions: tuple[float, ...] = (0.1, 0.25, 0.5, 1.0)
    reduced: bool = False
    cam_ablation: bool = True  # also run the last weakly supervised set with the CAM gate open
    difficulty: str = "standard"
    slices: int | None = 24
    thickness: float | None = 5.0
    gen_size: int | None = None
    cache: Path = Path("runs/cache")
    workers: int = 1
    pipeline: PipelineConfig = field(default_factory=PipelineConfig)
    argv: list[str] = field(default_factory=list)


def subset_by_bleed_fraction(vols: list[Volume], fraction: float) -> list[Volume]:
    """The first cases (seed order) that together hold >= `fraction` of all bleed slices."""
    pos = np.array([int(np.sum(v.slice_labels)) for v in vols])  # type: ignore[arg-type]
    need = fraction * pos.sum()
    k = int(np.searchsorted(np.cumsum(pos), need - 1e-9) + 1)
    return vols[: min(max(k, 1), len(vols))]


def _scores(result: TrainResult, test: list[Volume], cfg: PipelineConfig) -> list[CaseScores]:
    preds = binarize(predict_probs(result.segmenter, test, cfg), test, result.threshold, result.min_component_mm3)
    return [score_case(v.case_id, p, v.truth, v.spacing) for v, p in zip(test, preds)]  # type: ignore[arg-type]


def _ws_row(
    res: TrainResult, train: list[Volume], test: list[Volume], cfg: PipelineConfig
) -> tuple[dict[str, Any], list[float]]:
    """One weakly supervised row of the table (scores on `test`, training facts) and its per-case Dice."""
    s = summarize(_scores(res, test, cfg))
    per_case = s.pop("per_case_dice")
    s["train_cases"] = len(train)
    s["train_bleed_slices"] = int(sum(int(np.sum(v.slice_labels)) for v in train))  # type: ignore[arg-type]
    s["pseudo_mask_dice"] = pseudo_mask_dice(train, res.pseudo or [])
    s["classifier_val_slice_auc"] = res.summary.get("classifier_val_slice_auc")
    s["threshold"] = res.threshold
    s["min_component_mm3"] = res.min_component_mm3
    return s, per_case


def run_experiment(o: ExperimentOptions) -> dict[str, Any]:
    """Run every method, write the table, plot and command; return the results dict."""
    cfg = o.pipeline
    t_start = time.perf_counter()
    size = (cfg.size, cfg.size)
    gen = o.gen_size or cfg.size

    def spec(start: int, n: int) -> PhantomSpec:
        return PhantomSpec(start, n, o.difficulty, o.slices, o.thickness, gen)

    base = 1_000_000 + cfg.seed * 100_000
    large = phantom_volumes(spec(base, o.large), size, o.cache, o.workers)
    small = phantom_volumes(spec(base + 40_000, o.small), size, o.cache, o.workers)
    val = phantom_volumes(spec(base + 60_000, o.val), size, o.cache, o.workers)
    test = phantom_volumes(spec(base + 80_000, o.test), size, o.cache, o.workers)
    t_data = time.perf_counter() - t_start
    log(
        f"[experiment] phantoms ready in {t_data:.0f}s: large {len(large)} small {len(small)} val {len(val)} test {len(test)}"
    )
    work = Path(o.work)
    rows: dict[str, dict[str, Any]] = {}
    per_case: dict[str, list[float]] = {}
    timings: dict[str, float] = {"phantoms": round(t_data, 1)}

    for f in o.fractions:
        name = f"WS {int(round(f * 100))}%"
        t0 = time.perf_counter()
        sub = subset_by_bleed_fraction(large, f)
        res = run_weakly_supervised(sub, val, cfg, work / f"ws_{int(round(f * 100))}")
        rows[name], per_case[name] = _ws_row(res, sub, test, cfg)
        ws_min_mm3 = res.min_component_mm3
        ws_name, ws_classifier = name, res.classifier
        timings[name] = round(time.perf_counter() - t0, 1)
        log(f"[experiment] {name}: test Dice {rows[name]['dice_all']:.3f} ({timings[name]:.0f}s)")

    # ablation: the last weakly supervised run again with the CAM gate open (same classifier),
    # i.e. what the class activation maps add to the pseudo-masks
    if o.cam_ablation and (cfg.refine.cam_threshold > 0 or cfg.refine.component_cam_peak > 0):
        name = f"{ws_name} CAM gate open"
        t0 = time.perf_counter()
        open_cfg = replace(cfg, refine=replace(cfg.refine, cam_threshold=0.0, component_cam_peak=0.0))
        res = run_weakly_supervised(sub, val, open_cfg, work / "ws_cam_open", classifier=ws_classifier)
        rows[name], per_case[name] = _ws_row(res, sub, test, open_cfg)
        timings[name] = round(time.perf_counter() - t0, 1)
        log(f"[experiment] {name}: test Dice {rows[name]['dice_all']:.3f} ({timings[name]:.0f}s)")

    # fully supervised, low-data regime: k-fold on the small set
    t0 = time.perf_counter()
    folds = np.array_split(np.arange(len(small)), o.folds)
    fold_dice, cv_dice = [], []
    fold_scores: list[list[CaseScores]] = []
    for k, held in enumerate(folds):
        tr = [small[i] for i in range(len(small)) if i not in set(held.tolist())]
        va = [small[i] for i in held]
        res = run_fully_supervised(tr, va, cfg, work / "fs_small", name=f"fold{k}")
        sc = _scores(res, test, cfg)
        fold_scores.append(sc)
        fold_dice.append(summarize(sc)["dice_all"])
        cv_dice.append(res.summary["val_dice"])
    s = summarize([sc for fs in fold_scores for sc in fs])
    s.pop("per_case_dice")
    per_case["FS small"] = [
        float(np.mean([fold_scores[k][i].dice for k in range(len(folds))])) for i in range(len(test))
    ]
    s["dice_all"] = float(np.mean(per_case["FS small"]))
    s["fold_test_dice"] = fold_dice
    s["cv_heldout_fold_dice"] = cv_dice
    s["train_cases"] = len(small)
    rows["FS small"] = s
    timings["FS small"] = round(time.perf_counter() - t0, 1)

    # ceiling: fully supervised on the whole large set with all masks
    t0 = time.perf_counter()
    res = run_fully_supervised(large, val, cfg, work / "fs_large")
    s = summarize(_scores(res, test, cfg))
    per_case["FS large (ceiling)"] = s.pop("per_case_dice")
    s["train_cases"] = len(large)
    rows["FS large (ceiling)"] = s
    timings["FS large (ceiling)"] = round(time.perf_counter() - t0, 1)

    # threshold baseline, with the smallest-component rule the full weakly supervised model chose
    from edge_ich.analysis.baseline import threshold_segment

    sc = [
        score_case(
            v.case_id,
            remove_small(np.asarray(threshold_segment(v.hu, v.spacing), bool), v.spacing, ws_min_mm3),
            v.truth,
            v.spacing,
        )
        for v in test
    ]  # type: ignore[arg-type]
    s = summarize(sc)
    per_case["Threshold"] = s.pop("per_case_dice")
    rows["Threshold"] = s

    ws_full = f"WS {int(round(o.fractions[-1] * 100))}%"
    tests = {
        f"{ws_full} vs {other}": wilcoxon_p(per_case[ws_full], per_case[other])
        for other in ("FS large (ceiling)", "FS small", "Threshold")
    }
    for n in per_case:
        if n.endswith("CAM gate open"):
            tests[f"{ws_full} vs {n}"] = wilcoxon_p(per_case[ws_full], per_case[n])
    for f in o.fractions[:-1]:
        n = f"WS {int(round(f * 100))}%"
        tests[f"{n} vs Threshold"] = wilcoxon_p(per_case[n], per_case["Threshold"])
    ceiling = rows["FS large (ceiling)"]["dice_all"]
    ws = rows[ws_full]["dice_all"]
    goals = {
        "ws_over_ceiling": ws / ceiling if ceiling > 0 else float("nan"),
        "ws_over_ceiling_goal_0.8": bool(ceiling > 0 and ws / ceiling >= 0.8),
        "ws_above_fs_small": bool(ws > rows["FS small"]["dice_all"]),
        "ws_minus_threshold": ws - rows["Threshold"]["dice_all"],
        "ws_minus_threshold_goal_0.15": bool(ws - rows["Threshold"]["dice_all"] >= 0.15),
    }
    timings["total"] = round(time.perf_counter() - t_start, 1)
    results = {
        "reduced": o.reduced,
        "command": "python -m training " + " ".join(o.argv),
        "config": cfg.to_dict(),
        "sets": {
            "large": o.large,
            "small": o.small,
            "val": o.val,
            "test": o.test,
            "folds": o.folds,
            "difficulty": o.difficulty,
            "slices": o.slices,
            "thickness": o.thickness,
            "gen_size": gen,
        },
        "rows": rows,
        "per_case_dice": per_case,
        "wilcoxon_p": tests,
        "goals": goals,
        "seconds": timings,
    }
    write_reports(results, Path(o.out))
    return results


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return "nan" if v != v else f"{v:.3f}"
    return str(v)


def write_reports(results: dict[str, Any], out: Path) -> None:
    """results.json, results.md (table), dice.png (plot), command.txt."""
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / "results.json", json.dumps(results, indent=2, default=float) + "\n")
    write_text_atomic(out / "command.txt", results["command"] + "\n")
    cols = [
        ("dice_all", "Dice (all cases)"),
        ("dice_positive_cases", "Dice (pos. cases)"),
        ("dice_positive_slices", "Dice (pos. slices)"),
        ("abs_volume_error_ml", "|dV| mL"),
        ("scan_sensitivity", "scan sens"),
        ("scan_specificity", "scan spec"),
        ("slice_sensitivity", "slice sens"),
        ("slice_specificity", "slice spec"),
        ("train_cases", "train cases"),
        ("classifier_val_slice_auc", "classifier AUC"),
        ("pseudo_dice", "pseudo-mask Dice"),
    ]
    lines = [
        "# In-silico experiment (phantoms)" + (" — REDUCED configuration" if results["reduced"] else ""),
        "",
        f"Command: `{results['command']}`",
        "",
        f"Sets: {json.dumps(results['sets'])}",
        "",
        "Dice per volume on the held-out test set; an empty prediction on an empty truth counts 1.0. "
        "'Dice (pos. cases)' averages over the test cases with blood only; "
        "'Dice (pos. slices)' is computed over the truth-positive slices of positive scans.",
        "",
        "| method | " + " | ".join(c[1] for c in cols) + " |",
        "|" + "---|" * (len(cols) + 1),
    ]
    for name, r in results["rows"].items():
        r = dict(r, pseudo_dice=r.get("pseudo_mask_dice", {}).get("dice_positive_cases", ""))
        lines.append(f"| {name} | " + " | ".join(_fmt(r.get(k, "")) for k, _ in cols) + " |")
    lines += [
        "",
        "Dice per subtype (test set):",
        "",
        "| method | "
        + " | ".join(sorted({k for r in results["rows"].values() for k in r.get("subtype_dice", {})}))
        + " |",
    ]
    subs = sorted({k for r in results["rows"].values() for k in r.get("subtype_dice", {})})
    lines.append("|" + "---|" * (len(subs) + 1))
    for name, r in results["rows"].items():
        lines.append(
            f"| {name} | " + " | ".join(_fmt(r.get("subtype_dice", {}).get(k, float("nan"))) for k in subs) + " |"
        )
    lines += ["", "Paired Wilcoxon signed-rank tests on per-case test Dice (two-sided):", ""]
    lines += [f"- {k}: p = {_fmt(v) if v >= 1e-3 or v != v else f'{v:.1e}'}" for k, v in results["wilcoxon_p"].items()]
    g = results["goals"]
    lines += [
        "",
        "Goals:",
        "",
        f"- WS / ceiling Dice = {_fmt(g['ws_over_ceiling'])} (goal >= 0.8: {'met' if g['ws_over_ceiling_goal_0.8'] else 'NOT met'})",
        f"- WS above low-data fully supervised: {'yes' if g['ws_above_fs_small'] else 'NO'}",
        f"- WS - threshold = {_fmt(g['ws_minus_threshold'])} (goal >= 0.15: {'met' if g['ws_minus_threshold_goal_0.15'] else 'NOT met'})",
        "",
        f"Seconds: {json.dumps(results['seconds'])}",
        "",
    ]
    write_text_atomic(out / "results.md", "\n".join(lines))
    plot(results, out / "dice.png")


def plot(results: dict[str, Any], path: Path) -> None:
    """Two panels: Dice over all test cases, and Dice over the positive test cases, against the labelled share."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from edge_ich.outputs.atomic import atomic_path

    rows = results["rows"]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2), dpi=110, sharey=True)
    styles = {"FS large (ceiling)": ("g", "--"), "FS small": ("r", "-."), "Threshold": ("k", ":")}
    for ax, key, title in zip(
        axes, ("dice_all", "dice_positive_cases"), ("all test cases (empty/empty = 1)", "positive test cases")
    ):
        ws = sorted(
            (float(k.split()[1].rstrip("%")), r[key])
            for k, r in rows.items()
            if k.startswith("WS ") and k.endswith("%")
        )
        ax.plot([x for x, _ in ws], [y for _, y in ws], "o-", label="weakly supervised (large set, slice labels)")
        for k, r in rows.items():
            if k.startswith("WS ") and k.endswith("CAM gate open"):
                ax.plot(
                    [float(k.split()[1].rstrip("%"))],
                    [r[key]],
                    "x",
                    color="0.4",
                    markersize=8,
                    label="same, CAM gate open (ablation)",
                )
        for name, (col, ls) in styles.items():
            if name in rows:
                ax.axhline(rows[name][key], color=col, linestyle=ls, label=name)
        ax.set_title(f"Dice per volume, {title}", fontsize=9)
        ax.set_xlabel("% of the large set's bleed slices (weak labels)")
        ax.set_ylim(0, 1)
    axes[0].set_ylabel("mean Dice")
    axes[1].legend(fontsize=7, loc="upper right")
    p = results["wilcoxon_p"]
    fig.suptitle(
        "In-silico experiment"
        + (" (REDUCED)" if results["reduced"] else "")
        + "   Wilcoxon (all-case Dice): "
        + "; ".join(f"{k}: p={v:.2g}" for k, v in list(p.items())[:3]),
        fontsize=8,
    )
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)

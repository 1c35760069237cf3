"""The seed paper's headline claim tested in silico, as pre-registered in benchmarks/reports/experiment/DESIGN.md.

A large public-style set (standard phantoms, slice labels only), a small target-site set (the hard
condition seen through another scanner's protocol, voxel masks) and a fixed target-site test set.
Arms: `ws_large` (weakly supervised on the large set), `ws_large_f10/25/50` (the label-fraction
study), `fs_small` (fully supervised on the site set, k-fold), `fs_large` (fully supervised on the
large set: the ceiling) and `threshold` (its HU floor and smallest component tuned on the site set).

Every (arm, seed) is one unit of work with its own folder under `work/seed{S}/{arm}/`; a finished
unit writes `result.json` (per-case scores on the test set) and is never rerun, an unfinished one
resumes from its checkpoints. After each unit the reports are rewritten from every finished unit:
`summary.json`, `results.md`, `dice.png`, `command.txt` in `out`. The success criteria are judged
only once every seed of the four primary arms is in.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from edge_ich.outputs.atomic import write_text_atomic
from training.evaluate import CaseScores, score_case, summarize, threshold_baseline_on, wilcoxon_p
from training.loops import log
from training.pipeline import (
    PipelineConfig,
    TrainResult,
    binarize,
    predict_probs,
    run_fully_supervised,
    run_weakly_supervised,
)
from training.volumes import PhantomSpec, Volume, phantom_volumes

PRIMARY = ("threshold", "fs_small", "ws_large", "fs_large")
FRACTIONS = {"ws_large_f10": 0.10, "ws_large_f25": 0.25, "ws_large_f50": 0.50}
ARMS = (*PRIMARY, *FRACTIONS)
SEED_STRIDE = 100_000  # data seeds of the training-side sets move by this much per experiment seed
TEST_START = 90_000  # the target-site test set: the same volumes for every seed


@dataclass
class ExperimentOptions:
    out: Path = Path("benchmarks/reports/experiment")
    work: Path = Path("runs/experiment")
    seeds: tuple[int, ...] = (0, 1, 2)  # to run now
    design_seeds: tuple[int, ...] = (0, 1, 2)  # the pre-registered seeds the summary is judged on
    arms: tuple[str, ...] = ARMS
    large: int = 300
    val: int = 20
    small: int = 8
    test: int = 120
    folds: int = 5
    slices: int = 32
    large_thickness: float = 5.0
    fs_large_steps: int = 1200  # the ws segmenter's steps plus its self-training round
    fs_small_steps: int = 300  # per fold
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


def set_specs(o: ExperimentOptions, seed: int) -> dict[str, PhantomSpec]:
    """The four sets of one seed (DESIGN.md's table); the test set does not depend on the seed."""
    g, b = o.pipeline.size, seed * SEED_STRIDE
    return {
        "large": PhantomSpec(b, o.large, "standard", o.slices, o.large_thickness, g),
        "val": PhantomSpec(b + 50_000, o.val, "standard", o.slices, o.large_thickness, g),
        "small": PhantomSpec(b + 70_000, o.small, "hard", o.slices, None, g, site="target"),
        "test": PhantomSpec(TEST_START, o.test, "hard", o.slices, None, g, site="target"),
    }


def load_sets(o: ExperimentOptions, seed: int, names: tuple[str, ...]) -> dict[str, list[Volume]]:
    size = (o.pipeline.size, o.pipeline.size)
    specs = set_specs(o, seed)
    return {n: phantom_volumes(specs[n], size, o.cache, o.workers) for n in names}


def _needs(arm: str) -> tuple[str, ...]:
    if arm == "threshold":
        return ("small", "test")
    if arm == "fs_small":
        return ("small", "test")
    return ("large", "val", "test")


def _case_rows(scores: list[CaseScores]) -> list[dict[str, Any]]:
    keep = ("case_id", "dice", "abs_volume_error_ml", "truth_ml", "pred_ml", "scan_truth", "scan_pred")
    return [{k: getattr(s, k) for k in keep} | {"subtype_dice": s.subtype_dice} for s in scores]


def _model_scores(res: TrainResult, test: list[Volume], cfg: PipelineConfig) -> list[CaseScores]:
    preds = binarize(predict_probs(res.segmenter, test, cfg), test, res.threshold, res.min_component_mm3)
    return [score_case(v.case_id, p, v.truth, v.spacing) for v, p in zip(test, preds)]  # type: ignore[arg-type]


def run_unit(o: ExperimentOptions, arm: str, seed: int) -> dict[str, Any]:
    """Train (or resume) one arm for one seed and score it on the test set."""
    if arm not in ARMS:
        raise ValueError(f"unknown arm {arm!r}")
    cfg = replace(o.pipeline, seed=seed)
    work = Path(o.work) / f"seed{seed}" / arm
    t0 = time.perf_counter()
    sets = load_sets(o, seed, _needs(arm))
    test = sets["test"]
    train_info: dict[str, Any] = {}
    if arm == "threshold":
        s = threshold_baseline_on(test, val=sets["small"], keep_scores=True)
        scores: list[CaseScores] = s.pop("_scores")
        train_info = {"operating_point": s["operating_point"], "train_cases": len(sets["small"])}
        case_dice = [sc.dice for sc in scores]
    elif arm == "fs_small":
        small = sets["small"]
        fcfg = replace(cfg, seg_steps=o.fs_small_steps)
        folds = [f.tolist() for f in np.array_split(np.arange(len(small)), o.folds)]
        per_fold: list[list[CaseScores]] = []
        cv = []
        for k, held in enumerate(folds):
            tr = [small[i] for i in range(len(small)) if i not in held]
            res = run_fully_supervised(tr, [small[i] for i in held], fcfg, work, name=f"fold{k}")
            per_fold.append(_model_scores(res, test, fcfg))
            cv.append(res.summary["val_dice"])
        scores = [sc for fs in per_fold for sc in fs]  # pooled over folds for the rates
        case_dice = [float(np.mean([fs[i].dice for fs in per_fold])) for i in range(len(test))]
        train_info = {"folds": folds, "heldout_fold_val_dice": cv, "train_cases": len(small), "steps": o.fs_small_steps}
    elif arm == "fs_large":
        fcfg = replace(cfg, seg_steps=o.fs_large_steps)
        res = run_fully_supervised(sets["large"], sets["val"], fcfg, work)
        scores = _model_scores(res, test, fcfg)
        case_dice = [sc.dice for sc in scores]
        train_info = res.summary | {"steps": o.fs_large_steps}
    else:
        train = sets["large"]
        if arm in FRACTIONS:
            train = subset_by_bleed_fraction(train, FRACTIONS[arm])
        res = run_weakly_supervised(train, sets["val"], cfg, work)
        scores = _model_scores(res, test, cfg)
        case_dice = [sc.dice for sc in scores]
        train_info = res.summary
    summ = summarize(scores)
    summ.pop("per_case_dice")
    pos = [i for i, v in enumerate(test) if v.truth is not None and v.truth.any()]
    result = {
        "arm": arm,
        "seed": seed,
        "case_ids": [v.case_id for v in test],
        "positive": [i in set(pos) for i in range(len(test))],
        "case_dice": case_dice,
        "dice_pos": float(np.mean([case_dice[i] for i in pos])) if pos else float("nan"),
        "summary": summ,
        "cases": _case_rows(scores),
        "train": train_info,
        "seconds": round(time.perf_counter() - t0, 1),
        "config": cfg.to_dict(),
    }
    text = json.dumps(result, indent=1, default=_json_default) + "\n"
    write_text_atomic(work / "result.json", text)
    write_text_atomic(Path(o.out) / "units" / f"seed{seed}_{arm}.json", text)  # committed beside the report
    return result


def _json_default(v: Any) -> Any:
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, (np.floating, np.integer, np.bool_)):
        return v.item()
    raise TypeError(type(v).__name__)


def finished_units(work: Path, out_dir: Path | None = None) -> dict[tuple[str, int], dict[str, Any]]:
    """Every finished (arm, seed): the work folder's result.json files and the report's units/ copies
    (so a fresh checkout resumes where the committed report stopped)."""
    out: dict[tuple[str, int], dict[str, Any]] = {}
    found = sorted(Path(work).glob("seed*/*/result.json"))
    if out_dir is not None:
        found = sorted(Path(out_dir).glob("units/seed*_*.json")) + found
    for p in found:
        r = json.loads(p.read_text())
        out[(r["arm"], int(r["seed"]))] = r
    return out


def run_experiment(o: ExperimentOptions) -> dict[str, Any]:
    """Every (seed, arm) asked for, seed by seed in the order given; the reports after each unit."""
    summary = summarize_units(o)
    done = set(finished_units(o.work, o.out))  # read once: the units run below are new
    for seed in o.seeds:
        for arm in o.arms:
            if (arm, seed) in done:
                log(f"[experiment] seed {seed} {arm}: done before, kept")
                continue
            log(f"[experiment] seed {seed} {arm}: start")
            r = run_unit(o, arm, seed)
            log(
                f"[experiment] seed {seed} {arm}: Dice on bleeding test volumes {r['dice_pos']:.3f} ({r['seconds']:.0f}s)"
            )
            summary = summarize_units(o)
    return summary


def _bootstrap_ci(x: np.ndarray, n: int = 2000, seed: int = 0) -> list[float]:
    if x.size == 0:
        return [float("nan"), float("nan")]
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, x.size, (n, x.size))].mean(axis=1)
    return [float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))]


METRICS = (
    "dice_all",
    "empty_volumes_called_empty",
    "scan_sensitivity_reportable",
    "scan_specificity",
    "median_abs_volume_error_pct",
)


def summarize_units(o: ExperimentOptions) -> dict[str, Any]:
    """summary.json (DESIGN.md's schema and more) from every finished unit; writes the reports."""
    units = finished_units(o.work, o.out)
    arms: dict[str, Any] = {}
    per_case_pos: dict[str, np.ndarray] = {}
    n_cases = n_pos = 0
    for arm in ARMS:
        rs = [units[(arm, s)] for s in o.design_seeds if (arm, s) in units]
        if not rs:
            continue
        pos = np.array(rs[0]["positive"], bool)
        n_cases, n_pos = len(pos), int(pos.sum())
        dice_pc = np.array([r["case_dice"] for r in rs])  # [seeds, cases]
        per_case_pos[arm] = dice_pc[:, pos].mean(axis=0)
        arms[arm] = {
            "seeds": [r["seed"] for r in rs],
            "dice_pos": [r["dice_pos"] for r in rs],
            "dice_pos_mean": float(np.mean([r["dice_pos"] for r in rs])),
            "dice_pos_ci95": _bootstrap_ci(per_case_pos[arm]),
            **{m: [r["summary"].get(m) for r in rs] for m in METRICS},
            "subtype_dice": [r["summary"].get("subtype_dice", {}) for r in rs],
            "seconds": [r["seconds"] for r in rs],
        }
    complete = all(a in arms and len(arms[a]["seeds"]) == len(o.design_seeds) for a in PRIMARY)
    p = float("nan")
    if "ws_large" in arms and "fs_small" in arms:
        common = sorted(set(arms["ws_large"]["seeds"]) & set(arms["fs_small"]["seeds"]))
        if common:
            a = _pos_case_mean(units, "ws_large", common)
            b = _pos_case_mean(units, "fs_small", common)
            p = wilcoxon_p(list(a), list(b))
    summary: dict[str, Any] = {
        "design": "benchmarks/reports/experiment/DESIGN.md",
        "seeds": list(o.design_seeds),
        "complete": complete,
        "n_test_cases": n_cases,
        "n_test_pos": n_pos,
        "arms": arms,
        "wilcoxon_p_ws_vs_fs_small": p,
        "command": _run_command(o),
    }
    summary["claim"] = (
        judge(summary) if complete else {"verdict": "incomplete: not every seed of every primary arm ran"}
    )
    write_reports(summary, Path(o.out))
    return summary


def _run_command(o: ExperimentOptions) -> str:
    """The command that ran the units; `--summarize` only rewrites reports, so it keeps the one on record."""
    cmd = "python -m training " + " ".join(o.argv)
    recorded = Path(o.out) / "command.txt"
    if "--summarize" in o.argv and recorded.is_file():
        return recorded.read_text().strip()
    return cmd


def _pos_case_mean(units: dict[tuple[str, int], dict[str, Any]], arm: str, seeds: list[int]) -> np.ndarray:
    rs = [units[(arm, s)] for s in seeds]
    pos = np.array(rs[0]["positive"], bool)
    return np.array([r["case_dice"] for r in rs])[:, pos].mean(axis=0)


def judge(summary: dict[str, Any]) -> dict[str, Any]:
    """DESIGN.md's three success criteria, on the mean over seeds of Dice on bleeding test volumes."""
    m = {a: summary["arms"][a]["dice_pos_mean"] for a in PRIMARY}
    p = summary["wilcoxon_p_ws_vs_fs_small"]
    parts = {
        "ws_large_above_fs_small_p_lt_0.05": bool(m["ws_large"] > m["fs_small"] and p < 0.05),
        "ws_large_at_least_threshold_plus_0.15": bool(m["ws_large"] >= m["threshold"] + 0.15),
        "ws_large_at_least_0.85_of_fs_large": bool(m["ws_large"] >= 0.85 * m["fs_large"]),
    }
    return {
        **parts,
        "ws_minus_threshold": m["ws_large"] - m["threshold"],
        "ws_over_fs_large": m["ws_large"] / m["fs_large"] if m["fs_large"] > 0 else float("nan"),
        "verdict": "the claim holds" if all(parts.values()) else "the claim fails under the design",
    }


def _f(v: Any) -> str:
    if isinstance(v, float):
        return "nan" if v != v else f"{v:.3f}"
    if v is None:
        return "-"
    return str(v)


def write_reports(summary: dict[str, Any], out: Path) -> None:
    """summary.json, results.md, dice.png and command.txt."""
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / "summary.json", json.dumps(summary, indent=2, default=_json_default) + "\n")
    write_text_atomic(out / "command.txt", summary["command"] + "\n")
    lines = [
        "# The low-data experiment (pre-registered design: DESIGN.md)",
        "",
        f"Command: `{summary['command']}`",
        "",
        f"Test set: {summary['n_test_cases']} target-site volumes, {summary['n_test_pos']} with blood "
        f"(the same for every seed). Seeds asked: {summary['seeds']}. "
        + ("Every primary arm has every seed." if summary["complete"] else "**Incomplete:** units still to run."),
        "",
        "Primary metric: mean Dice on the bleeding test volumes, one number per seed; CI: bootstrap over "
        "the bleeding test cases of the per-case mean over seeds.",
        "",
        "| arm | seeds | Dice bleeding (per seed) | mean | 95% CI | empty called empty | sens >= 0.5 mL | "
        "spec | median vol. err % | minutes per seed |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for arm, a in summary["arms"].items():
        lines.append(
            f"| {arm} | {a['seeds']} | {', '.join(_f(x) for x in a['dice_pos'])} | {_f(a['dice_pos_mean'])} | "
            f"[{_f(a['dice_pos_ci95'][0])}, {_f(a['dice_pos_ci95'][1])}] | "
            + " | ".join(_f(float(np.nanmean([x for x in a[m] if x is not None] or [np.nan]))) for m in METRICS[1:])
            + f" | {', '.join(f'{s / 60:.0f}' for s in a['seconds'])} |"
        )
    subs = sorted({k for a in summary["arms"].values() for d in a["subtype_dice"] for k in d})
    if subs:
        lines += ["", "Dice per subtype (mean over seeds):", "", "| arm | " + " | ".join(subs) + " |"]
        lines.append("|" + "---|" * (len(subs) + 1))
        for arm, a in summary["arms"].items():
            vals = [np.nanmean([d.get(k, np.nan) for d in a["subtype_dice"]]) for k in subs]
            lines.append(f"| {arm} | " + " | ".join(_f(float(v)) for v in vals) + " |")
    p = summary["wilcoxon_p_ws_vs_fs_small"]
    lines += ["", f"Paired two-sided Wilcoxon, ws_large vs fs_small (bleeding test volumes): p = {_f(p)}", ""]
    c = summary["claim"]
    lines.append(f"**Verdict: {c['verdict']}.**")
    if "ws_minus_threshold" in c:
        lines += [
            "",
            f"- ws_large > fs_small with p < 0.05: {'yes' if c['ws_large_above_fs_small_p_lt_0.05'] else 'NO'}",
            f"- ws_large - threshold = {_f(c['ws_minus_threshold'])} (>= 0.15: "
            f"{'yes' if c['ws_large_at_least_threshold_plus_0.15'] else 'NO'})",
            f"- ws_large / fs_large = {_f(c['ws_over_fs_large'])} (>= 0.85: "
            f"{'yes' if c['ws_large_at_least_0.85_of_fs_large'] else 'NO'})",
        ]
    write_text_atomic(out / "results.md", "\n".join(lines) + "\n")
    plot(summary, out / "dice.png")


def plot(summary: dict[str, Any], path: Path) -> None:
    """Dice on bleeding test volumes per arm: one dot per seed, the mean as a bar."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from edge_ich.outputs.atomic import atomic_path

    arms = summary["arms"]
    fig, ax = plt.subplots(figsize=(8, 4), dpi=110)
    names = list(arms)
    ax.bar(range(len(names)), [arms[n]["dice_pos_mean"] for n in names], color="0.8")
    for i, n in enumerate(names):
        ax.plot([i] * len(arms[n]["dice_pos"]), arms[n]["dice_pos"], "o", color="C0")
        lo, hi = arms[n]["dice_pos_ci95"]
        ax.plot([i, i], [lo, hi], "-", color="k", linewidth=1)
    ax.set_xticks(range(len(names)), names, rotation=20, fontsize=8)
    ax.set_ylim(0, 1)
    ax.set_ylabel("Dice, bleeding test volumes")
    ax.set_title(
        f"Target-site test set ({summary['n_test_pos']} bleeding of {summary['n_test_cases']}); "
        f"Wilcoxon ws_large vs fs_small p={summary['wilcoxon_p_ws_vs_fs_small']:.2g}",
        fontsize=8,
    )
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)

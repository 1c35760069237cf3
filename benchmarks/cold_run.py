"""A cold `edge-ich run` against the least a run can do, side by side in one run.

Yardstick (a fresh Python process): import pydicom and onnxruntime, decode every slice of the
series (pydicom, full read, `pixel_array`), run the bundled model once per slice (batch 1; the
input is the decoded slice subsampled to the model's size and repeated over its channels, with
the same ONNX Runtime thread settings `edge-ich run` uses). Nothing is written.

The thing: `python -m edge_ich run --series S --out O --threads T` in a fresh process, every
output written (report, NIfTI, DICOM SEG, key images).

Both run alternately (the order flips every round) on the same series and thread count, so a
load change on the shared machine hits both; the ratio per round pairs a yardstick run with the
CLI run next to it. Wall time is measured from spawn to exit; the CLI's per-stage times come
from its report.json (`timings.phases_s`) plus the time its summary line arrived on stdout
(start-up = what is left before the run; exit = summary line to process end). Peak RSS is each
child's own maximum resident set (wait4's ru_maxrss; this parent stays small, so a fork cannot
lend it a larger peak).

Usage (repo root):
    python benchmarks/cold_run.py [--lengths 40 120 400] [--threads 1 2] [--rounds 3] [--cache DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from statistics import median
from typing import Any

import _common  # noqa: F401
from _common import ROOT, command_line, env_block, env_lines, write_report

from edge_ich.bench import envinfo

GOAL_COLD = 2.0
GOAL_COLD_NEXT = 1.3
GOAL_HELP_S = 0.3


def help_times(n: int) -> list[float]:
    """Wall seconds of `python -m edge_ich --help`, spawn to exit, `n` times."""
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "edge_ich", "--help"], cwd=ROOT, capture_output=True, check=True)
        out.append(round(time.perf_counter() - t0, 3))
    return out


YARDSTICK = r"""
import json, os, sys, time
t0 = time.perf_counter()
import numpy as np
import pydicom
import onnxruntime as ort
t1 = time.perf_counter()
series, model, threads = sys.argv[1], sys.argv[2], int(sys.argv[3])
opts = ort.SessionOptions()
opts.intra_op_num_threads = threads
opts.inter_op_num_threads = 1
opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
opts.log_severity_level = 3
sess = ort.InferenceSession(model, sess_options=opts, providers=["CPUExecutionProvider"])
inp = sess.get_inputs()[0]
_, ch, h, w = inp.shape
t2 = time.perf_counter()
decode = infer = 0.0
for name in sorted(os.listdir(series)):
    a = time.perf_counter()
    px = pydicom.dcmread(os.path.join(series, name)).pixel_array
    b = time.perf_counter()
    fy, fx = max(px.shape[0] // h, 1), max(px.shape[1] // w, 1)
    x = np.ascontiguousarray(np.broadcast_to(px[::fy, ::fx][:h, :w].astype(np.float32) / 4096.0, (1, ch, h, w)))
    sess.run(None, {inp.name: x})
    infer += time.perf_counter() - b
    decode += b - a
t3 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "session_s": t2 - t1, "decode_s": decode, "infer_s": infer, "loop_s": t3 - t2}))
"""

GEN = r"""
import sys
from pathlib import Path
from edge_ich.phantom.writers import write_dataset
n, th = int(sys.argv[2]), (float(sys.argv[3]) if sys.argv[3] != "-" else None)
write_dataset(Path(sys.argv[1]), cases=1, seed=3, layout="dicom", difficulty="standard", slices=n, thickness=th, compress=False)
"""


def phantom(cache: Path, n: int, thickness: float | None) -> Path:
    """The n-slice phantom series (seed 3), generated once into the cache."""
    name = f"p{n}" + (f"_t{thickness:g}" if thickness else "")
    series = cache / name / "case_000" / "dicom"
    if not series.is_dir():
        subprocess.run(
            [sys.executable, "-c", GEN, str(cache / name), str(n), str(thickness) if thickness else "-"],
            check=True,
            cwd=ROOT,
            env=_env(),
        )
    return series


def _env(root: Path = ROOT) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(root)
    return env


def _spawn(cmd: list[str], root: Path = ROOT) -> dict[str, Any]:
    """Run cmd; wall from spawn to exit, when the first stdout line came, own peak RSS (MiB), stdout."""
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=root, env=_env(root))
    assert p.stdout is not None and p.stderr is not None
    first_line_s = None
    lines = []
    for raw in p.stdout:
        if first_line_s is None:
            first_line_s = time.perf_counter() - t0
        lines.append(raw.decode())
    err = p.stderr.read().decode()
    _, status, usage = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t0
    p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode != 0:
        raise RuntimeError(f"{cmd[:4]} failed ({p.returncode}): {err[-2000:]}")
    return {"wall_s": wall, "first_line_s": first_line_s, "peak_rss_mb": usage.ru_maxrss / 1024.0, "stdout": lines}


def yardstick(series: Path, model: Path, threads: int) -> dict[str, Any]:
    r = _spawn([sys.executable, "-c", YARDSTICK, str(series), str(model), str(threads)])
    r["stages"] = json.loads(r.pop("stdout")[-1])
    return r


def cli(series: Path, out: Path, threads: int, root: Path = ROOT) -> dict[str, Any]:
    """`edge-ich run` from the source tree `root` (this checkout, or a baseline tree to compare with)."""
    cmd = [
        sys.executable,
        "-m",
        "edge_ich",
        "run",
        "--series",
        str(series),
        "--out",
        str(out),
        "--threads",
        str(threads),
    ]
    r = _spawn(cmd, root)
    r["summary"] = r.pop("stdout")[0].strip()[:60]
    rep = json.loads((out / "report.json").read_text())
    t = rep["timings"]
    phases = dict(t.get("phases_s") or {})
    if not phases:  # a report from before phases_s: what the older timings give
        phases = {
            "load": sum(t["load"].values()),
            "segment": t["segment_wall_s"],
            "outputs": t["stages"]["write"]["total_s"],
        }
    run_s = phases.pop("total", None) or sum(phases.values())
    phases = {"start-up": max(0.0, r["first_line_s"] - run_s), **phases, "exit": r["wall_s"] - r["first_line_s"]}
    r["phases_s"] = phases
    return r


def measure(series: Path, model: Path, threads: int, rounds: int, tmp: Path, baseline: Path | None) -> dict[str, Any]:
    """Alternate yardstick, CLI (and the baseline tree's CLI) `rounds` times, the order rotating each
    round, after one unrecorded warm-up of each (page cache, .pyc files)."""
    runs: dict[str, Any] = {
        "yardstick": lambda k: yardstick(series, model, threads),
        "cli": lambda k: cli(series, tmp / f"o{k}", threads),
    }
    if baseline is not None:
        runs["baseline"] = lambda k: cli(series, tmp / f"b{k}", threads, baseline)
    names = list(runs)
    for name in names:
        runs[name]("warm")
    pairs = []
    for k in range(rounds):
        acct = envinfo.CpuAccount().start()
        order = names[k % len(names) :] + names[: k % len(names)]
        got = {name: runs[name](k) for name in order}
        load = acct.stop(threads)
        row = {**got, "order": order, "others_cores": load["others_cores"]}
        row["ratio"] = got["cli"]["wall_s"] / got["yardstick"]["wall_s"]
        if baseline is not None:
            row["baseline_ratio"] = got["baseline"]["wall_s"] / got["yardstick"]["wall_s"]
        pairs.append(row)
        base = f", baseline {got['baseline']['wall_s']:.2f} s ({row['baseline_ratio']:.2f})" if baseline else ""
        print(
            f"  {series.parent.parent.name} t{threads} round {k}: yardstick {got['yardstick']['wall_s']:.2f} s, "
            f"cli {got['cli']['wall_s']:.2f} s, ratio {row['ratio']:.2f}{base}, "
            f"rss {got['cli']['peak_rss_mb']:.0f}/{got['yardstick']['peak_rss_mb']:.0f} MiB, "
            f"others {load['others_cores']:.2f} cores",
            flush=True,
        )
    phases = {p: median([q["cli"]["phases_s"].get(p, 0.0) for q in pairs]) for p in pairs[0]["cli"]["phases_s"]}
    out = {
        "threads": threads,
        "yardstick_s": median([q["yardstick"]["wall_s"] for q in pairs]),
        "cli_s": median([q["cli"]["wall_s"] for q in pairs]),
        "ratio": median([q["ratio"] for q in pairs]),
        "ratio_min": min(q["ratio"] for q in pairs),
        "ratio_max": max(q["ratio"] for q in pairs),
        "cli_peak_rss_mb": median([q["cli"]["peak_rss_mb"] for q in pairs]),
        "yardstick_peak_rss_mb": median([q["yardstick"]["peak_rss_mb"] for q in pairs]),
        "yardstick_stages_s": {
            s: median([q["yardstick"]["stages"][s] for q in pairs]) for s in pairs[0]["yardstick"]["stages"]
        },
        "cli_phases_s": phases,
        "others_cores": median([q["others_cores"] for q in pairs]),
        "rounds": pairs,
    }
    if baseline is not None:
        out["baseline_s"] = median([q["baseline"]["wall_s"] for q in pairs])
        out["baseline_ratio"] = median([q["baseline_ratio"] for q in pairs])
        out["baseline_peak_rss_mb"] = median([q["baseline"]["peak_rss_mb"] for q in pairs])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lengths", type=int, nargs="+", default=[40, 120, 400])
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument(
        "--thin", type=int, default=0, help="also a thin-slice series of this many slices (0.5 mm): RSS only"
    )
    ap.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "edge-ich-cold-run-phantoms")
    ap.add_argument("--name", default="cold_run", help="report folder under benchmarks/reports/")
    ap.add_argument(
        "--baseline",
        type=Path,
        default=None,
        help="another source tree (e.g. `git archive` of main) whose CLI runs in the same rounds",
    )
    args = ap.parse_args()
    from edge_ich.card import bundled_model_path

    model = bundled_model_path()
    if model is None:
        raise SystemExit("no bundled model (engines/ich_segmenter.onnx)")
    args.cache.mkdir(parents=True, exist_ok=True)
    before = envinfo.busy_snapshot()
    acct = envinfo.CpuAccount().start()
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="edge-ich-cold-") as tmp:
        for n in args.lengths:
            series = phantom(args.cache, n, None)
            for t in args.threads:
                res = measure(series, model, t, args.rounds, Path(tmp), args.baseline)
                res["slices"] = n
                results.append(res)
        thin = None
        if args.thin:
            series = phantom(args.cache, args.thin, 0.5)
            t = max(args.threads)
            thin = cli(series, Path(tmp) / "thin", t)
            thin["slices"] = args.thin
        help_s = help_times(5)
    load = acct.stop(max(args.threads))
    doc = {
        "command": command_line(),
        "model": model.name,
        "series": "phantom seed 3, 512x512, uncompressed, one case per length (generated once into the cache)",
        "goal_ratio_40": GOAL_COLD,
        "baseline_tree": str(args.baseline) if args.baseline else None,
        "results": results,
        "thin": {k: v for k, v in thin.items() if k != "summary"} if thin else None,
        "help_s": help_s,
        "goal_help_s": GOAL_HELP_S,
        "parent_peak_rss_mb": envinfo.peak_rss_mb(),
        "machine_load_before": before,
        "machine_load": load,
        "environment": env_block(max(args.threads)),
    }
    out = write_report(args.name, doc, markdown(doc))
    plot(out / "phases.png", results)
    print(f"wrote {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}")


def markdown(doc: dict[str, Any]) -> list[str]:
    res = doc["results"]
    lines = [
        "# Cold `edge-ich run` against decode + inference",
        "",
        f"Command: `{doc['command']}`",
        "",
        f"Model: {doc['model']}. Series: {doc['series']}. Yardstick: a fresh process that imports pydicom and "
        "onnxruntime, decodes every slice and runs the model once per slice (nothing written). CLI: "
        "`python -m edge_ich run --series S --out O --threads T`, every output written. Alternating, order flipped "
        "each round, after one unrecorded warm-up pair; medians over the rounds.",
        "",
        "| slices | threads | yardstick s | CLI s | **CLI / yardstick** (min-max) | baseline CLI / yardstick | CLI peak RSS MiB | baseline RSS MiB | yardstick RSS MiB | other processes, cores |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in res:
        base = f"{r['baseline_ratio']:.2f}" if "baseline_ratio" in r else "-"
        base_rss = f"{r['baseline_peak_rss_mb']:.0f}" if "baseline_ratio" in r else "-"
        lines.append(
            f"| {r['slices']} | {r['threads']} | {r['yardstick_s']:.2f} | {r['cli_s']:.2f} | **{r['ratio']:.2f}** "
            f"({r['ratio_min']:.2f}-{r['ratio_max']:.2f}) | {base} | {r['cli_peak_rss_mb']:.0f} | {base_rss} | "
            f"{r['yardstick_peak_rss_mb']:.0f} | {r['others_cores']:.2f} |"
        )
    if doc.get("baseline_tree"):
        lines += ["", f"Baseline: the CLI of the source tree `{doc['baseline_tree']}`, run in the same rounds."]
    forty = [r for r in res if r["slices"] == 40]
    if forty:
        default = max(forty, key=lambda r: r["threads"])  # `edge-ich run` uses every usable CPU by default
        best = min(forty, key=lambda r: r["ratio"])
        lines += [
            "",
            f"Goal (40 slices): CLI / yardstick <= {GOAL_COLD}: at the default thread count ({default['threads']}) "
            f"{default['ratio']:.2f}, **{'met' if default['ratio'] <= GOAL_COLD else 'NOT met'}**; at "
            f"{best['threads']} thread(s) {best['ratio']:.2f}, {'met' if best['ratio'] <= GOAL_COLD else 'NOT met'} "
            f"(next goal {GOAL_COLD_NEXT}).",
        ]
    if doc.get("help_s"):
        h = median(doc["help_s"])
        lines.append(
            f"`python -m edge_ich --help`: median {h:.3f} s of {len(doc['help_s'])} (goal <= {doc['goal_help_s']}: "
            f"{'met' if h <= doc['goal_help_s'] else 'NOT met'})."
        )
    by_t: dict[int, dict[int, float]] = {}
    for r in res:
        by_t.setdefault(r["threads"], {})[r["slices"]] = r["cli_peak_rss_mb"]
    for t, m in sorted(by_t.items()):
        if 40 in m and len(m) > 1:
            lines.append(
                f"Peak RSS against 40 slices ({t} thread(s)): "
                + ", ".join(f"{n}: {v / m[40]:.2f}" for n, v in sorted(m.items()) if n != 40)
                + " (goal for 400: <= 1.15)."
            )
    if doc.get("thin"):
        th = doc["thin"]
        ref = by_t.get(max(by_t), {}).get(40) if by_t else None
        ratio = f", {th['peak_rss_mb'] / ref:.2f} of the 40-slice peak (goal <= 1.2)" if ref else ""
        lines.append(
            f"Thin-slice series, {th['slices']} slices of 0.5 mm: peak RSS {th['peak_rss_mb']:.0f} MiB{ratio}; wall {th['wall_s']:.2f} s."
        )
    lines += ["", "## Where the CLI's time goes (median s per phase)", ""]
    names = list(res[0]["cli_phases_s"]) if res else []
    lines += ["| slices | threads | " + " | ".join(names) + " |", "|---:|---:|" + "---:|" * len(names)]
    for r in res:
        lines.append(
            f"| {r['slices']} | {r['threads']} | "
            + " | ".join(f"{r['cli_phases_s'].get(p, 0.0):.3f}" for p in names)
            + " |"
        )
    ynames = list(res[0]["yardstick_stages_s"]) if res else []
    lines += ["", "Yardstick, inside its process (median s):", "", "| slices | threads | " + " | ".join(ynames) + " |"]
    lines += ["|---:|---:|" + "---:|" * len(ynames)]
    for r in res:
        lines.append(
            f"| {r['slices']} | {r['threads']} | "
            + " | ".join(f"{r['yardstick_stages_s'][s]:.3f}" for s in ynames)
            + " |"
        )
    lines += [
        "",
        "start-up = spawn to the summary line, less the run itself (interpreter, imports, argument parsing); "
        "exit = summary line to process end.",
        "",
        "![phases](phases.png)",
        "",
    ]
    lines += env_lines(doc["environment"], doc["machine_load"])
    lb = doc["machine_load_before"]
    lines.append(
        f"- Before measuring: load average {lb['load_avg_before']}, other processes {lb['others_cores']:.2f} cores."
    )
    lines.append(f"- This script's own peak RSS: {doc['parent_peak_rss_mb']:.0f} MiB (below every child's peak).")
    return lines


def plot(path: Path, results: list[dict[str, Any]]) -> None:
    """Stacked CLI phases against series length, one panel per thread count, yardstick as a line."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    from edge_ich.bench.report import save_figure

    threads = sorted({r["threads"] for r in results})
    fig, axes = plt.subplots(1, len(threads), figsize=(5.5 * len(threads), 4.2), squeeze=False)
    for ax, t in zip(axes[0], threads):
        rs = sorted((r for r in results if r["threads"] == t), key=lambda r: r["slices"])
        xs = list(range(len(rs)))
        names = list(rs[0]["cli_phases_s"])
        bottom = [0.0] * len(rs)
        for name in names:
            vals = [r["cli_phases_s"].get(name, 0.0) for r in rs]
            ax.bar(xs, vals, bottom=bottom, label=name, width=0.6)
            bottom = [b + v for b, v in zip(bottom, vals)]
        ax.plot(xs, [r["yardstick_s"] for r in rs], "k_", markersize=40, mew=2, label="yardstick (decode + inference)")
        for x, r in zip(xs, rs):
            ax.text(x, r["cli_s"] * 1.02, f"{r['ratio']:.2f}x", ha="center", va="bottom", fontsize=8)
        ax.set_xticks(xs, [str(r["slices"]) for r in rs])
        ax.set_xlabel("slices")
        ax.set_ylabel("seconds (cold, wall)")
        ax.set_title(f"{t} thread(s)", fontsize=10)
    axes[0][-1].legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    save_figure(fig, path)


if __name__ == "__main__":
    main()

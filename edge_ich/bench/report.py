"""bench.json (schema `edge_ich/schemas/bench.schema.json`), bench.md and the PNG plots.

Each file is written atomically. matplotlib (Agg) is imported only when the plots are drawn.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from edge_ich.analysis.stats import median, percentile
from edge_ich.outputs.atomic import atomic_path, write_text_atomic
from edge_ich.pipeline import STAGES

STAGE_LABELS = {
    "read": "read + decode",
    "preprocess": "preprocess",
    "h2d": "host -> device",
    "compute": "compute",
    "d2h": "device -> host",
    "postprocess": "postprocess",
    "write": "write outputs",
}


def save_figure(fig: Any, path: Path, dpi: int = 100) -> None:
    """Write a matplotlib figure as PNG atomically and release it."""
    import matplotlib.pyplot as plt

    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)
    plt.close(fig)


def schema_path() -> Path:
    """The JSON Schema bench.json follows (shipped inside the package)."""
    return Path(__file__).resolve().parent.parent / "schemas" / "bench.schema.json"


def load_schema() -> dict[str, Any]:
    return json.loads(schema_path().read_text())


def _f(v: float | None, nd: int = 2) -> str:
    return "-" if v is None else f"{v:.{nd}f}"


def stats_table(rows: Mapping[str, Mapping[str, Any] | None], unit: str = "ms") -> list[str]:
    """Markdown table of Stats dicts: one row per name."""
    head = "| | n | min | mean | median | p90 | p95 | p99 | max | CV |"
    lines = [head, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, s in rows.items():
        if not s:
            continue
        lines.append(
            f"| {name} ({unit}) | {s['n']} | {_f(s['min'], 3)} | {_f(s['mean'], 3)} | {_f(s['median'], 3)} | "
            f"{_f(s['p90'], 3)} | {_f(s['p95'], 3)} | {_f(s['p99'], 3)} | {_f(s['max'], 3)} | {s['cv'] * 100:.1f}% |"
        )
    return lines


def markdown(doc: Mapping[str, Any]) -> str:
    """A human-readable bench.md from the bench.json content."""
    m, b, inp, ss, cold = doc["model"], doc["backend"], doc["input"], doc["steady_state"], doc["cold_start"]
    env, mem = doc["environment"], doc["memory"]
    cpu = env["cpu"]
    lines = [
        "# edge-ich bench",
        "",
        f"Command: `{doc['command']}`  ",
        f"Created: {doc['created_utc']} (schema {doc['schema']} {doc['schema_version']})",
        "",
        f"Model: `{m['file']}` ({m['card_id']}, {m['precision']}, input {m['input_size'][0]}x{m['input_size'][1]}, "
        f"{m['in_channels']} channels{', the bundled model' if m['bundled'] else ', NOT the bundled model'})  ",
        f"Backend: {b['name']} on {b['device']} ({b['precision']}), batch {doc['settings']['batch']}, "
        f"threads {env.get('threads_used')}  ",
        f"Input: {'generated phantom' if inp['kind'] == 'phantom' else 'DICOM'} series, {inp['slices']} slices of "
        f"{inp['rows']}x{inp['cols']}  ",
        f"Passes: {ss['passes']} measured after {ss['warmup_passes']} warm-up pass(es), {ss['measured_wall_s']:.1f} s",
        "",
    ]
    if doc["warnings"]:
        lines += ["## Warnings", ""] + [f"- **{w['code']}**: {w['message']}" for w in doc["warnings"]] + [""]
    lines += [
        "## Cold start",
        "",
        "| step | seconds |",
        "|---|---:|",
        f"| card check (hash) | {_f(cold['card_s'], 4)} |",
        f"| session / engine creation | {_f(cold['session_s'], 4)} |",
        f"| first inference (one batch) | {_f(cold['first_inference_s'], 4)} |",
        f"| first series (discover + segment + write) | {_f(cold['first_series_s'], 3)} |",
        f"| load to first result | {_f(cold['to_first_result_s'], 3)} |",
        "",
        "## Steady state per slice, by stage",
        "",
        "Batched stages (h2d, compute, d2h) are split evenly over the slices of their batch; "
        "postprocess includes each slice's share of the 3D component labelling; write is the series' "
        "outputs (report, mask, SEG, key images) shared over its slices. Stages that took no time at all (host <-> "
        "device copies on a CPU backend) are left out.",
        "",
    ]
    rows = {STAGE_LABELS.get(k, k): v for k, v in ss["stages_ms"].items()}
    rows["sum of stages"] = ss["slice_sum_ms"]
    rows["amortized (series / slices)"] = ss["slice_amortized_ms"]
    lines += stats_table(rows)
    lines += ["", "## Per series", ""]
    lines += stats_table(
        {
            "end to end (discover .. outputs written)": ss["series_ms"],
            "discover": ss["discover_ms"],
            "segment (streamed)": ss["segment_wall_ms"],
            "last slice read -> result": ss["last_slice_to_result_ms"],
        }
    )
    tp = ss["throughput"]
    gpu = mem.get("gpu_used_mb_peak")
    lines += [
        "",
        f"Throughput: **{tp['slices_per_s']:.1f} slices/s**, {tp['series_per_s']:.3f} series/s  ",
        f"Peak RSS: {mem['peak_rss_mb']:.0f} MiB"
        + (f"; GPU memory in use (peak, all processes): {gpu:.0f} MiB" if gpu is not None else "; no GPU"),
        "",
        "## Environment",
        "",
        f"- CPU: {cpu['model']} ({cpu['arch']}), {cpu['physical_cores']} cores / {cpu['logical_cpus']} threads, "
        f"{cpu['usable_cpus']} usable; flags: {', '.join(cpu['flags']) or '-'}",
        "- Versions: " + ", ".join(f"{k} {v}" for k, v in env["versions"].items() if v),
    ]
    for g in env["gpus"]:
        lines.append(
            f"- GPU: {g['name']} (compute capability {g['compute_capability']}, {_f(g.get('memory_mb'), 0)} MiB)"
        )
    if env.get("jetson"):
        j = env["jetson"]
        lines.append(
            f"- Jetson: {j.get('model')}, power mode {j.get('power_mode')}, GPU clock {j.get('gpu_clock_mhz')} MHz, "
            f"temperatures {j.get('temperature_c')}, power {j.get('power_mw')}"
        )
    during = doc["machine_load"]["during"]
    lines += [
        f"- Other processes used {during['others_cores']:.2f} of {during['cpus']} CPUs on average while measuring "
        f"(load average before {_f((during.get('load_avg_before') or [None])[0])})",
        "",
    ]
    plots = doc.get("outputs", {}).get("plots", [])
    if plots:
        lines += ["## Plots", ""] + [f"![{p}]({p})" for p in plots] + [""]
    return "\n".join(lines)


def plot_latency(
    path: Path, series_ms: Sequence[float], stage_samples_ms: Mapping[str, Sequence[float]], title: str
) -> None:
    """Histogram of per-series end-to-end time and of per-slice compute time."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for ax, data, label in (
        (axes[0], series_ms, "end to end per series (ms)"),
        (axes[1], stage_samples_ms.get("compute", []), "compute per slice (ms)"),
    ):
        if len(data):
            ax.hist(list(data), bins=min(40, max(5, len(data) // 3)), color="#3572a5")
            ordered = sorted(data)
            for label_q, v, style in (("median", median(ordered), "-"), ("p99", percentile(ordered, 99), "--")):
                ax.axvline(v, color="k", linestyle=style, linewidth=1, label=f"{label_q} {v:.1f}")
            ax.legend(fontsize=8)
        ax.set_xlabel(label)
        ax.set_ylabel("count")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    save_figure(fig, path)


def plot_stages(path: Path, stages_ms: Mapping[str, Mapping[str, Any]], title: str) -> None:
    """Horizontal bars: mean time per slice in each stage, with a p95 marker."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    names = [s for s in STAGES if s in stages_ms] + [s for s in stages_ms if s not in STAGES]
    means = [stages_ms[s]["mean"] for s in names]
    p95 = [stages_ms[s]["p95"] for s in names]
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(names) + 1.4))
    ypos = list(range(len(names)))[::-1]
    ax.barh(ypos, means, color="#3572a5", label="mean")
    ax.scatter(p95, ypos, color="k", marker="|", s=120, label="p95")
    ax.set_yticks(ypos, [STAGE_LABELS.get(n, n) for n in names])
    ax.set_xlabel("ms per slice")
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    save_figure(fig, path)


def write_all(doc: dict[str, Any], *, per_stage_ms: Mapping[str, Sequence[float]], out: Path) -> dict[str, Any]:
    """Write the plots, bench.md and bench.json into `out`; return the `outputs` block."""
    out = Path(out)
    title = f"{doc['model']['card_id']} | {doc['backend']['name']} {doc['backend']['device']} | {doc['input']['slices']} slices"
    plot_latency(out / "latency.png", doc["steady_state"]["series_samples_ms"], per_stage_ms, title)
    plot_stages(out / "stages.png", doc["steady_state"]["stages_ms"], title)
    outputs = {"json": "bench.json", "markdown": "bench.md", "plots": ["latency.png", "stages.png"]}
    doc["outputs"] = outputs
    write_text_atomic(out / "bench.md", markdown(doc))
    write_text_atomic(out / "bench.json", json.dumps(doc, indent=2) + "\n")
    return outputs


def summary_line(doc: Mapping[str, Any]) -> str:
    """One line for the terminal: throughput, per-slice and per-series medians, warnings count."""
    ss = doc["steady_state"]
    return (
        f"{doc['backend']['name']} {doc['backend']['device']}: {ss['throughput']['slices_per_s']:.1f} slices/s, "
        f"series median {ss['series_ms']['median']:.0f} ms ({doc['input']['slices']} slices), "
        f"compute median {ss['stages_ms'].get('compute', {}).get('median', float('nan')):.2f} ms/slice, "
        f"cold start {doc['cold_start']['to_first_result_s']:.2f} s, peak RSS {doc['memory']['peak_rss_mb']:.0f} MiB, "
        f"{len(doc['warnings'])} warning(s)"
    )

"""Scale: model latency against input size, and peak memory against series length.

1. Latency against input size: the segmenter architecture (training.models.UNet25D, sized to
   the bundled model's parameter count) exported to ONNX at each size and run by ONNX Runtime
   on the CPU, batch 1 (needs torch for the export; skipped without it).
2. Peak RSS against series length: the same phantom generator at 40 and 400 slices (512x512);
   each length runs `runner.run` in a FRESH subprocess so its peak RSS is its own (VmHWM, which
   unlike ru_maxrss does not inherit the parent's peak across fork + exec).
   Goal: peak(400) / peak(40) <= 1.15 (the speed issue; cold_run.py measures the CLI's own peak too).

Usage (repo root): python benchmarks/scale.py [--lengths 40 400] [--sizes 128 256 384 512]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import _common  # noqa: F401
from _common import ROOT, command_line, default_model, env_block, env_lines, ms, time_calls, write_report

from edge_ich.bench import envinfo

GOAL_RSS_RATIO = 1.15

CHILD = r"""
import json, sys, time
from pathlib import Path
import psutil
from edge_ich.bench.envinfo import peak_rss_mb
series, model, out, threads = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
from edge_ich.runner import RunOptions, load_model, open_source, run
proc = psutil.Process()
base_rss = proc.memory_info().rss
lm = load_model(Path(model), "onnxrt", threads)
ropts = RunOptions(series=Path(series), model=Path(model), out=Path(out), backend="onnxrt", threads=threads)
src = open_source(ropts)
after_load = peak_rss_mb()
t0 = time.perf_counter()
res = run(ropts, model=lm, source=src, progress=False)
wall = time.perf_counter() - t0
peak = peak_rss_mb()
print(json.dumps({"slices": src.geometry.shape[0], "shape": list(src.geometry.shape),
                  "rss_at_start_mb": base_rss / 2**20, "peak_rss_after_load_mb": after_load,
                  "peak_rss_mb": peak, "run_s": wall, "torch_imported": "torch" in sys.modules,
                  "finding": res.report["finding"]["hemorrhage"]}))
"""

GEN = r"""
import sys
from pathlib import Path
from edge_ich.phantom.writers import write_dataset
write_dataset(Path(sys.argv[1]), cases=1, seed=0, layout="dicom", difficulty="standard", slices=int(sys.argv[2]),
              thickness=None, compress=False)
"""


def rss_for_length(n: int, model: Path, threads: int, tmp: Path) -> dict[str, Any]:
    """Generate an n-slice phantom (own subprocess), then segment it in a fresh subprocess."""
    ph = tmp / f"ph{n}"
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", GEN, str(ph), str(n)], check=True, cwd=ROOT)
    gen_s = time.perf_counter() - t0
    res = subprocess.run(
        [sys.executable, "-c", CHILD, str(ph / "case_000" / "dicom"), str(model), str(tmp / f"out{n}"), str(threads)],
        check=True,
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    out = json.loads(res.stdout.strip().splitlines()[-1])
    out["phantom_generation_s"] = gen_s
    out["mask_bytes_mb"] = out["shape"][0] * out["shape"][1] * out["shape"][2] / 2**20
    print(
        f"  {n} slices: peak RSS {out['peak_rss_mb']:.0f} MiB (after load {out['peak_rss_after_load_mb']:.0f}), "
        f"run {out['run_s']:.1f} s",
        flush=True,
    )
    return out


def latency_vs_size(
    sizes: list[int], in_ch: int, params: int | None, threads: int, tmp: Path, budget: float
) -> list[dict[str, Any]]:
    try:
        import torch  # noqa: F401
    except ImportError:
        return []
    import numpy as np
    from backend_matrix import build_torch, export_onnx, ort_session

    from edge_ich.bench.flops import graph_cost

    model, arch = build_torch(in_ch, params)
    rows = []
    for s in sizes:
        p = tmp / f"unet_{s}.onnx"
        export_onnx(model, in_ch, s, p)
        sess = ort_session(p, threads)
        x = np.random.default_rng(0).random((1, in_ch, s, s), dtype=np.float32)
        st = time_calls(
            lambda sess=sess, x=x: sess.run(None, {"input": x}), warmup=2, min_iters=5, max_iters=40, budget_s=budget
        )
        flops = graph_cost(p).flops
        rows.append(
            {
                "size": s,
                "ms_per_slice": ms(st),
                "flops_per_slice": flops,
                "gflops": flops / st.median / 1e9,
                "architecture": arch,
            }
        )
        print(f"  {s}x{s}: median {st.median * 1e3:.1f} ms", flush=True)
    return rows


def plot(doc: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    from edge_ich.bench.report import save_figure

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    lat = doc["latency_vs_size"]
    if lat:
        axes[0].plot([r["size"] for r in lat], [r["ms_per_slice"]["median"] for r in lat], "o-")
        axes[0].set_xlabel("input size (pixels per side)")
        axes[0].set_ylabel("ms per slice (median, ORT FP32)")
    rss = doc["rss_vs_length"]
    axes[1].bar([str(r["slices"]) for r in rss], [r["peak_rss_mb"] for r in rss], color="#3572a5", label="peak RSS")
    axes[1].bar(
        [str(r["slices"]) for r in rss],
        [r["peak_rss_after_load_mb"] for r in rss],
        color="#9cc",
        label="after model load",
    )
    axes[1].set_xlabel("slices in the series (512x512)")
    axes[1].set_ylabel("MiB")
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lengths", type=int, nargs="+", default=[40, 400])
    ap.add_argument("--sizes", type=int, nargs="+", default=[128, 256, 384, 512])
    ap.add_argument("--budget", type=float, default=2.0)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    from edge_ich.card import load_card

    threads = args.threads or envinfo.cpu_info()["usable_cpus"] or 1
    model_path, note = default_model()
    card = load_card(model_path)
    acct = envinfo.CpuAccount().start()
    with tempfile.TemporaryDirectory(prefix="edge-ich-scale-") as tmp:
        lat = latency_vs_size(
            args.sizes,
            card.in_channels,
            None if note.startswith("the tiny") else card.parameters,
            threads,
            Path(tmp),
            args.budget,
        )
        rss = [rss_for_length(n, model_path, threads, Path(tmp)) for n in args.lengths]
    load = acct.stop(threads_used=threads)
    ratio = rss[-1]["peak_rss_mb"] / rss[0]["peak_rss_mb"] if len(rss) > 1 else None
    doc = {
        "command": command_line(),
        "model": {"file": model_path.name, "note": note},
        "threads": threads,
        "latency_vs_size": lat,
        "rss_vs_length": rss,
        "rss_ratio_longest_over_shortest": ratio,
        "goal_rss_ratio": GOAL_RSS_RATIO,
        "machine_load": load,
        "environment": env_block(threads),
    }
    out = write_report("scale", doc, markdown(doc))
    plot(doc, out / "scale.png")
    print(f"peak RSS ratio {ratio}; wrote {out}")


def markdown(doc: dict[str, Any]) -> list[str]:
    lines = ["# Scale", "", f"Command: `{doc['command']}`", "", f"Model: {doc['model']['note']}.", ""]
    lines += ["## Latency against input size (model only, ONNX Runtime FP32, batch 1)", ""]
    if doc["latency_vs_size"]:
        a = doc["latency_vs_size"][0]["architecture"]
        lines += [
            f"Network: training.models.UNet25D base {a['base']} depth {a['depth']} ({a['parameters']} parameters), "
            "exported at each size.",
            "",
            "| input | GFLOP per slice | median ms | p95 ms | GFLOP/s | ms per megapixel |",
            "|---:|---:|---:|---:|---:|---:|",
        ]
        for r in doc["latency_vs_size"]:
            m = r["ms_per_slice"]
            lines.append(
                f"| {r['size']}x{r['size']} | {r['flops_per_slice'] / 1e9:.2f} | {m['median']:.1f} | {m['p95']:.1f} | "
                f"{r['gflops']:.1f} | {m['median'] / (r['size'] ** 2 / 1e6):.0f} |"
            )
    else:
        lines.append("Skipped: torch is not installed (it is needed only to export the network at each size).")
    lines += [
        "",
        "## Peak memory against series length (fresh process per length, `runner.run` with all outputs)",
        "",
        "| slices | shape | peak RSS after model load (MiB) | peak RSS (MiB) | mask alone (MiB) | run s |",
        "|---:|---|---:|---:|---:|---:|",
    ]
    for r in doc["rss_vs_length"]:
        lines.append(
            f"| {r['slices']} | {'x'.join(map(str, r['shape']))} | {r['peak_rss_after_load_mb']:.0f} | "
            f"{r['peak_rss_mb']:.0f} | {r['mask_bytes_mb']:.0f} | {r['run_s']:.1f} |"
        )
    ratio = doc["rss_ratio_longest_over_shortest"]
    if ratio is not None:
        lines += [
            "",
            f"**Peak RSS ratio, longest over shortest: {ratio:.2f}** (goal <= {doc['goal_rss_ratio']}: "
            f"{'met' if ratio <= doc['goal_rss_ratio'] else 'NOT met'}).",
        ]
    rss = doc["rss_vs_length"]
    if len(rss) > 1:
        a, b = rss[0], rss[-1]
        extra_vox = (b["shape"][0] - a["shape"][0]) * b["shape"][1] * b["shape"][2]
        grow = b["peak_rss_mb"] - a["peak_rss_mb"]
        lines += [
            "",
            f"What grows: {grow:.0f} MiB more for {b['slices'] - a['slices']} more slices, "
            f"{grow * 2**20 / max(extra_vox, 1):.2f} bytes per extra voxel. The streamed input does not grow "
            "(the reader holds a bounded queue of slices); the mask is one bounding box per slice with content "
            "(SliceMask), the model-grid probability is kept only for slices above the threshold, the NIfTI is "
            "streamed slice by slice and the SEG built from the slices with content. What still grows is one "
            "pydicom header per slice (kept for the SEG's references and the per-slice checks) and the "
            "per-slice lists of the report.",
        ]
    lines += ["", "![scale](scale.png)", ""] + env_lines(doc["environment"], doc["machine_load"])
    return lines


if __name__ == "__main__":
    main()

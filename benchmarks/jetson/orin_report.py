"""The report of run_orin.py: report_template.md's sections, filled from what was measured (never invented).

A field the run did not measure says so (`not run (dry run)`, `n/a: ...`); the estimate column
comes from estimate_orin.py's roofline for the module found, and stays labelled ESTIMATE.
"""

from __future__ import annotations

import datetime as _dt
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from run_orin import Run

STAGES = ("read", "preprocess", "h2d", "compute", "d2h", "postprocess", "write")
MODULE_KEYS = {"orin nano": "Orin Nano 8GB", "orin nx": "Orin NX 16GB", "agx orin": "AGX Orin 64GB"}


def _f(v: Any, nd: int = 2) -> str:
    return "n/a" if v is None else (f"{v:.{nd}f}" if isinstance(v, float) else str(v))


def _stage(doc: dict[str, Any] | None, stage: str, key: str = "median") -> str:
    if doc is None:
        return "not run"
    st = doc["steady_state"]["stages_ms"].get(stage)
    if st is None:
        return "0 (none on this backend)" if stage in ("h2d", "d2h") else "n/a"
    return _f(st.get(key))


def _estimate(run: Run) -> dict[str, tuple[float, float]] | None:
    """ESTIMATE range (ms per slice) per precision for the module found, at the model's own size."""
    model = ((run.machine.get("platform") or {}).get("jetson_model") or "").lower()
    key = next((v for k, v in MODULE_KEYS.items() if k in model), None)
    if key is None:
        return None
    from estimate_orin import estimate

    from edge_ich.bench.flops import graph_cost

    cost = graph_cost(run.args.model)
    est = estimate(cost.flops, cost.activation_elems_fused, cost.weight_params)[key]
    return {p: (e["expected_ms_low"], e["expected_ms_high"]) for p, e in est.items()}


def _setup(run: Run) -> list[str]:
    m, b = run.machine, run.benches
    any_doc = next((d for d in b.values() if d), None)
    env = (any_doc or {}).get("environment", {})
    jet = env.get("jetson") or {}
    versions = env.get("versions", {})
    plat, cuda, trt = m.get("platform", {}), m.get("cuda", {}), m.get("tensorrt", {})
    engines = "; ".join(
        f"{p}: {(bd['manifest'].get('engine_sha256') or 'no engine')[:16]} ({bd['manifest']['status']}, "
        f"profile {bd['manifest'].get('profile', {}).get('opt')})"
        for p, bd in run.builds.items()
    )
    rows = [
        ("module (`/proc/device-tree/model`)", plat.get("jetson_model") or f"not a Jetson ({plat.get('machine')})"),
        ("JetPack / L4T (`/etc/nv_tegra_release`)", plat.get("l4t") or "n/a"),
        ("TensorRT / CUDA / driver", f"{trt.get('version') or 'none'} / {cuda.get('runtime') or 'n/a'} / {cuda.get('driver') or 'none'}"),
        ("cuda-python, onnxruntime, edge-ich", f"{m.get('cuda_python') or 'none'}, {versions.get('onnxruntime') or 'n/a'}, {versions.get('edge-ich') or 'n/a'}"),
        ("power mode (`nvpmodel -q`)", jet.get("power_mode") or "n/a (not recorded)"),
        ("clocks (bench.json environment.jetson)", f"GPU {jet.get('gpu_clock_mhz', 'n/a')} MHz (max {jet.get('gpu_max_clock_mhz', 'n/a')}), CPU {jet.get('cpu_clock_mhz', 'n/a')} MHz; jetson_clocks: set by hand (README step 3)"),
        ("model", (any_doc or {}).get("model", {}).get("card_id", str(run.args.model))),
        ("engines (sha256, status, opt batch)", engines or "none"),
        ("commands", "listed under Commands below"),
    ]  # fmt: skip
    return ["| | |", "|---|---|", *[f"| {k} | {v} |" for k, v in rows]]


def _network(run: Run) -> list[str]:
    est = _estimate(run)
    lines = [
        "| precision | `edge-ich bench` compute median / p99 (ms per slice) | trtexec GPU compute median / p99 per inference / batch (ms) | ESTIMATE range (ms) | measured / estimate |",
        "|---|---:|---:|---:|---:|",
    ]
    for p in ("fp16", "int8"):
        doc = run.benches.get(p)
        med = _stage(doc, "compute") if doc else ("not run (dry run)" if run.args.dry_run else "not run")
        p99 = _stage(doc, "compute", "p99") if doc else ""
        tx = run.trtexec.get(p, {})
        g = tx.get("gpu_compute_ms") or {}
        n = run.args.batch
        trt = (
            f"{g['median'] / n:.3f} / {g.get('p99', float('nan')) / n:.3f}"
            if "median" in g
            else (tx.get("note") or ("not run (dry run)" if run.args.dry_run else "n/a"))
        )
        if est:
            lo, hi = est[p]
            rng = f"{lo:.2f}-{hi:.2f}"
            ratio = f"{float(med) / ((lo + hi) / 2):.2f}" if doc and med.replace(".", "").isdigit() else "n/a"
        else:
            rng, ratio = "n/a (no Orin module found)", "n/a"
        lines.append(f"| {p} | {med}{' / ' + p99 if p99 else ''} | {trt} | {rng} | {ratio} |")
    return lines


def _whole_path(run: Run) -> list[str]:
    cols = ("fp16", "int8", "onnxrt-cpu")
    docs = [run.benches.get(c) for c in cols]

    def cold(d: dict[str, Any] | None, k: str) -> str:
        return _f((d or {}).get("cold_start", {}).get(k)) if d else "not run"

    def ss(d: dict[str, Any] | None, k: str, sub: str = "median") -> str:
        v = ((d or {}).get("steady_state", {}).get(k) or {}) if d else None
        return "not run" if v is None else _f(v.get(sub))

    rows: list[tuple[str, list[str]]] = [
        ("cold start: card + engine/session (s)", [cold(d, "load_total_s") for d in docs]),
        ("cold start: first inference (s)", [cold(d, "first_inference_s") for d in docs]),
        ("load to first result (s)", [cold(d, "to_first_result_s") for d in docs]),
    ]
    rows += [(f"{st}, median ms/slice", [_stage(d, st) for d in docs]) for st in STAGES]
    rows += [
        ("series end to end, median (ms)", [ss(d, "series_ms") for d in docs]),
        ("series end to end, p99 (ms)", [ss(d, "series_ms", "p99") for d in docs]),
        ("last slice read -> result, median (ms)", [ss(d, "last_slice_to_result_ms") for d in docs]),
        ("throughput (slices/s)", [_f(d["steady_state"]["throughput"]["slices_per_s"], 1) if d else "not run" for d in docs]),
        ("peak RSS (MiB)", [_f(d["memory"]["peak_rss_mb"], 0) if d else "not run" for d in docs]),
        ("GPU memory in use, peak (MiB)", [_f(d["memory"]["gpu_used_mb_peak"], 0) if d else "not run" for d in docs]),
        ("warnings printed", [", ".join(w["code"] for w in d["warnings"]) or "none" if d else "not run" for d in docs]),
    ]  # fmt: skip
    head = ["| | fp16 TensorRT | int8 TensorRT | ONNX Runtime CPU |", "|---|---:|---:|---:|"]
    return head + [f"| {k} | {' | '.join(v)} |" for k, v in rows]


def _gates(run: Run) -> list[str]:
    """The CPU gate (from the manifest's validation) and, on the module, the engine's own gate."""
    out = []
    for p, bd in run.builds.items():
        val = bd["manifest"].get("validation") or {}
        if val.get("measured"):
            cand = val.get("candidate") or {}
            cpu = (
                f"{'PASS' if val.get('passed') else 'FAIL'}: Dice vs {val.get('reference')} drop {_f(val.get('dice_drop'), 4)} "
                f"(max {val.get('max_dice_drop')}), sensitivity drop {_f(val.get('sens_drop'), 4)} (max {val.get('max_sens_drop')}), "
                f"Dice vs FP32 {_f(cand.get('dice_vs_fp32'), 3)}, {val.get('n_heldout')} held-out slices"
            )
        else:
            cpu = f"not measured ({val.get('note', 'no gate')})"
        eng = val.get("engine_gate")
        if run.args.dry_run:
            eng_s = "not run (dry run)"
        elif isinstance(eng, dict):
            eng_s = f"{'PASS' if eng.get('passed') else 'FAIL'}, Dice vs FP32 {_f((eng.get('candidate') or {}).get('dice_vs_fp32'), 3)}"
        else:
            eng_s = "n/a"
        out.append(f"- {p}: CPU gate {cpu}; engine gate on the GPU: {eng_s}")
    return out


def write_report(run: Run) -> Path:
    """`<out>/README.md` in report_template.md's order; returns its path."""
    from edge_ich.outputs.atomic import write_text_atomic

    now = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    plat = run.machine.get("platform", {})
    title = plat.get("jetson_model") or f"{plat.get('machine')} (not a Jetson)"
    status = (
        f"Status: DRY RUN on {now}: CPU only, stopped before the first TensorRT call. No TensorRT number "
        "below; run `python benchmarks/jetson/run_orin.py` on the module to measure."
        if run.args.dry_run
        else f"Status: MEASURED on {now} by `python benchmarks/jetson/run_orin.py` (README steps 2, 4, 5, 6)."
    )
    lines = [f"# edge-ich on {title}: {'dry run' if run.args.dry_run else 'measured'}", "", status, "", "## Setup", ""]
    lines += _setup(run)
    lines += ["", "## Accuracy gates", "", *_gates(run)]
    lines += ["", f"## Network (compute only), per slice, batch {run.args.batch}", "", *_network(run)]
    lines += ["", "## The whole path (`edge-ich bench`, phantom series)", "", *_whole_path(run)]
    lines += ["", "## Commands", "", "```", *run.commands, "```"]
    if run.pending:
        lines += ["", "Left for the module (dry run):", "", "```", *run.pending, "```"]
    lines += [
        "",
        "## Findings",
        "",
        "To be written by whoever ran it: where the time goes, INT8 over FP16, measured vs ESTIMATE, anything unusual "
        "(see report_template.md).",
        "",
        "Attached: `bench.json`, `bench.md`, `latency.png`, `stages.png` per variant"
        + ("" if run.args.dry_run else ", `trtexec.txt`, `trtexec_times.json`")
        + ", `run.json` (commands).",
    ]
    path = Path(run.out) / "README.md"
    write_text_atomic(path, "\n".join(lines) + "\n")
    return path

"""The Markdown report of backend_matrix.py: the table, the peak it is set against, and what it shows."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from _common import env_lines

from edge_ich.bench import envinfo

LABELS = {
    "ort_fp32": "ONNX Runtime FP32",
    "ort_int8": "ONNX Runtime INT8 Q/DQ",
    "torch_fp32": "torch eager FP32 (NCHW)",
    "torch_cl_fp32": "torch channels_last FP32",
    "torch_cl_bf16": "torch channels_last BF16",
    "ort_fp32_bundled_file": "ONNX Runtime FP32, the bundled .onnx file itself",
}


def markdown(doc: dict[str, Any]) -> list[str]:
    arch = doc["model"]["torch_architecture"]
    lines = [
        "# Backend and precision matrix (CPU)",
        "",
        f"Command: `{doc['command']}`",
        "",
        f"Model: {doc['model']['note']} ({doc['model']['card_id']}). Every path runs the segmenter architecture of "
        f"`training.models.UNet25D` (base {arch['base']}, depth {arch['depth']}, {arch['parameters']} parameters"
        f"{', equal to the bundled card' if arch['matched'] else ''}) with seeded random weights, exported to ONNX "
        "(opset 17) for the ONNX Runtime paths; latency does not depend on the weight values. Where the bundled "
        "ONNX file has the same input size it is timed too (`ort_fp32_bundled_file`).",
        f"Batch 1 (one slice per call), {doc['threads']} threads for every path, input = real head-CT slices "
        "(pydicom-data CQ500 693_UNCR, pydicom J2K_pixelrep_mismatch) windowed and context-stacked like the runtime. "
        "INT8 = symmetric per-channel Q/DQ from `onnxruntime.quantization.quantize_static` calibrated on 16 such slices.",
        "",
        "## Practical peak of this machine (same run)",
        "",
        "| GEMM | n (n x n x n) | GFLOP/s (median) | GFLOP/s (best) |",
        "|---|---:|---:|---:|",
    ]
    for k, v in doc["gemm_peak"].items():
        lines.append(f"| {k} | {v['n']} | {v['gflops_median']:.2f} | {v['gflops_best']:.2f} |")
    lines += [
        "",
        "Medians on a shared machine are pulled down by other people's work; the best run is the least "
        "disturbed, so the fraction of peak below compares best with best.",
    ]
    for r in doc["results"]:
        lines += [
            "",
            f"## {r['size']}x{r['size']} ({r['flops_per_slice'] / 1e9:.2f} GFLOP per slice, counted from the ONNX graph)",
            "",
            "| path | median ms | p95 ms | CV | ratio to fastest | GFLOP/s (median) | best run / FP32 GEMM peak | max abs diff vs ORT FP32 | calls differing |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for name, p in sorted(r["paths"].items(), key=lambda kv: kv[1]["ms_per_slice"]["median"]):
            s = p["ms_per_slice"]
            lines.append(
                f"| {LABELS.get(name, name)} | {s['median']:.2f} | {s['p95']:.2f} | {s['cv'] * 100:.1f}% | "
                f"{p['ratio_to_fastest']:.2f} | {p['gflops']:.1f} | {p['fraction_of_peak'] * 100:.0f}% | "
                + (
                    f"{p['max_abs_diff_vs_ort_fp32']:.2g} | {p['call_disagreement_vs_ort_fp32'] * 100:.3f}% |"
                    if p["max_abs_diff_vs_ort_fp32"] is not None
                    else "n/a (trained weights) | n/a |"
                )
            )
    lines += ["", "![matrix](backend_matrix.png)", "", "## Reading it", ""]
    lines += analysis(doc)
    if doc["machine_load"]["busy"] and doc["threads"] > 1:
        lines.append(
            "- This run shared the CPU with other work. Multi-threaded torch suffers most from that (its "
            "OpenMP threads wait at every operator for a descheduled partner), so its numbers here are "
            "pessimistic; `python benchmarks/backend_matrix.py --threads 1` (report "
            "`backend_matrix_1thread/`) repeats the matrix on one thread, where that effect is absent."
        )
    lines += [""] + env_lines(doc["environment"], doc["machine_load"])
    return lines


def theoretical_peak(threads: int) -> dict[str, Any] | None:
    """FP32 FMA peak from /proc/cpuinfo MHz: cores x MHz x FLOPs per cycle (2 FMA pipes x vector lanes x 2)."""
    import re

    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return None
    mhz = [float(m) for m in re.findall(r"cpu MHz\s*:\s*([0-9.]+)", text)]
    flags = set(envinfo.cpu_info()["flags"])
    lanes = 16 if "avx512f" in flags else 8 if "avx2" in flags else 4
    if not mhz:
        return None
    per_cycle = 2 * lanes * 2
    return {
        "gflops": threads * max(mhz) / 1000.0 * per_cycle,
        "mhz": max(mhz),
        "flops_per_cycle_per_core": per_cycle,
        "assumption": f"{threads} cores x {max(mhz):.0f} MHz x 2 FMA pipes x {lanes} FP32 lanes x 2 FLOPs",
    }


def analysis(doc: dict[str, Any]) -> list[str]:
    """Which path is closest to the peak, and what would close the gap (from this run's numbers)."""
    arch = doc["model"]["torch_architecture"]
    flags = doc["environment"]["cpu"]["flags"]
    has_lowp = [f for f in flags if f in ("avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16", "amx_int8")]
    out = [
        f"- Ceiling: the best FP32 GEMM of this run, {doc['peak_fp32_gflops']:.1f} GFLOP/s on {doc['threads']} threads"
        + (
            f" (theoretical {doc['theoretical_fp32_gflops']['gflops']:.0f}: {doc['theoretical_fp32_gflops']['assumption']})"
            if doc.get("theoretical_fp32_gflops")
            else ""
        )
        + ". Each path's best run is set against it. "
        + (
            "This CPU has " + ", ".join(has_lowp) + ", so INT8/BF16 could exceed the FP32 ceiling."
            if has_lowp
            else "This CPU lists no VNNI, AVX512-BF16 or AMX instructions: BF16 is converted to FP32 to "
            "compute (the BF16 GEMM row shows the cost), so FP32 FMA is its ceiling too; INT8 has AVX2's 8-bit "
            "multiply-add into 16 bits (VPMADDUBSW) without VNNI's fused accumulate, which can beat FP32 by less "
            "than its 4x narrower data suggests."
        )
    ]
    for r in doc["results"]:
        best = max(r["paths"], key=lambda k: r["paths"][k]["fraction_of_peak"])
        p = r["paths"][best]
        ai = r["flops_per_slice"] / r["fp32_bytes_per_slice"]
        worst = min(r["paths"], key=lambda k: r["paths"][k]["fraction_of_peak"])
        out.append(
            f"- {r['size']}x{r['size']}: fastest **{LABELS.get(r['fastest'], r['fastest'])}**; closest to the "
            f"ceiling **{LABELS.get(best, best)}** at {p['fraction_of_peak'] * 100:.0f}%; furthest "
            f"{LABELS.get(worst, worst)} at {r['paths'][worst]['fraction_of_peak'] * 100:.0f}%. The network does "
            f"{ai:.0f} FLOPs per byte of FP32 activations and weights it must move (each convolution reading its "
            "input and writing its output once)"
            + (
                ": far more than a few GB/s of memory bandwidth needs to keep 2 cores' FMA units busy, so it is "
                "compute-bound and the gap is kernel efficiency, not memory."
                if ai > 10
                else ": few enough that memory traffic, not arithmetic, limits it."
            )
        )
    r0 = doc["results"][0]["paths"]
    torch_slower = r0["torch_fp32"]["ms_per_slice"]["median"] > r0["ort_fp32"]["ms_per_slice"]["median"]
    out += [
        (
            "- Why torch eager trails ONNX Runtime: "
            if torch_slower
            else "- Where torch eager loses time (although not slower in this run): "
        )
        + "it runs each convolution, BatchNorm and ReLU as a separate pass over the feature map; the ONNX export "
        "folds BatchNorm into the convolution weights, and ORT fuses the ReLU and runs convolutions in its blocked "
        "NCHWc layout. channels_last changes torch's layout but not its op-by-op execution.",
        "- What would close the remaining gap: on this CPU, little for the path closest to the ceiling: its convolutions "
        f"are small-channel ({arch['base']}-{arch['base'] * 2 ** (arch['depth'] - 1)}) GEMMs, which reach a lower fraction of peak than a square 2048 GEMM. The big levers "
        "are elsewhere: fewer FLOPs (256x256 input is 4x cheaper than 512x512; a narrower network), a CPU with VNNI "
        "(INT8) or AVX512-BF16/AMX (BF16), or the GPU path (TensorRT FP16/INT8, see benchmarks/jetson/). For torch: "
        "torch.compile or an ONNX export does the folding and fusion above.",
    ]
    return out

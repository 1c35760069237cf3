"""Backend and precision matrix on this CPU, with the machine's measured peak, in one run.

Same network, same input, same threads: ONNX Runtime FP32, ONNX Runtime INT8 (Q/DQ, made here
with onnxruntime.quantization.quantize_static), torch eager FP32, torch channels-last FP32
and channels-last BF16, at 256x256 and 512x512. The torch network is the segmenter
architecture from `training.models` (UNet25D), sized to the bundled model's parameter count
and exported to ONNX for the ORT paths, so every path runs the same graph. A large GEMM
(numpy and torch, FP32 and BF16) measured in the same run gives the machine's practical
peak; the model's FLOPs per slice (counted from the ONNX graph) give each path's fraction.

Inputs are real head-CT slices shipped by pydicom-data (CQ500 693_UNCR.dcm) and pydicom
(J2K_pixelrep_mismatch.dcm), windowed and stacked as the runtime does.

Usage (repo root, venv with torch): python benchmarks/backend_matrix.py [--sizes 128 256 512] [--budget 3]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import _common  # noqa: F401  (puts the repo root on sys.path)
import numpy as np
from _common import command_line, default_model, env_block, ms, time_calls_with_result, write_report
from backend_matrix_report import LABELS, markdown, theoretical_peak

from edge_ich.bench import envinfo
from edge_ich.bench.flops import graph_cost
from edge_ich.card import load_card
from edge_ich.preprocess import DEFAULT_WINDOWS, prepare_slice

PATHS = ("ort_fp32", "ort_int8", "torch_fp32", "torch_cl_fp32", "torch_cl_bf16")


def real_hu_slices() -> list[np.ndarray]:
    """Real head-CT slices in HU from pydicom's and pydicom-data's test files."""
    import pydicom
    from pydicom.data import get_testdata_file

    out = []
    for name in ("693_UNCR.dcm", "J2K_pixelrep_mismatch.dcm"):
        p = get_testdata_file(name)
        if not p:
            continue
        ds = pydicom.dcmread(p)
        hu = ds.pixel_array.astype(np.float32) * float(getattr(ds, "RescaleSlope", 1)) + float(
            getattr(ds, "RescaleIntercept", 0)
        )
        out.append(hu)
    if not out:
        sys.exit("no real CT test files found (pip install pydicom-data)")
    return out


def make_inputs(slices: list[np.ndarray], size: int, context: int, n: int) -> np.ndarray:
    """n network inputs [n, C, size, size]: real slices, flipped/rolled for variety, context stacked."""
    rng = np.random.default_rng(0)
    xs = []
    for i in range(n):
        hu = slices[i % len(slices)]
        if i // len(slices) % 2:
            hu = hu[:, ::-1]
        hu = np.roll(hu, int(rng.integers(-20, 20)), axis=0)
        prep = prepare_slice(hu, DEFAULT_WINDOWS, (size, size))
        xs.append(np.concatenate([prep] * (2 * context + 1), axis=0))
    return np.stack(xs).astype(np.float32)


def build_torch(in_ch: int, target_params: int | None) -> tuple[Any, dict[str, Any]]:
    """UNet25D from training/, with (base, depth) matching the bundled model's parameter count."""
    import torch

    from training.models import UNet25D, count_parameters

    torch.manual_seed(0)
    best = None
    for base in (8, 12, 16, 24, 32):
        for depth in (3, 4, 5):
            m = UNet25D(in_ch, base=base, depth=depth)
            n = count_parameters(m)
            if target_params is None and (base, depth) == (16, 4):
                return m.eval(), {"base": base, "depth": depth, "parameters": n, "matched": False}
            if target_params is not None and (best is None or abs(n - target_params) < abs(best[2] - target_params)):
                best = (base, depth, n)
    assert best is not None
    m = UNet25D(in_ch, base=best[0], depth=best[1])
    return m.eval(), {"base": best[0], "depth": best[1], "parameters": best[2], "matched": best[2] == target_params}


def export_onnx(model: Any, in_ch: int, size: int, path: Path) -> None:
    import torch

    x = torch.zeros(1, in_ch, size, size)
    torch.onnx.export(
        model,
        x,
        str(path),
        input_names=["input"],
        output_names=["logits"],
        dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}},
        opset_version=17,
        dynamo=False,
    )


def quantize_int8(fp32: Path, out: Path, calib: np.ndarray) -> None:
    """Symmetric per-channel INT8 Q/DQ (what TensorRT wants), calibrated on real slices."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.it = iter([{"input": calib[i : i + 1]} for i in range(len(calib))])

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.it, None)

    pre = out.with_name(out.stem + "_pre.onnx")
    quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=True)
    quantize_static(
        str(pre),
        str(out),
        Reader(),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QInt8,
        weight_type=QuantType.QInt8,
        extra_options={"ActivationSymmetric": True, "WeightSymmetric": True},
    )


def ort_session(path: Path, threads: int) -> Any:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3
    return ort.InferenceSession(str(path), sess_options=so, providers=["CPUExecutionProvider"])


def gemm_peak(threads: int, n: int = 2048, budget_s: float = 2.0) -> dict[str, dict[str, float]]:
    """Practical peak: an n x n x n matmul with numpy (FP32) and torch (FP32, BF16); GFLOP/s at the median."""
    import torch

    torch.set_num_threads(threads)
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    ta, tb = torch.from_numpy(a), torch.from_numpy(b)
    cases = {
        "numpy_fp32": lambda: np.matmul(a, b),
        "torch_fp32": lambda: torch.mm(ta, tb),
    }
    # BF16 GEMM is emulated (very slow) on CPUs without AVX512-BF16/AMX: size it down so it stays short
    nb = n if "avx512_bf16" in envinfo.cpu_info()["flags"] or "amx_bf16" in envinfo.cpu_info()["flags"] else 512
    cases["torch_bf16"] = (lambda x, y: lambda: torch.mm(x, y))(ta[:nb, :nb].bfloat16(), tb[:nb, :nb].bfloat16())
    out = {}
    for name, fn in cases.items():
        size = nb if name == "torch_bf16" else n
        st = time_calls_with_result(fn, warmup=1, min_iters=3, max_iters=20, budget_s=budget_s, shorten_slow=True)[0]
        f = 2.0 * size**3
        out[name] = {
            "gflops_median": f / st.median / 1e9,
            "gflops_best": f / st.min / 1e9,
            "n": size,
            "median_ms": st.median * 1e3,
        }
    return out


def run_size(
    size: int,
    card: Any,
    model_path: Path,
    torch_model: Any,
    threads: int,
    budget: float,
    slices: list[np.ndarray],
    tmp: Path,
) -> dict[str, Any]:
    import torch

    in_ch = card.in_channels
    fp32 = tmp / f"unet_{size}.onnx"
    export_onnx(torch_model, in_ch, size, fp32)
    int8 = tmp / f"unet_{size}_int8.onnx"
    calib = make_inputs(slices, size, card.context, 16)
    t0 = time.perf_counter()
    quantize_int8(fp32, int8, calib)
    quant_s = time.perf_counter() - t0
    x = make_inputs(slices, size, card.context, 1)
    cost = graph_cost(fp32)
    res: dict[str, Any] = {
        "size": size,
        "flops_per_slice": cost.flops,
        "weight_params": cost.weight_params,
        "fp32_bytes_per_slice": cost.bytes_moved(4, 4),
        "quantize_s": quant_s,
        "paths": {},
    }
    sess = {"ort_fp32": ort_session(fp32, threads), "ort_int8": ort_session(int8, threads)}
    if tuple(card.input_size) == (size, size):
        sess["ort_fp32_bundled_file"] = ort_session(model_path, threads)
    outs: dict[str, np.ndarray] = {}
    torch.set_num_threads(threads)
    tx = torch.from_numpy(x)
    import copy

    m_cl = copy.deepcopy(torch_model).to(memory_format=torch.channels_last)
    x_cl = tx.contiguous(memory_format=torch.channels_last)

    def torch_fp32() -> Any:
        with torch.inference_mode():
            return torch_model(tx)

    def run_cl(bf16: bool) -> Any:
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            return m_cl(x_cl)

    fns = {name: (lambda s=s, name=name: s.run(None, {s.get_inputs()[0].name: x})[0]) for name, s in sess.items()}
    fns["torch_fp32"] = torch_fp32
    fns["torch_cl_fp32"] = lambda: run_cl(False)
    fns["torch_cl_bf16"] = lambda: run_cl(True)
    order = ["ort_fp32", "ort_int8", "torch_fp32", "torch_cl_fp32", "torch_cl_bf16"] + [
        k for k in sess if k not in PATHS
    ]
    for name in order:
        st, y = time_calls_with_result(
            fns[name], warmup=2, min_iters=5, max_iters=40, budget_s=budget, shorten_slow=True
        )
        y = y.float().numpy() if hasattr(y, "numpy") else np.asarray(y)
        outs[name] = y
        res["paths"][name] = {
            "ms_per_slice": ms(st),
            "gflops": cost.flops / st.median / 1e9,
            "gflops_best": cost.flops / st.min / 1e9,
        }
        print(f"  {size} {name:>22}: median {st.median * 1e3:8.2f} ms  (CV {st.cv * 100:.1f}%, n {st.n})", flush=True)
    ref = outs["ort_fp32"]
    for name, y in outs.items():
        same_weights = name in PATHS  # the bundled file has its own trained weights: no numeric comparison
        res["paths"][name]["max_abs_diff_vs_ort_fp32"] = float(np.max(np.abs(y - ref))) if same_weights else None
        res["paths"][name]["call_disagreement_vs_ort_fp32"] = (
            float(np.mean((y > 0) != (ref > 0))) if same_weights else None
        )
    fastest = min(res["paths"], key=lambda k: res["paths"][k]["ms_per_slice"]["median"])
    for p in res["paths"].values():
        p["ratio_to_fastest"] = p["ms_per_slice"]["median"] / res["paths"][fastest]["ms_per_slice"]["median"]
    res["fastest"] = fastest
    return res


def plot(results: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    from edge_ich.bench.report import save_figure

    fig, axes = plt.subplots(1, len(results), figsize=(5 * len(results), 3.6))
    axes = np.atleast_1d(axes)
    for ax, r in zip(axes, results):
        names = [n for n in PATHS if n in r["paths"]]
        med = [r["paths"][n]["ms_per_slice"]["median"] for n in names]
        p95 = [r["paths"][n]["ms_per_slice"]["p95"] for n in names]
        ax.barh(range(len(names))[::-1], med, color="#3572a5")
        ax.scatter(p95, range(len(names))[::-1], marker="|", color="k", s=100, label="p95")
        ax.set_yticks(list(range(len(names))[::-1]), [LABELS[n] for n in names], fontsize=8)
        ax.set_xlabel("ms per slice (median, batch 1)")
        ax.set_title(f"{r['size']}x{r['size']}", fontsize=10)
        ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--sizes", type=int, nargs="+", default=None, help="input sizes (default: 256, 512 and the model's own size)"
    )
    ap.add_argument("--budget", type=float, default=3.0, help="seconds of timing per path and size")
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    threads = args.threads or envinfo.cpu_info()["usable_cpus"] or 1
    model_path, model_note = default_model()
    card = load_card(model_path)
    sizes = args.sizes or sorted(
        {256, 512, int(card.input_size[0])} if card.input_size[0] == card.input_size[1] else {256, 512}
    )
    acct = envinfo.CpuAccount().start()
    is_bundled = not model_note.startswith("the tiny")
    torch_model, arch = build_torch(card.in_channels, card.parameters if is_bundled else None)
    print(
        f"model: {model_note}; torch UNet25D base {arch['base']} depth {arch['depth']} ({arch['parameters']} params)",
        flush=True,
    )
    slices = real_hu_slices()
    peak = gemm_peak(threads)
    print("  GEMM peak GFLOP/s: " + ", ".join(f"{k} {v['gflops_median']:.1f}" for k, v in peak.items()), flush=True)
    with tempfile.TemporaryDirectory(prefix="edge-ich-matrix-") as tmp:
        results = [run_size(s, card, model_path, torch_model, threads, args.budget, slices, Path(tmp)) for s in sizes]
    # the ceiling: the best FP32 GEMM of the run (least disturbed on a shared machine); every path,
    # BF16 and INT8 included, is set against it (see analysis() for why)
    peak_fp32 = max(peak["numpy_fp32"]["gflops_best"], peak["torch_fp32"]["gflops_best"])
    for r in results:
        for _name, p in r["paths"].items():
            p["fraction_of_peak"] = p["gflops_best"] / peak_fp32
    load = acct.stop(threads_used=threads)
    env = env_block(threads)
    doc = {
        "command": command_line(),
        "model": {
            "file": model_path.name,
            "note": model_note,
            "card_id": card.card_id,
            "card_parameters": card.parameters,
            "torch_architecture": arch,
        },
        "threads": threads,
        "batch": 1,
        "gemm_peak": peak,
        "peak_fp32_gflops": peak_fp32,
        "theoretical_fp32_gflops": theoretical_peak(threads),
        "results": results,
        "machine_load": load,
        "environment": env,
    }
    usable = envinfo.cpu_info()["usable_cpus"] or 1
    out = write_report("backend_matrix" if threads == usable else f"backend_matrix_{threads}thread", doc, markdown(doc))
    plot(results, out / "backend_matrix.png")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()

"""One script for a Jetson Orin: engines, accuracy gate, benchmark, report (benchmarks/jetson/README.md).

On the module (TensorRT and a GPU present, `edge-ich doctor --backend tensorrt` passes):

    python benchmarks/jetson/run_orin.py                      # MAXN with jetson_clocks first (README step 3)

does README steps 2, 4, 5 and 6: calibration phantoms; the fp16 and int8 engines built on the
module from the FP32 model (precision ONNX, CPU gate, TensorRT build, the engine's own gate on the
GPU); `edge-ich bench` of fp16, int8 and ONNX Runtime on the CPU; the pinned trtexec
cross-check; and `reports/<module>-<power mode>/README.md` filled from what was measured.

    python benchmarks/jetson/run_orin.py --dry-run            # any machine, CPU only

goes the same way up to the first TensorRT call (phantoms, precision ONNX and their CPU gate, the
ONNX Runtime bench), then stops and prints what the module would run next; its report says DRY
RUN and carries no TensorRT number. Setting the power mode and locking clocks need sudo and stay
manual (README step 3); the script records what it finds.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from orin_report import write_report  # noqa: E402

from edge_ich.errors import EdgeIchError, MissingDependency  # noqa: E402

TRTEXEC = ("/usr/src/tensorrt/bin/trtexec", "trtexec")


@dataclass
class Run:
    """Everything the report needs, filled step by step."""

    args: argparse.Namespace
    out: Path
    machine: dict[str, Any] = field(default_factory=dict)
    builds: dict[str, dict[str, Any]] = field(default_factory=dict)  # precision -> manifest + lines
    benches: dict[str, dict[str, Any] | None] = field(default_factory=dict)  # variant -> bench.json
    trtexec: dict[str, dict[str, Any]] = field(default_factory=dict)
    commands: list[str] = field(default_factory=list)
    pending: list[str] = field(default_factory=list)  # what a dry run left for the module

    def say(self, line: str) -> None:
        print(f"run_orin: {line}", flush=True)


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:60] or "unknown"


def label_for(machine: dict[str, Any], dry_run: bool) -> str:
    """`orin-nano-...-maxn-super`: the module and power mode, one folder per configuration."""
    if dry_run:
        return "dry-run"
    plat = machine.get("platform", {})
    model = (plat.get("jetson_model") or plat.get("machine") or "machine").replace("NVIDIA Jetson ", "")
    power = _power_mode() or "unknown-power-mode"
    return _slug(f"{model} {power}")


def _power_mode() -> str | None:
    from edge_ich.bench.envinfo import jetson_info

    info = jetson_info() or {}
    mode = info.get("power_mode")
    return str(mode) if mode else None


def preflight(run: Run) -> None:
    """doctor: the tensorrt backend must be able to run (unless dry), else one clear line."""
    from edge_ich.doctor import diagnose

    rep = diagnose()
    run.machine = rep.machine.to_dict()
    trt = rep.backends["tensorrt"]
    run.say(f"tensorrt backend {'ready' if trt.ready else 'cannot run: ' + '; '.join(trt.missing)}")
    if not trt.ready and not run.args.dry_run:
        raise MissingDependency(
            "the tensorrt backend cannot run here (see edge-ich doctor); run with --dry-run to check the script on this machine"
        )


def make_phantoms(run: Run) -> Path:
    from edge_ich.phantom.writers import write_dataset

    calib = run.out / "calib"
    if calib.is_dir():
        shutil.rmtree(calib)
    a = run.args
    run.commands.append(
        f"edge-ich phantom --out {calib} --cases {a.cases} --seed {a.seed} --slices {a.slices} --size {a.size}"
    )
    run.say(
        write_dataset(
            calib,
            cases=a.cases,
            seed=a.seed,
            layout="dicom",
            difficulty="standard",
            slices=a.slices,
            thickness=None,
            compress=False,
            size=a.size,
        )  # fmt: skip
    )
    return calib


def build(run: Run, precision: str, calib: Path) -> None:
    """FP32 model -> precision ONNX -> CPU gate -> (on the module) TensorRT engine and its GPU gate."""
    from edge_ich.backends.manifest import load_manifest
    from edge_ich.builder.engine import BuildOptions, build_engine

    a = run.args
    engines = run.out / "engines"
    opts = BuildOptions(
        model=a.model, precision=precision, calib=calib, calib_slices=a.calib_slices, out=engines,
        workspace_mb=a.workspace, batch=a.batch, dla_core=a.dla_core, timing_cache=engines / "timing.cache",
        tensorrt=not a.dry_run,
    )  # fmt: skip
    engines.mkdir(parents=True, exist_ok=True)
    cmd = (
        f"edge-ich build-engine {a.model} --precision {precision} --calib {calib} --calib-slices {a.calib_slices} "
        f"--out {engines} --workspace {a.workspace} --batch {a.batch} --timing-cache {engines / 'timing.cache'}"
        + (f" --dla-core {a.dla_core}" if a.dla_core is not None else "")
    )
    run.commands.append(cmd)
    res = build_engine(opts, echo=lambda line: run.say(f"[{precision}] {line}"))
    m = load_manifest(res.manifest)
    run.builds[precision] = {"manifest": m.to_dict(), "plan": str(res.plan) if res.plan else None}
    if res.plan is None:
        if not a.dry_run:
            raise EdgeIchError(f"no {precision} engine was built (see the lines above)")
        run.pending.append(m.rebuild_command + "   # + the engine gate: run this script on the module")


def bench(run: Run, variant: str, model: Path, backend: str) -> None:
    from edge_ich.bench import BenchOptions
    from edge_ich.bench.core import run_bench

    a = run.args
    out = run.out / variant
    opts = BenchOptions(
        model=model, phantom=True, backend=backend, batch=a.batch, warmup_s=a.warmup, duration_s=a.duration,
        iterations=a.iterations, out=out,
    )  # fmt: skip
    from edge_ich.bench.core import equivalent_command

    run.commands.append(equivalent_command(opts))
    run.say(f"bench {variant}: {equivalent_command(opts)}")
    run.benches[variant] = run_bench(opts)


def find_trtexec() -> str | None:
    for cand in TRTEXEC:
        path = cand if Path(cand).is_file() else shutil.which(cand)
        if path:
            return str(path)
    return None


_GPU_COMPUTE = re.compile(r"GPU Compute Time: (.*)")


def parse_trtexec(text: str) -> dict[str, float]:
    """min/max/mean/median/percentiles (ms) of trtexec's `GPU Compute Time` summary line."""
    m = _GPU_COMPUTE.search(text)
    if not m:
        return {}
    out = {}
    for key, val in re.findall(r"(min|max|mean|median|percentile\(\d+%\)) = ([0-9.]+) ms", m.group(1)):
        out[key.replace("percentile(", "p").replace("%)", "")] = float(val)
    return out


def trtexec_check(run: Run, precision: str) -> None:
    """README step 5: the plan alone, CUDA graph on, no data transfers (same meaning on 10.3 and 11.x)."""
    exe = find_trtexec()
    plan = run.builds.get(precision, {}).get("plan")
    if exe is None or plan is None:
        run.trtexec[precision] = {"note": "trtexec not found" if exe is None else "no engine"}
        return
    from edge_ich.card import load_card

    card = load_card(run.args.model)
    shape = f"{run.args.batch}x{card.in_channels}x{card.input_size[0]}x{card.input_size[1]}"
    out = run.out / precision
    out.mkdir(parents=True, exist_ok=True)
    cmd = [
        exe, f"--loadEngine={plan}", f"--shapes={card.input_name}:{shape}", "--useCudaGraph", "--noDataTransfers",
        "--useSpinWait", "--warmUp=2000", f"--duration={max(1, int(run.args.duration or 30))}",
        "--percentile=90,95,99", f"--exportTimes={out / 'trtexec_times.json'}",
    ]  # fmt: skip
    run.commands.append(" ".join(cmd))
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    (out / "trtexec.txt").write_text(res.stdout + res.stderr)
    helptext = subprocess.run([exe, "--help"], capture_output=True, text=True, timeout=60)
    flags = [
        ln for ln in (helptext.stdout + helptext.stderr).splitlines() if re.search("cudagraph|datatransfer", ln, re.I)
    ]
    run.trtexec[precision] = {"rc": res.returncode, "gpu_compute_ms": parse_trtexec(res.stdout), "help": flags}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--model", type=Path, default=ROOT / "engines" / "ich_segmenter.onnx", help="FP32 ONNX with its card"
    )
    ap.add_argument("--out", type=Path, default=None, help="report folder (default: reports/<module>-<power mode>)")
    ap.add_argument("--dry-run", action="store_true", help="CPU only: stop before the first TensorRT call")
    ap.add_argument("--cases", type=int, default=20, help="calibration phantom cases")
    ap.add_argument("--slices", type=int, default=40, help="slices per phantom case")
    ap.add_argument("--size", type=int, default=512, help="phantom matrix size")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--calib-slices", type=int, default=500)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--workspace", type=int, default=1024, help="TensorRT workspace cap, MB")
    ap.add_argument("--dla-core", type=int, default=None, help="Orin NX / AGX only")
    ap.add_argument("--warmup", type=float, default=10.0, help="bench warm-up seconds")
    ap.add_argument("--duration", type=float, default=60.0, help="bench seconds per run")
    ap.add_argument("--iterations", type=int, default=None, help="instead of --duration: series passes per run")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    run = Run(args, Path("."))
    try:
        if not args.model.is_file():
            raise EdgeIchError(f"model not found: {args.model}")
        preflight(run)
        run.out = args.out or ROOT / "reports" / label_for(run.machine, args.dry_run)
        run.out.mkdir(parents=True, exist_ok=True)
        run.say(f"report folder {run.out}")
        calib = make_phantoms(run)
        bench(run, "onnxrt-cpu", args.model, "onnxrt")
        for precision in ("fp16", "int8"):
            build(run, precision, calib)
        if args.dry_run:
            run.say("dry run: stopped before the first TensorRT call; on the module this script goes on with:")
            for p in ("fp16", "int8"):
                plan = run.out / "engines" / f"{Path(args.model).stem}_{p}.plan"
                run.pending.append(f"edge-ich bench --phantom --backend tensorrt --model {plan} --batch {args.batch} "
                                   f"--warmup {args.warmup:g} --duration {args.duration:g} --out {run.out / p}")  # fmt: skip
                run.pending.append(f"trtexec --loadEngine={plan} --useCudaGraph --noDataTransfers ... (README step 5)")
            for line in run.pending:
                run.say(f"  {line}")
        else:
            for p in ("fp16", "int8"):
                bench(run, p, Path(run.builds[p]["plan"]), "tensorrt")
                trtexec_check(run, p)
        report = write_report(run)
        (run.out / "run.json").write_text(json.dumps({"commands": run.commands, "pending": run.pending}, indent=2))
        run.say(f"wrote {report}")
    except EdgeIchError as exc:
        print(f"run_orin: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""benchmarks/jetson/run_orin.py: the dry run goes on the CPU up to the first TensorRT call and writes its report."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from edge_ich.backends.cudainfo import probe_cuda

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "jetson" / "run_orin.py"
CPU_ONLY = importlib.util.find_spec("tensorrt") is None and not probe_cuda().has_gpu


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, cwd=ROOT, timeout=900)


@pytest.mark.slow
def test_dry_run_stops_before_tensorrt_and_reports(tmp_path: Path) -> None:
    out = tmp_path / "report"
    res = _run("--dry-run", "--out", str(out), "--cases", "3", "--slices", "16", "--size", "128",
               "--calib-slices", "32", "--warmup", "0", "--iterations", "1")  # fmt: skip
    assert res.returncode == 0, res.stderr[-2000:]
    assert "dry run: stopped before the first TensorRT call" in res.stdout
    engines = out / "engines"
    assert not list(engines.glob("*.plan"))  # nothing reached TensorRT
    for p in ("fp16", "int8"):
        m = json.loads((engines / f"ich_segmenter_{p}.manifest.json").read_text())
        assert m["status"] == "onnx-only" and (engines / f"ich_segmenter_{p}.onnx").is_file()
    int8 = json.loads((engines / "ich_segmenter_int8.manifest.json").read_text())["validation"]
    assert int8["measured"] and int8["passed"]  # the CPU gate ran on the Q/DQ model
    bench = json.loads((out / "onnxrt-cpu" / "bench.json").read_text())
    assert bench["backend"]["name"] == "onnxrt" and bench["steady_state"]["passes"] == 1
    report = (out / "README.md").read_text()
    assert "Status: DRY RUN" in report and "No TensorRT number" in report
    assert "| fp16 | not run (dry run) | not run (dry run) |" in report
    compute_row = next(ln for ln in report.splitlines() if ln.startswith("| compute, median ms/slice"))
    assert compute_row.split("|")[-2].strip().replace(".", "").isdigit()  # the ONNX Runtime number, measured
    assert "- int8: CPU gate PASS" in report
    pending = json.loads((out / "run.json").read_text())["pending"]
    assert any("build-engine" in c and "int8" in c for c in pending)
    assert any("--backend tensorrt" in c for c in pending)


@pytest.mark.skipif(not CPU_ONLY, reason="TensorRT or a GPU is present here")
def test_without_tensorrt_the_real_run_refuses_in_one_line(tmp_path: Path) -> None:
    res = _run("--out", str(tmp_path / "r"))
    assert res.returncode == 1
    err = res.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("run_orin: error: the tensorrt backend cannot run here")
    assert "--dry-run" in err[0] and not (tmp_path / "r").exists()

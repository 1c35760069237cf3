"""`edge-ich doctor` on this machine (a CPU machine: ONNX Runtime ready, TensorRT and a GPU absent)."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import pytest

from edge_ich.backends.cudainfo import probe_cuda
from edge_ich.backends.manifest import EngineManifest, manifest_path_for
from edge_ich.card import load_card, sha256_file
from edge_ich.cli import main

HAS_TRT = importlib.util.find_spec("tensorrt") is not None
cpu_only = pytest.mark.skipif(HAS_TRT or probe_cuda().has_gpu, reason="TensorRT or a GPU is present here")


def _doctor(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    rc = main(["doctor", *args])
    out = capsys.readouterr()
    return rc, out.out, out.err


@cpu_only
def test_text_report_on_a_cpu_machine(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, err = _doctor(capsys)
    assert rc == 0 and err == ""
    assert "onnxrt    READY" in out and "tensorrt  cannot run:" in out
    assert "TensorRT is not installed" in out and "no NVIDIA driver (libcuda)" in out
    assert "CPUExecutionProvider" in out
    assert "ich_segmenter.onnx" in out  # the bundled model, loadable by ONNX Runtime
    for cmd in ("sudo apt install -y nvidia-jetpack", "--system-site-packages", "pip install tensorrt-cu12",
                "cuda-python>=12.6,<13"):  # fmt: skip
        assert cmd in out


@cpu_only
def test_asking_for_tensorrt_fails_with_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, err = _doctor(capsys, "--backend", "tensorrt")
    assert rc == 1 and "install for the tensorrt backend" in out  # the report is still printed
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("edge-ich: error: the tensorrt backend cannot run here: TensorRT")
    assert "Traceback" not in err


def test_onnxrt_and_auto_run_here(capsys: pytest.CaptureFixture[str]) -> None:
    for backend in ("onnxrt", "auto"):
        rc, _out, err = _doctor(capsys, "--backend", backend)
        assert rc == 0, err


@cpu_only
def test_json_report(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = _doctor(capsys, "--json")
    assert rc == 0
    rep = json.loads(out)
    assert rep["backends"]["onnxrt"]["ready"] is True and rep["backends"]["tensorrt"]["ready"] is False
    assert rep["machine"]["cuda"]["devices"] == [] and rep["machine"]["tensorrt"]["version"] is None
    bundled = [e for e in rep["engines"] if e["path"].endswith("ich_segmenter.onnx")]
    assert bundled and bundled[0]["loads"]["onnxrt"] == "yes"
    assert set(rep["install"]) == {"jetpack6", "workstation"}


@cpu_only
def test_engine_files_are_judged(tmp_path: Path, tiny_model: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for f in (tiny_model, tiny_model.with_name("tiny.card.json")):
        shutil.copyfile(f, tmp_path / f.name)
    broken = tmp_path / "broken.onnx"  # its card describes other bytes
    broken.write_bytes(tiny_model.read_bytes() + b"\0")
    shutil.copyfile(tiny_model.with_name("tiny.card.json"), tmp_path / "broken.card.json")
    card = load_card(tiny_model)
    plan = tmp_path / "tiny_fp16.plan"
    plan.write_bytes(b"an engine built on an Orin")
    shutil.copyfile(tiny_model.with_name("tiny.card.json"), tmp_path / "tiny_fp16.card.json")
    EngineManifest(
        model_name="tiny", precision="fp16", source_model_file="tiny.onnx", source_model_sha256=card.model_sha256,
        onnx_file="tiny_fp16.onnx", onnx_sha256=card.model_sha256, preprocessing_sha256=card.preprocessing_hash(),
        io={}, recipe={}, validation={}, rebuild_command="edge-ich build-engine tiny_fp16.onnx --precision fp16",
        status="engine", engine_file=plan.name, engine_sha256=sha256_file(plan), tensorrt_version="10.3.0.30",
        compute_capability="8.7",
    ).save(manifest_path_for(plan))  # fmt: skip
    rc, out, _ = _doctor(capsys, "--json", "--engines", str(tmp_path))
    assert rc == 0
    loads = {Path(e["path"]).name: e["loads"] for e in json.loads(out)["engines"]}
    assert loads["tiny.onnx"]["onnxrt"] == "yes"
    assert "does not match its card" in loads["broken.onnx"]["onnxrt"]
    verdict = loads["tiny_fp16.plan"]["tensorrt"]
    assert verdict.startswith("no: ") and "TensorRT is not installed here" in verdict and "no CUDA GPU found" in verdict
    assert "Rebuild: edge-ich build-engine tiny_fp16.onnx" in verdict


def test_missing_engines_folder_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, _out, err = _doctor(capsys, "--engines", str(tmp_path / "nope"))
    assert rc == 1 and err.startswith("edge-ich: error: engines folder not found") and len(err.splitlines()) == 1

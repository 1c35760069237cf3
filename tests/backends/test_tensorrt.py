"""TensorRT backend: refusals that need no GPU on every machine; real engines under `@pytest.mark.gpu`."""

from __future__ import annotations

import ctypes
import importlib.util
import shutil
from pathlib import Path

import numpy as np
import pytest

from edge_ich.backends import open_backend
from edge_ich.backends.manifest import EngineManifest, MachineInfo, manifest_path_for
from edge_ich.backends.tensorrt import TensorRTBackend
from edge_ich.backends.tensorrt_cuda import host_view
from edge_ich.card import load_card, sha256_file
from edge_ich.errors import InputError, MissingDependency, ModelError

HAS_TRT = importlib.util.find_spec("tensorrt") is not None


def _plan_with_manifest(tmp_path: Path, tiny_model: Path) -> Path:
    card = load_card(tiny_model)
    plan = tmp_path / "tiny_fp16.plan"
    plan.write_bytes(b"bytes of an engine built elsewhere")
    EngineManifest(
        model_name="tiny",
        precision="fp16",
        source_model_file=tiny_model.name,
        source_model_sha256=card.model_sha256,
        onnx_file="tiny_fp16.onnx",
        onnx_sha256="ef" * 32,
        preprocessing_sha256=card.preprocessing_hash(),
        io={},
        recipe={},
        validation={},
        rebuild_command="edge-ich build-engine tiny_fp16.onnx --precision fp16",
        status="engine",
        engine_file=plan.name,
        engine_sha256=sha256_file(plan),
        tensorrt_version="10.3.0.30",
        compute_capability="8.7",
    ).save(manifest_path_for(plan))
    return plan


def test_backend_needs_a_plan(tiny_model: Path) -> None:
    with pytest.raises(ModelError, match=r"needs a \.plan engine"):
        TensorRTBackend(tiny_model, load_card(tiny_model))
    with pytest.raises(InputError, match="copy or mapped"):
        TensorRTBackend(tiny_model, load_card(tiny_model), io_mode="zero")


def test_plan_without_manifest_is_refused(tmp_path: Path, tiny_model: Path) -> None:
    plan = tmp_path / "lonely.plan"
    plan.write_bytes(b"x")
    with pytest.raises(ModelError, match="has no manifest"):
        TensorRTBackend(plan, load_card(tiny_model))


@pytest.mark.skipif(HAS_TRT, reason="tensorrt is installed here")
def test_without_tensorrt_the_way_to_install_it_is_named(tmp_path: Path, tiny_model: Path) -> None:
    plan = _plan_with_manifest(tmp_path, tiny_model)
    with pytest.raises(MissingDependency) as err:
        open_backend("tensorrt", plan, load_card(tiny_model))
    msg = str(err.value)  # TensorRT is no pip extra of ours: JetPack ships it, NVIDIA's wheels elsewhere
    assert "nvidia-jetpack" in msg and "pip install tensorrt-cu12" in msg and "edge-ich[trt]" not in msg


def test_auto_falls_back_to_onnxruntime_without_a_matching_engine(tmp_path: Path, tiny_model: Path) -> None:
    model = tmp_path / tiny_model.name
    shutil.copyfile(tiny_model, model)
    shutil.copyfile(tiny_model.with_name("tiny.card.json"), tmp_path / "tiny.card.json")
    _plan_with_manifest(tmp_path, tiny_model)  # a plan for another machine lies beside the model
    if MachineInfo.probe().has_gpu:
        pytest.skip("a GPU is present")
    with open_backend("auto", model, load_card(model), threads=1) as be:
        assert be.info.name == "onnxrt"


@pytest.mark.skipif(importlib.util.find_spec("cuda") is None, reason="cuda-python not installed")
def test_cuda_python_without_gpu_is_a_clear_error() -> None:
    from edge_ich.backends.tensorrt_cuda import CudaRuntime

    if MachineInfo.probe().has_gpu:
        pytest.skip("a GPU is present")
    with pytest.raises(ModelError, match="no CUDA GPU"):
        CudaRuntime()


def test_host_view_aliases_memory() -> None:
    raw = (ctypes.c_byte * 32)()
    v = host_view(ctypes.addressof(raw), 32, np.dtype(np.float32), (2, 4))
    v[1, 2] = 1.5
    assert np.frombuffer(bytes(raw), np.float32)[6] == 1.5


# --------------------------------------------------------------------------- GPU only


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from edge_ich.cli import main
    from tests.buildnets import build_deep_model, write_calib_dir

    root = tmp_path_factory.mktemp("trt")
    calib = write_calib_dir(root / "phantoms", cases=4)
    model = build_deep_model(root / "engines", "deep")
    out = root / "engines" / "build"
    for p in ("int8", "fp16", "fp32"):
        assert (
            main(
                ["build-engine", str(model), "--precision", p, "--calib", str(calib), "--out", str(out), "--batch", "4"]
            )
            == 0
        )
    return {"model": model, "out": out, "calib": calib}


@pytest.mark.gpu
@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
@pytest.mark.parametrize("io_mode,graph", [("copy", False), ("copy", True), ("mapped", False)])
def test_engine_matches_onnxruntime(built: dict[str, Path], precision: str, io_mode: str, graph: bool) -> None:
    from edge_ich.backends.onnxrt import OnnxRuntimeBackend
    from edge_ich.builder.calib import read_folder, split_slices

    card = load_card(built["model"])
    x = split_slices(read_folder(built["calib"])[0], card, n_calib=8, n_heldout=8).heldout.inputs[:6]  # 6 > opt batch 4
    plan = built["out"] / f"deep_{precision}.plan"
    plan_card = load_card(built["out"] / f"deep_{precision}.onnx")
    with (
        OnnxRuntimeBackend(built["model"], card, threads=1) as ref,
        TensorRTBackend(plan, plan_card, io_mode=io_mode, cuda_graph=graph) as be,
    ):
        want, got = ref.infer(x), be.infer(x)
        assert got.shape == want.shape
        agree = np.mean((got > 0) == (want > 0))
        assert agree > 0.99
        assert be.last_times.compute > 0 and (io_mode == "mapped" or be.last_times.h2d > 0)
        be.infer(x[:3])  # another batch size (re-captured graph when on)
        assert be.info.precision == precision


@pytest.mark.gpu
def test_auto_picks_the_matching_engine(built: dict[str, Path]) -> None:
    from edge_ich.backends.manifest import find_matching_plan

    card = load_card(built["model"])
    plan = find_matching_plan(built["model"], card)
    assert plan is not None and plan.name == "deep_int8.plan"
    with open_backend("auto", built["model"], card) as be:
        assert be.info.name == "tensorrt"

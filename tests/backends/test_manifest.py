"""Engine manifests: TensorRT version rules, refusals on every mismatch, plan discovery, option checks."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from edge_ich.backends.manifest import (
    EngineManifest,
    EngineMismatch,
    MachineInfo,
    TrtVersion,
    check_manifest,
    find_matching_plan,
    load_manifest,
    manifest_path_for,
    mismatches,
)
from edge_ich.builder.engine import BuildOptions
from edge_ich.builder.trt import BuildSpec
from edge_ich.card import Window, load_card, sha256_file
from edge_ich.errors import InputError, ModelError

ORIN = MachineInfo(
    tensorrt="10.3.0.30", cuda_runtime="12.6", cuda_driver="12.6", gpu_name="Orin", compute_capability="8.7"
)


def test_version_parsing_10_3_and_11() -> None:
    v10 = TrtVersion.parse("10.3.0.30")
    v11 = TrtVersion.parse("11.4.1")
    assert (v10.major, v10.minor, v10.patch, v10.build) == (10, 3, 0, 30)
    assert (v11.major, v11.minor, v11.patch, v11.build) == (11, 4, 1, None)
    assert not v10.strongly_typed_by_default and v11.strongly_typed_by_default
    assert v10.supported and v11.supported and not TrtVersion.parse("8.6.1").supported
    assert TrtVersion.parse("10.3").patch == 0 and str(TrtVersion.parse("10.3")) == "10.3.0"
    assert TrtVersion.parse("10.13.3.9+cuda12.9").minor == 13
    assert v10 < v11
    assert v10.same_engine_format(TrtVersion.parse("10.3.0"))  # build number unknown on one side
    assert not v10.same_engine_format(TrtVersion.parse("10.3.0.31"))
    assert not v10.same_engine_format(TrtVersion.parse("10.4.0.30"))
    with pytest.raises(ModelError):
        TrtVersion.parse("ten")


def _written(tmp_path: Path, tiny_model: Path) -> tuple[Path, EngineManifest]:
    """A hand-written manifest for a (fake-bytes) plan built on an Orin with TensorRT 10.3."""
    card = load_card(tiny_model)
    plan = tmp_path / "tiny_int8.plan"
    plan.write_bytes(b"not a real engine; only its hash matters here")
    m = EngineManifest(
        model_name="tiny",
        precision="int8",
        source_model_file=tiny_model.name,
        source_model_sha256=card.model_sha256,
        onnx_file="tiny_int8.onnx",
        onnx_sha256="ab" * 32,
        preprocessing_sha256=card.preprocessing_hash(),
        io={},
        recipe={},
        validation={},
        rebuild_command="edge-ich build-engine out/tiny_int8.onnx --precision int8 --out out",
        status="engine",
        engine_file=plan.name,
        engine_sha256=sha256_file(plan),
        tensorrt_version="10.3.0.30",
        gpu_name="Orin",
        compute_capability="8.7",
    )
    m.save(manifest_path_for(plan))
    return plan, m


def test_matching_manifest_passes(tmp_path: Path, tiny_model: Path) -> None:
    plan, m = _written(tmp_path, tiny_model)
    loaded = load_manifest(plan)
    assert loaded == m
    assert mismatches(loaded, load_card(tiny_model), ORIN, plan) == []
    check_manifest(loaded, load_card(tiny_model), ORIN, plan)


@pytest.mark.parametrize("what", ["onnx", "tensorrt", "capability", "preprocessing", "plan_bytes", "onnx_only"])
def test_mismatch_is_refused_with_rebuild_command(tmp_path: Path, tiny_model: Path, what: str) -> None:
    plan, m = _written(tmp_path, tiny_model)
    card, machine = load_card(tiny_model), ORIN
    expect = {
        "onnx": "built from another ONNX",
        "tensorrt": "built with TensorRT 10.3.0.30, this machine has 11.4.1",
        "capability": "compute capability 8.7",
        "preprocessing": "another preprocessing",
        "plan_bytes": "sha256 differs",
        "onnx_only": "not a built engine",
    }[what]
    if what == "onnx":
        card = dataclasses.replace(card, model_sha256="cd" * 32)
    elif what == "tensorrt":
        machine = dataclasses.replace(ORIN, tensorrt="11.4.1")
    elif what == "capability":
        machine = dataclasses.replace(ORIN, compute_capability="9.0", gpu_name="H100")
    elif what == "preprocessing":
        card = dataclasses.replace(card, windows=[Window("brain", 40.0, 100.0), *card.windows[1:]])
    elif what == "plan_bytes":
        plan.write_bytes(b"another engine")
    else:
        m = dataclasses.replace(m, status="onnx-only", engine_sha256=None)
    with pytest.raises(EngineMismatch) as err:
        check_manifest(m, card, machine, plan)
    msg = str(err.value)
    assert expect in msg
    assert "Rebuild it on this machine: edge-ich build-engine out/tiny_int8.onnx --precision int8" in msg
    assert "\n" not in msg


def test_no_gpu_and_no_tensorrt_are_named(tmp_path: Path, tiny_model: Path) -> None:
    plan, m = _written(tmp_path, tiny_model)
    why = mismatches(m, load_card(tiny_model), MachineInfo(), plan)
    assert "TensorRT is not installed here" in why and "no CUDA GPU found" in why


def test_manifest_errors(tmp_path: Path) -> None:
    plan = tmp_path / "x.plan"
    with pytest.raises(ModelError, match="has no manifest"):
        load_manifest(plan)
    manifest_path_for(plan).write_text("{not json")
    with pytest.raises(ModelError, match="not readable JSON"):
        load_manifest(plan)
    manifest_path_for(plan).write_text(json.dumps({"schema_version": 99}))
    with pytest.raises(ModelError, match="schema_version"):
        load_manifest(plan)
    assert manifest_path_for(Path("a/m_int8.onnx")) == Path("a/m_int8.manifest.json")


def test_this_machine_has_no_gpu_so_nothing_matches(tmp_path: Path, tiny_model: Path) -> None:
    info = MachineInfo.probe()
    if info.has_gpu:
        pytest.skip("a GPU is present: the hand-written Orin manifest could match by chance")
    assert info.compute_capability is None and info.gpu_name is None  # cuda-python, if installed, reports error 35
    plan, _ = _written(tmp_path, tiny_model)
    model = tmp_path / tiny_model.name
    model.write_bytes(tiny_model.read_bytes())
    assert find_matching_plan(model, load_card(tiny_model)) is None


def test_build_spec_profile_and_trtexec_line() -> None:
    spec = BuildSpec("input", 9, 256, 256, opt_batch=4, workspace_mb=512, dla_core=1, timing_cache=Path("tc.cache"))
    mn, opt, mx = spec.shapes()
    assert mn == (1, 9, 256, 256) and opt == (4, 9, 256, 256) and mx == (8, 9, 256, 256)
    line = spec.trtexec_line(Path("m_int8.onnx"), Path("m_int8.plan"))
    for flag in (
        "--stronglyTyped",
        "--optShapes=input:4x9x256x256",
        "--memPoolSize=workspace:512M",
        "--useDLACore=1",
        "--allowGPUFallback",
        "--timingCacheFile=tc.cache",
        "--useCudaGraph",
        "--noDataTransfers",
    ):
        assert flag in line
    assert "--int8" not in line and "--fp16" not in line  # precision comes from the ONNX
    for bad in (
        {"opt_batch": 0},
        {"optimization_level": 6},
        {"workspace_mb": 8},
        {"dla_core": 2},
        {"opt_batch": 4, "max_batch": 2},
    ):
        with pytest.raises(InputError):
            BuildSpec("input", 9, 64, 64, **bad)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "field,value,msg",
    [
        ("precision", "int4", "--precision must be"),
        ("quantizer", "tensorrt", "--quantizer must be"),
        ("calib_method", "mse", "calibration method"),
        ("max_dice_drop", 1.5, "between 0 and 1"),
        ("calib_slices", 4, "at least 8"),
        ("calib", Path("/nonexistent/calib"), "not found"),
    ],
)
def test_build_options_are_validated(tiny_model: Path, field: str, value: object, msg: str) -> None:
    opts = dataclasses.replace(BuildOptions(model=tiny_model), **{field: value})
    with pytest.raises(InputError, match=msg):
        opts.validate()


def test_card_for_plan_is_tied_by_the_manifest(tmp_path: Path, tiny_model: Path) -> None:
    from edge_ich.backends.manifest import card_for_plan

    plan, m = _written(tmp_path, tiny_model)
    card = dataclasses.replace(
        load_card(tiny_model), model_file="tiny_int8.onnx", model_sha256=m.onnx_sha256, precision="int8"
    )
    with pytest.raises(ModelError, match="has no card"):
        card_for_plan(plan)
    card.save(tmp_path / "tiny_int8.card.json")
    got = card_for_plan(plan)
    assert got.precision == "int8" and got.model_sha256 == m.onnx_sha256
    dataclasses.replace(card, model_sha256="00" * 32).save(tmp_path / "tiny_int8.card.json")
    with pytest.raises(EngineMismatch, match="describes another ONNX"):
        card_for_plan(plan)

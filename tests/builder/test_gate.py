"""`edge-ich build-engine` end to end on real DICOM folders: INT8 that passes, and builds the gate refuses."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edge_ich.builder import gate
from edge_ich.builder.calib import LabelledSeries, read_folder, split_slices
from edge_ich.builder.precision import inspect_qdq, make_int8
from edge_ich.card import load_card, sha256_file
from edge_ich.cli import main
from edge_ich.sources.volume import ArraySource
from tests.buildnets import build_deep_model, synthetic_head, write_calib_dir


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("gate")
    return {
        "phantoms": write_calib_dir(root / "phantoms", cases=4, slices=12),
        "air": write_calib_dir(root / "air", cases=2, slices=12, air_only=True),
        "deep": build_deep_model(root / "models", "deep", bone_gain=4.0),
        "outlier": build_deep_model(root / "models", "outlier", bone_gain=2000.0),
    }


def _final_files(out: Path) -> list[str]:
    return sorted(p.name for p in out.rglob("*") if p.is_file()) if out.exists() else []


def test_int8_build_writes_qdq_onnx_card_and_manifest(
    data: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    rc = main(
        [
            "build-engine",
            str(data["deep"]),
            "--precision",
            "int8",
            "--calib",
            str(data["phantoms"]),
            "--out",
            str(out),
            "--max-sens-drop",
            "0.05",
        ]
    )
    text = capsys.readouterr().out
    assert rc == 0, text
    onnx_path = out / "deep_int8.onnx"
    assert _final_files(out) == ["deep_int8.card.json", "deep_int8.manifest.json", "deep_int8.onnx"]
    s = inspect_qdq(onnx_path)
    assert s.per_channel_weights and set(s.per_channel_weights.values()) == {0} and s.symmetric
    card = load_card(onnx_path)  # verifies the new sha256
    assert card.precision == "int8" and card.model_sha256 == sha256_file(onnx_path)
    m = json.loads((out / "deep_int8.manifest.json").read_text())
    assert m["status"] == "onnx-only" and m["engine_sha256"] is None
    assert m["onnx_sha256"] == card.model_sha256 and m["source_model_sha256"] == load_card(data["deep"]).model_sha256
    assert m["preprocessing_sha256"] == card.preprocessing_hash()
    assert m["recipe"]["quantizer"] == "ort" and m["recipe"]["calibration_method"] == "minmax"
    assert len(m["recipe"]["calibration_set_sha256"]) == 64
    assert m["validation"]["passed"] and m["validation"]["reference"] == "truth"
    assert m["validation"]["dice_drop"] <= 0.01
    assert m["validation"]["max_sens_drop"] == 0.05 and m["validation"]["max_dice_drop"] == 0.01
    assert set(m["validation"]["drops"]) == {"dice_vs_truth", "sens_vs_truth", "dice_vs_fp32", "sens_vs_fp32"}
    assert m["profile"]["opt"] == [4, 9, 64, 64]
    # The gate prints FP32 vs INT8 Dice (truth and FP32) and CPU latency for both.
    fp32_line = next(line for line in text.splitlines() if line.strip().startswith("fp32"))
    int8_line = next(line for line in text.splitlines() if line.strip().startswith("int8 "))
    for line in (fp32_line, int8_line):
        assert "Dice vs truth" in line and "Dice vs FP32" in line and "ms/slice" in line and "n/a" not in line
    assert "PASS" in text
    assert "TensorRT engine not built" in text
    assert f"edge-ich build-engine {onnx_path} --precision int8" in text
    assert (
        "trtexec --onnx=" in text
        and "--stronglyTyped" in text
        and "--useCudaGraph" in text
        and "--noDataTransfers" in text
    )


def test_gate_refuses_int8_whose_activation_range_swallows_the_signal(
    data: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    rc = main(
        [
            "build-engine",
            str(data["outlier"]),
            "--precision",
            "int8",
            "--calib",
            str(data["phantoms"]),
            "--out",
            str(out),
        ]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1
    assert len(err) == 1 and err[0].startswith("edge-ich: error: int8 refused by the accuracy gate")
    assert (
        "Dice drop vs truth" in err[0]
        and "(max 0.01;" in err[0]
        and "vs FP32" in err[0]
        and "nothing written" in err[0]
    )
    drop = float(err[0].split("Dice drop vs truth ")[1].split()[0])
    assert drop > 0.5
    assert _final_files(out) == []


def test_gate_refuses_air_only_calibration(
    data: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    rc = main(
        ["build-engine", str(data["deep"]), "--precision", "int8", "--calib", str(data["air"]), "--out", str(out)]
    )
    err = capsys.readouterr().err.strip()
    assert rc == 1
    assert "none of the" in err and "holds a bleed" in err and "nothing written" in err
    assert _final_files(out) == []


def test_air_calibrated_int8_is_refused_on_representative_heldout(data: dict[str, Path], tmp_path: Path) -> None:
    """Same model that passes above: calibrated on air only, it fails on real head slices."""
    model = data["deep"]
    card = load_card(model)
    air = [
        LabelledSeries(
            ArraySource(synthetic_head(50 + k, 12, 128, air_only=True)[0].astype(np.float32), (5.0, 1.5, 1.5)),
            f"air{k}",
            np.zeros((12, 128, 128), np.uint8),
        )
        for k in range(2)
    ]
    heads, _ = read_folder(data["phantoms"])
    calib = split_slices(air, card, n_calib=16, n_heldout=4).calib
    held = split_slices(heads, card, n_calib=16, n_heldout=16).heldout
    q = tmp_path / "air_int8.onnx"
    make_int8(model, q, card.input_name, calib.inputs)
    report = gate.run_gate(model, q, card, held, "int8")
    assert report.n_bleed_slices > 0 and report.fp32.dice_vs_truth and report.fp32.dice_vs_truth > 0.8
    assert not report.passed and report.dice_drop is not None and report.dice_drop > 0.5
    with pytest.raises(gate.GateRefused, match="Dice drop"):
        gate.enforce(report)


def test_int8_without_calib_is_refused(
    data: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc = main(["build-engine", str(data["deep"]), "--precision", "int8", "--out", str(tmp_path / "o")])
    assert rc == 1 and "needs --calib" in capsys.readouterr().err
    assert _final_files(tmp_path / "o") == []


def test_fp16_without_gpu_says_not_measured(
    data: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    rc = main(
        ["build-engine", str(data["deep"]), "--precision", "fp16", "--calib", str(data["phantoms"]), "--out", str(out)]
    )
    text = capsys.readouterr().out
    assert rc == 0
    assert "fp16: not measured" in text and "200x slower" in text
    m = json.loads((out / "deep_fp16.manifest.json").read_text())
    assert m["precision"] == "fp16" and m["validation"]["measured"] is False
    assert load_card(out / "deep_fp16.onnx").precision == "fp16"


def test_finishing_from_the_precision_onnx_keeps_its_recipe(
    data: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first = tmp_path / "first"
    assert (
        main(
            [
                "build-engine",
                str(data["deep"]),
                "--precision",
                "int8",
                "--calib",
                str(data["phantoms"]),
                "--out",
                str(first),
            ]
        )
        == 0
    )
    before = json.loads((first / "deep_int8.manifest.json").read_text())
    second = tmp_path / "target"
    assert main(["build-engine", str(first / "deep_int8.onnx"), "--precision", "int8", "--out", str(second)]) == 0
    assert "conversion and gate were done before" in capsys.readouterr().out
    after = json.loads((second / "deep_int8.manifest.json").read_text())
    assert after["onnx_sha256"] == before["onnx_sha256"] and after["recipe"] == before["recipe"]
    assert after["validation"] == before["validation"] and after["source_model_sha256"] == before["source_model_sha256"]
    # Asking an INT8 ONNX for another precision is refused.
    assert (
        main(["build-engine", str(first / "deep_int8.onnx"), "--precision", "fp16", "--out", str(tmp_path / "x")]) == 1
    )
    assert "already a precision ONNX (int8)" in capsys.readouterr().err


@pytest.mark.slow
def test_int8_on_an_edge_ich_phantom_folder(
    data: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The documented route: `edge-ich phantom` then `build-engine --calib` on its DICOM folder."""
    phantoms, out = tmp_path / "ph", tmp_path / "out"
    assert (
        main(["phantom", "--out", str(phantoms), "--cases", "2", "--slices", "8", "--thickness", "5", "--seed", "3"])
        == 0
    )
    capsys.readouterr()
    rc = main(["build-engine", str(data["deep"]), "--precision", "int8", "--calib", str(phantoms), "--out", str(out)])
    cap = capsys.readouterr()
    assert "strata by truth" in cap.out and "only 16 slices available" in cap.out  # 2 cases x 8 slices, all read
    assert any(line.strip().startswith("fp32  Dice vs truth") for line in cap.out.splitlines())
    assert any(line.strip().startswith("int8  Dice vs truth") for line in cap.out.splitlines())
    if "PASS" in cap.out:
        assert rc == 0 and (out / "deep_int8.manifest.json").is_file()
    else:
        assert rc == 1 and "refused by the accuracy gate" in cap.err and _final_files(out) == []

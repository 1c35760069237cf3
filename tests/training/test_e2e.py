"""Tiny end to end: phantoms -> classifier -> CAM -> pseudo-masks -> segmenter -> ONNX + card -> edge_ich runtime backend.

Also the same `train` command under torchrun with two CPU processes (gloo).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")

from edge_ich.backends import open_backend
from edge_ich.card import load_card
from edge_ich.preprocess import DEFAULT_WINDOWS, prepare_volume
from training.__main__ import main

TINY = [
    "--size",
    "64",
    "--slices",
    "10",
    "--seq-len",
    "6",
    "--cls-steps",
    "6",
    "--seg-steps",
    "6",
    "--seg-batch",
    "4",
    "--cls-batch",
    "2",
    "--seg-base",
    "4",
]
REPO = Path(__file__).resolve().parents[2]


def test_tiny_weakly_supervised_run_exports_a_model_the_runtime_runs(tmp_path: Path) -> None:
    out = tmp_path / "m" / "tiny_ws.onnx"
    rc = main(
        [
            "train",
            "--cases",
            "6",
            "--val-cases",
            "2",
            "--test-cases",
            "2",
            "--work",
            str(tmp_path / "w"),
            "--cache",
            str(tmp_path / "c"),
            "--out",
            str(out),
            "--name",
            "tiny_ws",
            *TINY,
        ]
    )
    assert rc == 0
    card = load_card(out)  # verifies the sha256 too
    assert card.name == "tiny_ws" and card.input_size == (64, 64) and card.context == 1
    assert card.in_channels == 9 and list(card.windows) == list(DEFAULT_WINDOWS)
    assert card.parameters and card.flops_per_slice and card.flops_per_slice > card.parameters
    assert 0 < card.threshold < 1
    assert card.training["voxel_truth_used"] is False
    assert card.training["onnx_vs_torch_max_abs_diff"] <= 1e-4
    assert "segmenter" in card.evaluation and "threshold_baseline" in card.evaluation
    # stage outputs exist, so a rerun resumes instead of retraining
    work = tmp_path / "w"
    for f in ("classifier.pt", "cams_train.npz", "segmenter.pt", "segmenter_st1.pt", "summary.json"):
        assert (work / f).is_file(), f
    summary = json.loads((work / "summary.json").read_text())
    assert summary["runtime_check_max_abs_diff"] <= 1e-4
    # the exported model through the runtime's own backend on a real phantom volume
    from edge_ich.phantom.generator import generate_case

    case = generate_case(99, size=64, slices=6, thickness=5.0)
    x = prepare_volume(case.hu, card.windows, card.input_size, card.context)
    with open_backend("onnxrt", out, card) as be:
        y = be.infer(x)
    assert y.shape == (6, 1, 64, 64) and np.isfinite(y).all()


def test_fully_supervised_and_bad_input_are_clear(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["train", "--data", "rsna", "--work", str(tmp_path / "w"), "--no-export", *TINY])
    assert rc == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--root" in err[0]
    for bad in ("8", "128", "-4"):  # classifier grid coarser than 16 px, finer than the segmenter's, negative
        rc = main(["train", "--work", str(tmp_path / "w2"), "--no-export", *TINY, "--cls-size", bad])
        err = capsys.readouterr().err.strip().splitlines()
        assert rc == 1 and len(err) == 1 and "--cls-size must lie between 16 and --size (64)" in err[0], err
    assert not (tmp_path / "w2").exists()


@pytest.mark.slow
def test_torchrun_two_cpu_processes(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "training",
        "train",
        "--supervision",
        "full",
        "--cases",
        "4",
        "--val-cases",
        "0",
        "--test-cases",
        "0",
        "--work",
        str(tmp_path / "w"),
        "--cache",
        str(tmp_path / "c"),
        "--no-export",
        *TINY,
    ]
    p = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240)
    assert p.returncode == 0, p.stderr[-2000:]
    summary = json.loads((tmp_path / "w" / "summary.json").read_text())
    assert summary["world_size"] == 2
    import torch

    state = torch.load(tmp_path / "w" / "segmenter_fs.pt", weights_only=False)
    assert state["step"] == 6 and len(state["rng_states"]) == 2  # one sampler state per rank, gathered


def test_tiny_experiment_writes_every_row_table_plot_and_command(tmp_path: Path) -> None:
    out = tmp_path / "out"
    argv = [
        "experiment",
        "--large",
        "6",
        "--small",
        "4",
        "--folds",
        "2",
        "--val",
        "2",
        "--test",
        "3",
        "--reduced",
        "--fractions",
        "0.5,1.0",
        "--work",
        str(tmp_path / "w"),
        "--cache",
        str(tmp_path / "c"),
        "--out",
        str(out),
        *TINY,
    ]
    assert main(argv) == 0
    res = json.loads((out / "results.json").read_text())
    rows = res["rows"]
    assert {"WS 50%", "WS 100%", "WS 100% CAM gate open", "FS small", "FS large (ceiling)", "Threshold"} <= set(rows)
    # the gate is closed by default (the method), and the ablation reruns the same classifier with it open
    assert res["config"]["refine"]["cam_threshold"] > 0 and res["config"]["refine"]["component_cam_peak"] > 0
    auc = rows["WS 100%"]["classifier_val_slice_auc"]
    assert auc != auc or 0.0 <= auc <= 1.0  # nan when the 2 validation cases hold one class only
    for name, r in rows.items():
        assert 0.0 <= r["dice_all"] <= 1.0, name
        assert len(res["per_case_dice"][name]) == 3
    assert "WS 100% vs WS 100% CAM gate open" in res["wilcoxon_p"]
    assert set(res["goals"]) >= {"ws_over_ceiling", "ws_above_fs_small", "ws_minus_threshold"}
    md = (out / "results.md").read_text()
    assert "REDUCED" in md and "| WS 100% CAM gate open |" in md and "classifier AUC" in md
    assert (out / "dice.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "command.txt").read_text().startswith("python -m training experiment")

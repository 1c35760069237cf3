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
    for bad in ("-1", "nan"):
        rc = main(["train", "--work", str(tmp_path / "w2"), "--no-export", *TINY, "--hard-negative-weight", bad])
        err = capsys.readouterr().err.strip().splitlines()
        assert rc == 1 and len(err) == 1 and "--hard-negative-weight wants a number >= 0" in err[0], err
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


def test_tiny_experiment_units_resume_and_summary_follows_the_design(tmp_path: Path) -> None:
    out, work = tmp_path / "out", tmp_path / "w"
    tiny = [x for x in TINY if x not in ("--slices", "10")]
    argv = [
        "experiment",
        "--seeds",
        "0,1",
        "--design-seeds",
        "0,1",
        "--arms",
        "threshold,fs_small,ws_large,fs_large",
        "--large",
        "5",
        "--val",
        "2",
        "--small",
        "3",
        "--folds",
        "3",
        "--test",
        "4",
        "--slices",
        "10",
        "--fs-large-steps",
        "4",
        "--fs-small-steps",
        "3",
        "--self-train-steps",
        "3",
        "--work",
        str(work),
        "--cache",
        str(tmp_path / "c"),
        "--out",
        str(out),
        *tiny,
    ]
    # seed 0 only first: the summary says incomplete and judges nothing
    assert main([*argv[:2], "0", *argv[3:]]) == 0
    s = json.loads((out / "summary.json").read_text())
    assert s["complete"] is False and "incomplete" in s["claim"]["verdict"]
    seed0 = {p: p.stat().st_mtime_ns for p in work.glob("seed0/*/result.json")}
    assert len(seed0) == 4 and len(list((out / "units").glob("seed0_*.json"))) == 4
    assert main(argv) == 0
    assert {p: p.stat().st_mtime_ns for p in work.glob("seed0/*/result.json")} == seed0  # not rerun
    s = json.loads((out / "summary.json").read_text())
    assert s["seeds"] == [0, 1] and s["complete"] is True and s["n_test_cases"] == 4
    assert set(s["arms"]) == {"threshold", "fs_small", "ws_large", "fs_large"}
    for name, arm in s["arms"].items():
        assert arm["seeds"] == [0, 1] and len(arm["dice_pos"]) == 2, name
        assert all(0.0 <= d <= 1.0 for d in arm["dice_pos"]) or s["n_test_pos"] == 0
    assert "wilcoxon_p_ws_vs_fs_small" in s
    assert s["claim"]["verdict"] in ("the claim holds", "the claim fails under the design")
    # the target-site test set is the same for every seed; the training sets are not
    r0 = json.loads((work / "seed0" / "ws_large" / "result.json").read_text())
    r1 = json.loads((work / "seed1" / "ws_large" / "result.json").read_text())
    assert r0["case_ids"] == r1["case_ids"]
    thr = json.loads((work / "seed0" / "threshold" / "result.json").read_text())
    assert "3 validation volumes" in thr["train"]["operating_point"]["chosen_on"]
    md = (out / "results.md").read_text()
    assert "| ws_large | [0, 1] |" in md and "Verdict" in md
    assert (out / "dice.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "command.txt").read_text().startswith("python -m training experiment")


def test_experiment_rejects_an_unknown_arm(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["experiment", "--arms", "ws_large,oracle", "--work", str(tmp_path)]) == 1
    assert "unknown arm 'oracle'" in capsys.readouterr().err

"""No silent drops: regions below the reporting size are listed, and the summary line agrees with the report."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edge_ich.card import card_path_for, load_card
from edge_ich.cli import main
from edge_ich.pipeline import find_components
from tests.dicomkit import make_series


def _model_with_reporting_size(tmp: Path, tiny: Path, mm3: float) -> Path:
    import shutil

    path = tmp / f"tiny_{int(mm3)}.onnx"
    shutil.copy(tiny, path)
    card = load_card(tiny)
    card.min_component_mm3 = mm3
    card.save(card_path_for(path))
    return path


def _run(series: Path, model: Path, out: Path, capsys) -> tuple[str, dict]:
    assert main(["run", "--series", str(series), "--model", str(model), "--out", str(out), "--no-seg"]) == 0
    line = capsys.readouterr().out
    return line, json.loads((out / "report.json").read_text())


def test_small_regions_are_candidates_not_lost(tmp_path: Path, tiny_model: Path, capsys) -> None:
    """The same series with every region reportable, then with none reportable: the regions move from
    `components` to `candidates` with the same volumes and probabilities; nothing disappears."""
    make_series(tmp_path / "s", n=6, size=128)
    line0, all_ = _run(tmp_path / "s", _model_with_reporting_size(tmp_path, tiny_model, 0.0), tmp_path / "a", capsys)
    big = 1e9
    line1, none_ = _run(tmp_path / "s", _model_with_reporting_size(tmp_path, tiny_model, big), tmp_path / "b", capsys)
    assert all_["finding"]["hemorrhage"] and all_["components"] and not all_["candidates"]
    assert not none_["finding"]["hemorrhage"] and not none_["components"]
    key = [(c["volume_ml"], c["slices"], c["max_probability"]) for c in all_["components"]]
    assert [(c["volume_ml"], c["slices"], c["max_probability"]) for c in none_["candidates"]] == key
    cand = none_["finding"]["candidates_below_reporting_size"]
    assert cand["count"] == len(key) and cand["total_volume_ml"] == pytest.approx(
        all_["finding"]["total_volume_ml"], abs=2e-3
    )
    assert none_["finding"]["max_region_probability"] is None
    assert cand["max_probability"] == all_["finding"]["max_region_probability"]
    # the lines say the same as the reports
    assert line0.startswith("HEMORRHAGE SUSPECTED") and "region probability up to" in line0
    assert line1.startswith("No hemorrhage of reportable size") and f"{cand['count']} smaller candidate(s)" in line1
    assert f"{cand['max_probability']:.2f}" in line1 and "region probability" not in line1
    # probabilities are those of the regions themselves: at or above the card's threshold
    assert all(c["max_probability"] >= all_["model"]["threshold"] for c in all_["components"])


@pytest.mark.parametrize("seed", range(12))
def test_components_measured_as_scipy_measures_them(seed: int) -> None:
    """Every region's voxels, slices, centroid and highest probability equal scipy's 26-connected
    labels measured on the whole volume, for a dense mask and a SliceMask alike."""
    from scipy import ndimage

    from edge_ich.analysis.masks import SliceMask

    rng = np.random.default_rng(500 + seed)
    shape = (int(rng.integers(1, 12)), int(rng.integers(5, 90)), int(rng.integers(5, 90)))
    smooth = ndimage.gaussian_filter(rng.random(shape), rng.uniform(0.6, 2.0))
    dense = (smooth > rng.uniform(0.5, 0.56)).astype(np.uint8)
    prob = rng.random(shape).astype(np.float32)
    lab, count = ndimage.label(dense, structure=np.ones((3, 3, 3), bool))
    idx = np.arange(1, count + 1)
    sizes = ndimage.sum_labels(np.ones_like(lab), lab, idx).astype(int)
    cents = ndimage.center_of_mass(np.ones_like(lab), lab, idx)
    peaks = ndimage.maximum(prob.astype(np.float64), lab, idx)
    spans = [(sl[0].start, sl[0].stop - 1) for sl in ndimage.find_objects(lab)]
    min_mm3 = float(rng.uniform(0, 15))
    want = sorted(
        (int(sizes[k]), spans[k], tuple(round(v, 9) for v in cents[k]), float(peaks[k]))
        for k in range(count)
        if sizes[k] >= min_mm3
    )
    for mask in (dense.copy(), SliceMask.from_dense(dense)):
        kept, comps, small = find_components(
            mask, (1.0, 1.0, 1.0), np.eye(4), min_mm3, prob_of=lambda z, box: prob[z][box]
        )
        got = sorted(
            (c.voxels, c.slices, tuple(round(v, 9) for v in c.centroid_voxel), c.max_probability) for c in comps
        )
        assert got == want
        assert len(comps) + len(small) == count
        big = [k + 1 for k in range(count) if sizes[k] >= min_mm3]
        np.testing.assert_array_equal(np.asarray(kept).astype(bool), np.isin(lab, big))


def test_find_components_keeps_every_region() -> None:
    mask = np.zeros((4, 32, 32), np.uint8)
    mask[1:3, 4:12, 4:12] = 1  # 128 voxels
    mask[2, 20:22, 20:22] = 1  # 4 voxels
    prob = np.zeros((4, 32, 32), np.float32)
    prob[mask > 0] = 0.6
    prob[2, 21, 21] = 0.9
    kept, comps, small = find_components(
        mask.copy(), (1.0, 1.0, 1.0), np.eye(4), 10.0, prob_of=lambda z, box: prob[z][box]
    )
    assert [c.voxels for c in comps] == [128] and [c.voxels for c in small] == [4]
    assert comps[0].max_probability == pytest.approx(0.6) and small[0].max_probability == pytest.approx(0.9)
    assert kept.sum() == 128 and small[0].slices == (2, 2)


def test_summary_never_contradicts_itself() -> None:
    from edge_ich.outputs.report import summary_line

    base = {
        "input": {"shape": [10, 64, 64]},
        "model": {"card_id": "m@1"},
        "backend": {"name": "onnxrt", "device": "cpu"},
        "timings": {"segment_wall_s": 0.1},
        "warnings": [],
    }
    neg = {
        "hemorrhage": False,
        "total_volume_ml": 0.0,
        "volume_is_lower_bound": False,
        "n_components": 0,
        "positive_slices": [4],
        "max_region_probability": None,
        "reporting_size_ml": 0.8,
        "candidates_below_reporting_size": {"count": 1, "total_volume_ml": 0.57, "max_probability": 1.0},
    }
    line = summary_line({**base, "finding": neg})
    assert line.startswith("No hemorrhage of reportable size (0.8 mL or more)")
    assert "1 smaller candidate(s) below 0.8 mL (0.57 mL, probability up to 1.00)" in line
    assert "max slice probability" not in line  # the figure that contradicted the verdict is gone

"""Calibration / held-out split: stratified, disjoint, truth from truth.npz or from the FP32 model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edge_ich.builder.calib import LabelledSeries, read_folder, split_slices
from edge_ich.card import load_card
from edge_ich.errors import InputError
from edge_ich.sources.volume import ArraySource
from tests.buildnets import build_deep_model, synthetic_head, write_calib_dir


def _series(n: int, slices: int = 12, size: int = 64, with_truth: bool = True) -> list[LabelledSeries]:
    out = []
    for k in range(n):
        hu, labels = synthetic_head(100 + k, slices, size)
        out.append(
            LabelledSeries(ArraySource(hu.astype(np.float32), (5.0, 3.0, 3.0)), f"s{k}", labels if with_truth else None)
        )
    return out


def test_split_is_disjoint_and_stratified(tiny_model: Path) -> None:
    card = load_card(tiny_model)
    split = split_slices(_series(6), card, n_calib=40, n_heldout=20, seed=3)  # 72 slices, half with blood
    assert len(split.calib) == 40 and len(split.heldout) == 20
    assert not set(split.calib.keys) & set(split.heldout.keys)
    assert split.truth_source == "truth"
    assert int(split.calib.positive.sum()) == 20 and int(split.heldout.positive.sum()) == 10
    assert (
        split.calib.inputs.shape == (40, card.in_channels, *card.input_size) and split.calib.inputs.dtype == np.float32
    )
    assert split.heldout.truth is not None and split.heldout.truth[0].shape == (64, 64)
    again = split_slices(_series(6), card, n_calib=40, n_heldout=20, seed=3)
    assert again.calib.digest() == split.calib.digest()  # same data and seed, same calibration set hash
    other = split_slices(_series(6), card, n_calib=40, n_heldout=20, seed=4)
    assert other.calib.digest() != split.calib.digest()


def test_short_data_is_split_proportionally(tiny_model: Path) -> None:
    split = split_slices(_series(2), load_card(tiny_model), n_calib=500)  # 24 slices for 500 + 250 wanted
    assert len(split.calib) + len(split.heldout) == 24 and len(split.heldout) == 8
    assert any("only 24 slices" in n for n in split.notes)
    assert (
        int(split.heldout.positive.sum()) == 4 and int(split.calib.positive.sum()) == 8
    )  # bleed split 1:2 like the sets


def test_scarce_bleed_is_shared_in_proportion(tiny_model: Path) -> None:
    series = _series(6)  # 72 slices, 36 with blood; drop the blood from four series' truth
    for s in series[2:]:
        s.labels = np.zeros_like(s.labels)
    split = split_slices(series, load_card(tiny_model), n_calib=500)
    assert int(split.heldout.positive.sum()) == 4 and int(split.calib.positive.sum()) == 8


def test_without_truth_the_fp32_model_calls_the_strata(tmp_path: Path) -> None:
    model = build_deep_model(tmp_path)
    card = load_card(model)
    with pytest.raises(InputError, match="no truth masks"):
        split_slices(_series(2, with_truth=False), card)
    from edge_ich.builder.engine import _fp32_caller

    split = split_slices(
        _series(4, size=128, with_truth=False), card, n_calib=16, n_heldout=8, fp32_calls=_fp32_caller(model, card, 1)
    )
    assert split.truth_source == "fp32" and split.heldout.truth is None
    assert 0 < int(split.calib.positive.sum()) < len(split.calib)


def test_read_folder_attaches_truth_that_fits(tmp_path: Path) -> None:
    root = write_calib_dir(tmp_path / "c", cases=2, slices=6, size=64)
    np.savez(root / "case_001" / "truth.npz", labels=np.zeros((3, 64, 64), np.uint8))  # wrong slice count
    series, _ = read_folder(root)
    assert [s.name.split("#")[0] for s in series] == ["case_000/dicom", "case_001/dicom"]
    assert series[0].labels is not None and series[0].labels.shape == (6, 64, 64)
    assert series[1].labels is None
    hu, labels = synthetic_head(0, 6, 64)
    assert np.array_equal(series[0].labels, labels)
    assert np.allclose(series[0].source.read_hu(1), hu[1])  # ascending order, HU exact
    with pytest.raises(InputError):
        read_folder(tmp_path / "missing")

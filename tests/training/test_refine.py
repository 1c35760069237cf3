"""Pseudo-mask refinement and evaluation conventions, on hand-built volumes."""

from __future__ import annotations

import numpy as np
import pytest

from edge_ich.analysis.metrics import dice
from training.evaluate import (
    choose_operating_point,
    choose_threshold,
    remove_small,
    score_case,
    subtype_dice,
    summarize,
    wilcoxon_p,
)
from training.refine import RefineParams, pseudo_masks


def _head(z: int = 7, n: int = 64, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Brain 30 HU (noise 3) in a 1000 HU skull ring; a 70 HU bleed on slices 2-4; a 300 HU calcification."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:n, 0:n]
    r = np.hypot(yy - n / 2, xx - n / 2)
    hu = np.where(r < n * 0.45, 1000.0, -1000.0)[None].repeat(z, 0)
    brain2d = r < n * 0.4
    hu[:, brain2d] = 30.0
    truth = np.zeros((z, n, n), bool)
    blob = np.hypot(yy - 24, xx - 40) < 6
    truth[2:5, blob] = True
    hu[truth] = 70.0
    calc = np.hypot(yy - 40, xx - 24) < 2
    hu[:, calc] = 300.0
    hu += rng.normal(0, 3, hu.shape)
    brain = np.broadcast_to(brain2d, hu.shape).copy()
    return hu.astype(np.float32), truth, brain


def test_refinement_recovers_the_bleed_from_a_coarse_cam() -> None:
    hu, truth, brain = _head()
    yy, xx = np.mgrid[0:64, 0:64]
    cam2d = np.clip(1 - np.hypot(yy - 26, xx - 38) / 16, 0, 1)  # coarse, off-centre, wider than the bleed
    cam = np.broadcast_to(cam2d, hu.shape).copy()
    positive = truth.reshape(7, -1).any(1)
    pm = pseudo_masks(hu, cam, positive, brain)
    assert dice(pm, truth) > 0.85
    assert not pm[~positive].any()  # negative slices stay empty


def test_refinement_ignores_calcification_and_regions_without_cam() -> None:
    hu, truth, brain = _head()
    cam = np.zeros_like(hu)
    yy, xx = np.mgrid[0:64, 0:64]
    cam[:] = np.clip(1 - np.hypot(yy - 40, xx - 24) / 8, 0, 1)  # CAM on the calcification only
    pm = pseudo_masks(hu, cam, np.ones(7, bool), brain)
    assert not pm.any()
    assert not pseudo_masks(hu, np.zeros_like(hu), np.ones(7, bool), brain).any()


def test_hu_gate_is_a_parameter() -> None:
    hu, truth, brain = _head()
    cam = np.ones_like(hu)
    pm = pseudo_masks(hu, cam, truth.reshape(7, -1).any(1), brain, RefineParams(hu_low=80.0))
    assert not pm.any()  # the 70 HU bleed is below an 80 HU gate


def test_score_conventions_and_subtypes() -> None:
    truth = np.zeros((4, 16, 16), np.uint8)
    empty = score_case("a", np.zeros(truth.shape, bool), truth, (5.0, 1.0, 1.0))
    assert empty.dice == 1.0 and np.isnan(empty.dice_pos_slices) and not empty.scan_truth
    truth[1, 2:6, 2:6] = 2  # IPH, 16 voxels
    truth[2, 10:14, 10:14] = 5  # SDH
    pred = np.zeros(truth.shape, bool)
    pred[1, 2:6, 2:6] = True  # IPH found exactly, SDH missed
    s = score_case("b", pred, truth, (5.0, 1.0, 1.0))
    assert s.dice == pytest.approx(2 * 16 / (16 + 32))
    assert s.abs_volume_error_ml == pytest.approx(16 * 5 / 1000)
    assert subtype_dice(pred, truth) == {"intraparenchymal": 1.0, "subdural": 0.0}
    summ = summarize([empty, s])
    assert summ["scan_sensitivity"] == 1.0 and summ["scan_specificity"] == 1.0
    # bleeding volumes apart from empty ones: the empty volume's 1.0 does not lift the primary number
    assert summ["dice_bleeding_volumes"] == pytest.approx(2 / 3)
    assert summ["empty_volumes_called_empty"] == 1.0
    assert summ["dice_all"] == pytest.approx((1.0 + 2 / 3) / 2)
    assert summ["median_abs_volume_error_pct"] == pytest.approx(50.0)
    assert summ["slice_sensitivity"] == 0.5
    assert summ["per_case_dice"] == [1.0, pytest.approx(2 / 3)]


def test_remove_small_threshold_choice_and_wilcoxon() -> None:
    m = np.zeros((3, 10, 10), bool)
    m[0, 0, 0] = True
    m[1, 3:7, 3:7] = True
    kept = remove_small(m, (1.0, 1.0, 1.0), 5.0)
    assert not kept[0, 0, 0] and kept[1].sum() == 16
    prob = np.zeros((3, 10, 10), np.float32)
    prob[1, 3:7, 3:7] = 0.65
    prob[2, 0:2, 0:2] = 0.45
    th, mm, d = choose_threshold([prob], [(prob >= 0.6).astype(np.uint8)], [(1.0, 1.0, 1.0)], 0.0)
    assert 0.45 < th <= 0.65 and mm == 0.0 and d == 1.0
    prob[0, 0, 0] = 0.9  # a one-voxel speck: only a component-size rule removes it
    truth = np.zeros(prob.shape, np.uint8)
    truth[1, 3:7, 3:7] = 1
    th, mm, d = choose_threshold([prob], [truth], [(1.0, 1.0, 1.0)], None, min_grid=(0.0, 5.0))
    assert mm == 5.0 and d == 1.0
    assert wilcoxon_p([0.9] * 10, [0.9] * 10) != wilcoxon_p([0.9] * 10, [0.9] * 10)  # nan when identical
    assert wilcoxon_p(list(np.linspace(0.6, 0.9, 12)), list(np.linspace(0.1, 0.4, 12))) < 0.01


def _op_case(bleed_voxels: int, speck_voxels: int) -> tuple[np.ndarray, np.ndarray]:
    """A probability volume with one bleed (p 0.9) of `bleed_voxels` and, apart, a speck (p 0.9) of `speck_voxels`."""
    prob = np.zeros((4, 20, 20), np.float32)
    truth = np.zeros(prob.shape, bool)
    if bleed_voxels:
        prob[1, 2, 2 : 2 + bleed_voxels] = 0.9
        truth[1, 2, 2 : 2 + bleed_voxels] = True
    if speck_voxels:
        prob[3, 15, 2 : 2 + speck_voxels] = 0.9
    return prob, truth


def test_operating_point_keeps_small_bleeds_while_specificity_holds() -> None:
    # 10 bleeding scans, 5 with a small bleed (8 voxels) and 5 with a large one (18); 10 empty scans, two of
    # them with a 3-voxel false speck: size 4 keeps every bleed and drops the specks; 10 loses the small ones.
    cases = [_op_case(8, 0) for _ in range(5)] + [_op_case(18, 0) for _ in range(5)]
    cases += [_op_case(0, 3) for _ in range(2)] + [_op_case(0, 0) for _ in range(8)]
    probs, truths = [c[0] for c in cases], [c[1] for c in cases]
    labels = [t.any() for t in truths]
    sp = [(1.0, 1.0, 1.0)] * len(cases)
    op = choose_operating_point(probs, truths, labels, sp, grid=(0.5,), min_grid=(1.0, 4.0, 10.0), spec_floor=0.8)
    assert (op["min_component_mm3"], op["val_scan_sensitivity"], op["val_scan_specificity"]) == (4.0, 1.0, 1.0)
    # specks as large as the small bleeds on 5 of 10 empty scans: no size keeps both. A per-volume mean Dice
    # trades them one for one (10 bleeds found > 5 false calls: size 4, specificity 0.5); the floor keeps 10.
    cases = [_op_case(8, 0) for _ in range(10)] + [_op_case(0, 8) for _ in range(5)] + [_op_case(0, 0)] * 5
    probs, truths = [c[0] for c in cases], [c[1] for c in cases]
    labels = [t.any() for t in truths]
    op = choose_operating_point(probs, truths, labels, sp, grid=(0.5,), min_grid=(4.0, 10.0))
    assert (op["min_component_mm3"], op["val_scan_sensitivity"], op["val_scan_specificity"]) == (10.0, 0.0, 1.0)
    assert choose_threshold(probs, truths, sp, None, grid=(0.5,), min_grid=(4.0, 10.0))[1] == 4.0
    # no candidate keeps the floor: the most specific ones compete
    op = choose_operating_point(probs, truths, labels, sp, grid=(0.5,), min_grid=(4.0,))
    assert (op["val_scan_sensitivity"], op["val_scan_specificity"]) == (1.0, 0.5)


def test_bleed_fraction_subsets_keep_whole_cases_in_order() -> None:
    from training.experiment import subset_by_bleed_fraction
    from training.volumes import Volume

    counts = [0, 4, 0, 2, 4]  # bleed slices per case, 10 in all
    vols = [
        Volume(f"c{i}", np.zeros((6, 4, 4), np.float32), (1.0, 1.0, 1.0), (np.arange(6) < k).astype(np.uint8))
        for i, k in enumerate(counts)
    ]
    assert [v.case_id for v in subset_by_bleed_fraction(vols, 0.1)] == ["c0", "c1"]
    assert [v.case_id for v in subset_by_bleed_fraction(vols, 0.5)] == ["c0", "c1", "c2", "c3"]
    assert len(subset_by_bleed_fraction(vols, 1.0)) == 5


def test_checkpoint_score_never_rewards_predicting_nothing() -> None:
    """The experiment's collapse: self-training targets came out empty and an empty segmenter scored 1.0."""
    from training.evaluate import pooled_dice

    blob = np.zeros((4, 16, 16), bool)
    blob[1:3, 4:9, 4:9] = True
    empty = np.zeros_like(blob)
    targets = [blob, empty, empty]
    assert pooled_dice([blob, empty, empty], targets) == 1.0
    assert pooled_dice([empty, empty, empty], targets) == 0.0  # a per-volume mean would say 2/3
    assert pooled_dice([empty] * 3, [empty] * 3) == 0.0  # collapsed targets: nothing to win
    noisy = empty.copy()
    noisy[0, 0, 0] = True  # one false voxel on an empty volume costs too
    assert 0.9 < pooled_dice([blob, noisy, empty], targets) < 1.0

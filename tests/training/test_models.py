"""Networks, Grad-CAM through the LSTM, FLOP counting, resumable deterministic loops."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from training.cam import _window_cams, volume_cams  # noqa: E402
from training.loops import LoopConfig, segmenter_loss, train_loop  # noqa: E402
from training.models import SliceSequenceClassifier, UNet25D, count_parameters, flops_per_slice  # noqa: E402
from training.volumes import Volume, window_starts  # noqa: E402


def test_unet_shape_no_transposed_conv_and_size() -> None:
    net = UNet25D(9, base=8).eval()
    out = net(torch.zeros(2, 9, 64, 64))
    assert out.shape == (2, 1, 64, 64)
    assert not any(isinstance(m, torch.nn.ConvTranspose2d) for m in net.modules())
    assert count_parameters(UNet25D(9, base=12)) < 3_000_000


def test_flops_of_one_convolution_match_hand_count() -> None:
    conv = torch.nn.Conv2d(9, 4, 3, padding=1)
    assert flops_per_slice(conv, 9, (16, 16)) == 2 * 9 * 3 * 3 * 4 * 16 * 16


def test_classifier_reads_neighbouring_slices() -> None:
    torch.manual_seed(0)
    net = SliceSequenceClassifier(3, (8, 8, 16, 16), hidden=8).eval()
    x = torch.rand(1, 6, 3, 32, 32)
    y = x.clone()
    y[0, 4] += 0.5  # change slice 4 only
    with torch.no_grad():
        a, b = net(x), net(y)
    assert a.shape == (1, 6)
    assert not torch.allclose(a[0, 1], b[0, 1])  # slice 1's logit moved: the LSTM carries context


@pytest.mark.parametrize("pool", SliceSequenceClassifier.POOLS)
def test_gradcam_weights_are_gradients_on_the_conv_maps(pool: str) -> None:
    """Our weights (gradient w.r.t. pooled features) equal the spatial sum of Grad-CAM's map gradients, for every pooling."""
    torch.manual_seed(1)
    net = SliceSequenceClassifier(3, (8, 8, 16, 16), hidden=8, pool=pool).eval()
    x = torch.rand(1, 4, 3, 32, 32)
    cams, prob = _window_cams(net, x)
    feats = net.features(x).detach().requires_grad_(True)
    logits = net.head_from_pooled(net.pool(feats))
    t = 2
    (g,) = torch.autograd.grad(logits[0, t], feats)
    w = g[0, t].sum(dim=(-2, -1))
    ref = torch.relu(torch.einsum("f,fhw->hw", w, feats[0, t].detach()))
    assert torch.allclose(cams[t], ref, atol=1e-5)
    assert prob.shape == (4,) and bool(((prob > 0) & (prob < 1)).all())


def test_volume_cams_cover_every_slice_and_are_normalised() -> None:
    net = SliceSequenceClassifier(3, (8, 8, 16, 16), hidden=8).eval()
    rng = np.random.default_rng(0)
    vol = Volume("v", rng.normal(30, 20, (11, 32, 32)).astype(np.float32), (5.0, 1.0, 1.0), np.zeros(11, np.uint8))
    cams, prob = volume_cams(net, vol, length=4)
    assert cams.shape == (11, 32, 32) and prob.shape == (11,)
    assert cams.min() >= 0 and cams.max() <= 1 + 1e-6
    assert window_starts(11, 4, 2) == [0, 2, 4, 6, 7]
    up, prob_up = volume_cams(net, vol, length=4, out_size=(64, 64))  # classifier on a coarser grid than the segmenter
    assert up.shape == (11, 64, 64) and np.allclose(prob_up, prob)


def test_unknown_pooling_is_refused() -> None:
    with pytest.raises(ValueError, match="pool"):
        SliceSequenceClassifier(3, pool="median")


def test_classifier_grid_is_separate_from_the_segmenter_grid() -> None:
    from training.pipeline import (
        PipelineConfig,
        classifier_slice_auc,
        classifier_volumes,
        make_pseudo_masks,
        new_classifier,
    )

    rng = np.random.default_rng(2)
    hu = rng.normal(30, 5, (8, 64, 64)).astype(np.float32)
    labels = np.array([0, 0, 1, 1, 1, 0, 0, 0], np.uint8)
    vol = Volume("v", hu, (5.0, 0.5, 0.5), labels)
    cfg = PipelineConfig(size=64, cls_size=32, seq_len=4, cls_widths=(8, 8, 16, 16), cls_hidden=8)
    (small,) = classifier_volumes([vol], cfg)
    assert small.hu.shape == (8, 32, 32) and small.spacing == (5.0, 1.0, 1.0) and small.slice_labels is labels
    assert classifier_volumes([vol], PipelineConfig(size=64))[0] is vol
    clf = new_classifier(cfg)
    (mask,) = make_pseudo_masks(clf, [vol], cfg)
    assert mask.shape == vol.hu.shape and not mask[labels == 0].any()
    auc = classifier_slice_auc(clf, [vol], cfg)
    assert 0.0 <= auc <= 1.0


def _sample(rng: np.random.Generator, batch: int) -> tuple[np.ndarray, np.ndarray]:
    x = rng.random((batch, 3, 16, 16), dtype=np.float32)
    return x, (x[:, :1] > 0.7).astype(np.float32)


class _Stop(Exception):
    pass


def _run_loop(steps: int, ckpt: Path | None, stop_after: int | None = None, lr: float = 1e-2, base: int = 4):
    """Train a tiny segmenter; `stop_after`: die (as a killed process would) when drawing that step's batch."""
    drawn = [0]

    def sample(rng: np.random.Generator, batch: int):
        drawn[0] += 1
        if stop_after is not None and drawn[0] > stop_after:
            raise _Stop
        return _sample(rng, batch)

    torch.manual_seed(0)
    net = UNet25D(3, base=base, depth=2)
    cfg = LoopConfig(steps=steps, batch=2, lr=lr, warmup=2, seed=3, ckpt=ckpt, ckpt_every=3, log_every=100)
    return {k: v.clone() for k, v in train_loop(net, sample, segmenter_loss, cfg).state_dict().items()}


def test_loop_resumes_to_the_same_weights(tmp_path: Path) -> None:
    straight = _run_loop(6, None)
    ck = tmp_path / "c.pt"
    with pytest.raises(_Stop):
        _run_loop(6, ck, stop_after=4)  # killed during step 5, after the checkpoint at step 3
    assert torch.load(ck, weights_only=False)["step"] == 3
    resumed = _run_loop(6, ck)  # new process state, resumes at 3
    for k in straight:
        assert torch.allclose(straight[k].float(), resumed[k].float(), atol=1e-6), k


@pytest.mark.parametrize("change", ["lr", "steps", "width"])
def test_a_checkpoint_made_under_other_settings_is_not_resumed(tmp_path: Path, change: str, capsys) -> None:
    ck = tmp_path / "c.pt"
    with pytest.raises(_Stop):
        _run_loop(6, ck, stop_after=4)
    other = {"lr": {"lr": 5e-3}, "steps": {}, "width": {"base": 6}}[change]
    steps = 9 if change == "steps" else 6
    fresh = _run_loop(steps, None, **other)
    again = _run_loop(steps, ck, **other)
    reason = {"lr": "['lr']", "steps": "['steps']", "width": "['arch']"}[change]
    assert f"other settings ({reason}): starting afresh" in capsys.readouterr().err
    for k in fresh:
        assert torch.allclose(fresh[k].float(), again[k].float(), atol=1e-6), k


def test_classifier_augmentation_flips_and_shifts_whole_windows_and_keeps_labels() -> None:
    from training.volumes import ClassifierSampler

    rng = np.random.default_rng(3)
    hu = np.full((6, 16, 16), -1000.0, np.float32)
    hu[:, 6:10, 3:6] = 60.0  # a block left of centre on every slice
    vol = Volume("v", hu, (5.0, 1.0, 1.0), np.array([0, 1, 1, 0, 0, 1], np.uint8))
    plain = ClassifierSampler([vol], 6)
    aug = ClassifierSampler([vol], 6, augment=True, max_shift=2)
    x0, y0, _ = plain.sample(np.random.default_rng(0), 1)
    seen_flip = False
    for _ in range(20):
        x, y, m = aug.sample(rng, 1)
        assert x.shape == x0.shape and np.array_equal(y, y0) and m.all()
        # the same transform for every slice and window of the window
        assert all(np.array_equal(x[0, t], x[0, 0]) for t in range(6))
        assert np.isclose(x.sum(), x0.sum()) or x.sum() < x0.sum()  # content moves, never appears
        cols = np.nonzero(x[0, 0, 0].any(axis=0))[0]
        seen_flip |= bool(cols.size and cols.min() > 8)
    assert seen_flip


def test_segmenter_sampler_can_leave_out_bleed_slices_without_a_pseudo_mask() -> None:
    from training.volumes import SegmenterSampler

    hu = np.zeros((4, 8, 8), np.float32)
    vol = Volume("v", hu, (5.0, 1.0, 1.0), np.array([0, 1, 1, 0], np.uint8))
    target = np.zeros((4, 8, 8), bool)
    target[1, 2:4, 2:4] = True  # slice 2 is labelled bleed but its pseudo-mask came out empty
    keep = SegmenterSampler([vol], [target], 0)
    assert sorted(keep.pos) == [(0, 1)] and sorted(keep.neg) == [(0, 0), (0, 2), (0, 3)] and keep.skipped == 0
    skip = SegmenterSampler([vol], [target], 0, skip_unresolved=True)
    assert sorted(skip.pos) == [(0, 1)] and sorted(skip.neg) == [(0, 0), (0, 3)] and skip.skipped == 1


def test_segmenter_sampler_flags_only_slices_labelled_negative_as_known_empty() -> None:
    from training.volumes import SegmenterSampler

    hu = np.stack([np.full((8, 8), v, np.float32) for v in (10.0, 20.0, 30.0)])  # tells the slices apart
    vol = Volume("v", hu, (5.0, 1.0, 1.0), np.array([0, 1, 1], np.uint8))
    target = np.zeros((3, 8, 8), bool)
    target[1, 2:4, 2:4] = True  # slice 2: labelled bleed, empty pseudo-mask (not known to be empty)
    sampler = SegmenterSampler([vol], [target], 0)
    x, y, neg = sampler.sample(np.random.default_rng(1), 64)
    levels = np.array([vol.stack(z, 0, sampler.windows).mean() for z in range(3)])
    drawn = np.argmin(np.abs(x.reshape(64, -1).mean(1)[:, None] - levels[None]), axis=1)
    assert neg.shape == (64,) and set(drawn) == {0, 1, 2}
    assert set(drawn[neg == 1]) == {0} and set(drawn[neg == 0]) == {1, 2}


def test_hard_negative_term_penalises_a_confident_false_call_on_a_negative_slice_only() -> None:
    class Fixed(torch.nn.Module):
        def __init__(self, logits: torch.Tensor) -> None:
            super().__init__()
            self.logits = logits

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.logits

    logits = torch.full((2, 1, 10, 10), -8.0)
    logits[0, 0, 0, 0] = 5.0  # one confident pixel (1% of 100) on slice 0
    x, y = torch.zeros(2, 3, 10, 10), torch.zeros(2, 1, 10, 10)
    net = Fixed(logits)
    plain = float(segmenter_loss(net, [x, y]))
    flagged = float(segmenter_loss(net, [x, y, torch.tensor([1.0, 0.0])], hard_negative_weight=2.0))
    unflagged = float(segmenter_loss(net, [x, y, torch.tensor([0.0, 1.0])], hard_negative_weight=2.0))
    off = float(segmenter_loss(net, [x, y, torch.tensor([1.0, 0.0])], hard_negative_weight=0.0))
    sp = torch.nn.functional.softplus
    assert flagged - plain == pytest.approx(2.0 * float(sp(torch.tensor(5.0))), rel=1e-4)
    assert unflagged - plain == pytest.approx(2.0 * float(sp(torch.tensor(-8.0))), rel=1e-3)
    assert off == plain


def test_segmenter_sampler_says_why_nothing_is_left() -> None:
    from edge_ich.errors import InputError
    from training.volumes import SegmenterSampler

    vol = Volume("v", np.zeros((2, 8, 8), np.float32), (5.0, 1.0, 1.0), np.array([1, 1], np.uint8))
    with pytest.raises(InputError, match="all 2 bleed slices came out without a pseudo-mask"):
        SegmenterSampler([vol], [np.zeros((2, 8, 8), bool)], 0, skip_unresolved=True)


def _blob_volumes(n: int, seed: int) -> tuple[list[Volume], list[np.ndarray]]:
    """32x32 'heads' (30 HU, noise 4) with a 75 HU blob on slices 2-5 of every other volume, placed at random."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:32, 0:32]
    vols, blobs = [], []
    for i in range(n):
        hu = rng.normal(30, 4, (8, 32, 32)).astype(np.float32)
        labels = np.zeros(8, np.uint8)
        blob = np.zeros((8, 32, 32), bool)
        if i % 2:
            cy, cx = rng.integers(8, 24, 2)
            blob[2:6] = np.hypot(yy - cy, xx - cx) < 4
            hu[blob] = 75.0
            labels[2:6] = 1
        vols.append(Volume(f"b{i}", hu, (5.0, 1.0, 1.0), labels))
        blobs.append(blob)
    return vols, blobs


def test_cam_of_a_trained_classifier_peaks_inside_the_blob() -> None:
    from training.loops import classifier_loss
    from training.volumes import ClassifierSampler

    train, _ = _blob_volumes(24, seed=0)
    net = SliceSequenceClassifier(3, (8, 8, 16, 16), hidden=8, pool="lse", stride=4)
    sampler = ClassifierSampler(train, 8, augment=True, max_shift=2)
    train_loop(net, sampler.sample, classifier_loss, LoopConfig(steps=100, batch=4, lr=3e-3, seed=0, log_every=1000))
    test, blobs = _blob_volumes(8, seed=1)
    hits = total = 0
    for vol, blob in zip(test, blobs):
        cams, prob = volume_cams(net, vol, length=8)
        assert cams.shape == (8, 32, 32)  # stride 4: 8x8 maps, upsampled to the slice
        for z in range(2, 6):
            if blob[z].any():
                y, x = np.unravel_index(int(np.argmax(cams[z])), cams[z].shape)
                hits += bool(blob[z, y, x])
                total += 1
    assert total == 16 and hits / total >= 0.75, (hits, total)

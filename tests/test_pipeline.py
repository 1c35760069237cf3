"""The streaming path gives exactly what a whole-volume pass gives, and stays correct at the edges."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from edge_ich.backends import open_backend
from edge_ich.card import load_card
from edge_ich.errors import InputError
from edge_ich.pipeline import STAGES, postprocess, segment
from edge_ich.preprocess import prepare_volume, resize_back
from edge_ich.sources.volume import ArraySource
from tests.tinymodel import build_tiny_model


def _volume(seed: int = 0, n: int = 11, size: int = 128) -> np.ndarray:
    rng = np.random.default_rng(seed)
    hu = rng.normal(30, 6, (n, size, size)).astype(np.float32)
    hu[4:7, 30:60, 40:70] = 78  # a bright 3-slice blob
    hu[9, 100:104, 100:104] = 80  # a tiny one-slice speck (under the size limit)
    return hu


@pytest.mark.parametrize("context", [0, 1, 2])
@pytest.mark.parametrize("batch", [1, 3, 4, 16])
def test_streaming_equals_whole_volume(tmp_path_factory: pytest.TempPathFactory, context: int, batch: int) -> None:
    model = build_tiny_model(tmp_path_factory.mktemp(f"m{context}"), size=64, context=context)
    card = load_card(model)
    hu = _volume()
    src = ArraySource(hu, (5.0, 0.45, 0.45))
    with open_backend("onnxrt", model, card) as be:
        seg = segment(src, be, batch=batch, queue_depth=2)
        ref_logits = be.infer(prepare_volume(hu, card.windows, card.input_size, context))[:, 0]
    ref_prob = 1 / (1 + np.exp(-ref_logits))
    ref_mask = np.stack([resize_back(p, hu.shape[1:]) >= card.threshold for p in ref_prob])
    np.testing.assert_array_equal(np.asarray(seg.mask).astype(bool), ref_mask)
    np.testing.assert_allclose(seg.slice_prob, ref_prob.max(axis=(1, 2)), atol=1e-6)
    for stage in ("read", "preprocess", "compute", "postprocess"):
        assert len(seg.timings.per_slice[stage]) == hu.shape[0]
    assert set(seg.timings.per_slice) == set(STAGES)
    assert seg.mask[5].any() and not seg.mask[0].any()


def test_postprocess_volumes_and_min_size() -> None:
    mask = np.zeros((6, 40, 40), np.uint8)
    mask[1:4, 10:20, 10:20] = 1  # 300 voxels
    mask[5, 0:2, 0:2] = 1  # 4 voxels
    spacing = (2.0, 0.5, 0.5)  # 0.5 mm^3 per voxel
    affine = np.diag([0.5, 0.5, 2.0, 1.0])
    kept, comps = postprocess(mask, spacing, affine, min_component_mm3=10.0)
    assert len(comps) == 1
    assert comps[0].voxels == 300
    assert comps[0].volume_ml == pytest.approx(300 * 0.5 / 1000)
    assert comps[0].slices == (1, 3)
    assert comps[0].centroid_voxel == pytest.approx((2.0, 14.5, 14.5))
    assert comps[0].centroid_lps_mm == pytest.approx((14.5 * 0.5, 14.5 * 0.5, 4.0))
    assert kept[5].sum() == 0 and kept.sum() == 300


class _Failing(ArraySource):
    def read_hu(self, i: int) -> np.ndarray:
        if i == 5:
            raise InputError("slice 5 cannot be decoded")
        return super().read_hu(i)


def test_reader_error_reaches_caller_and_thread_ends(tiny_model) -> None:
    card = load_card(tiny_model)
    src = _Failing(_volume(n=30), (5.0, 0.45, 0.45))
    before = threading.active_count()
    with open_backend("onnxrt", tiny_model, card) as be, pytest.raises(InputError, match="slice 5"):
        segment(src, be, batch=2, queue_depth=2)
    assert threading.active_count() == before


@pytest.mark.parametrize("seed", range(12))
def test_components_equal_scipy_label(seed: int) -> None:
    """The sparse labelling of positive voxels keeps exactly what 26-connected ndimage.label keeps."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    shape = tuple(int(v) for v in rng.integers(2, 30, 3))
    mask = (ndimage.gaussian_filter(rng.random(shape), 1.0) > rng.uniform(0.5, 0.6)).astype(np.uint8)
    lab, count = ndimage.label(mask, structure=np.ones((3, 3, 3), bool))
    sizes = np.bincount(lab.ravel())
    min_mm3 = float(rng.uniform(0, 20))
    big = [k for k in range(1, count + 1) if sizes[k] * 0.5 >= min_mm3]
    kept, comps = postprocess(mask.copy(), (2.0, 0.5, 0.5), np.eye(4), min_mm3)
    np.testing.assert_array_equal(kept.astype(bool), np.isin(lab, big))
    assert sorted(c.voxels for c in comps) == sorted(int(sizes[k]) for k in big)
    for c in comps:
        z0, z1 = c.slices
        assert kept[z0].any() and kept[z1].any()

"""The one preprocessing definition: windows, resizing, context, and the way back to the native grid."""

from __future__ import annotations

import numpy as np
import pytest

from edge_ich.preprocess import (
    DEFAULT_WINDOWS,
    apply_window,
    block_max,
    block_mean,
    context_indices,
    prepare_slice,
    prepare_volume,
    resize2d,
    resize_back,
    resize_back_above,
    resize_back_box,
)


def test_window_maps_and_clips() -> None:
    hu = np.array([-100.0, 0.0, 40.0, 80.0, 500.0], np.float32)
    np.testing.assert_allclose(apply_window(hu, 40, 80), [0, 0, 0.5, 1, 1])


def test_block_mean_downscale_is_exact() -> None:
    img = np.arange(16, dtype=np.float32).reshape(4, 4)
    np.testing.assert_allclose(resize2d(img, (2, 2)), [[2.5, 4.5], [10.5, 12.5]])


@pytest.mark.parametrize("f", [2, 3, 4])
def test_block_mean_is_numpys_mean_of_the_blocks(f: int) -> None:
    """Bit for bit on integer HU (as CT stores them), to float rounding on any other values."""
    rng = np.random.default_rng(f)
    hu = rng.integers(-1024, 3072, (32 * f, 32 * f)).astype(np.float32)
    ref = hu.reshape(32, f, 32, f).mean(axis=(1, 3), dtype=np.float32)
    before = hu.copy()
    out = resize2d(hu, (32, 32))
    assert np.array_equal(hu, before)  # the caller's slice is never written
    assert out.dtype == np.float32 and out.shape == (32, 32)
    assert np.array_equal(out, ref)
    frac = rng.normal(0, 300, hu.shape).astype(np.float32)
    np.testing.assert_allclose(
        resize2d(frac, (32, 32)), frac.reshape(32, f, 32, f).mean(axis=(1, 3), dtype=np.float32), rtol=0, atol=1e-3
    )
    assert np.array_equal(block_max(frac, f), frac.reshape(32, f, 32, f).max(axis=(1, 3)))
    assert np.array_equal(block_mean(hu, f), ref)


def test_context_clamps_at_the_ends() -> None:
    assert context_indices(0, 5, 2) == [0, 0, 0, 1, 2]
    assert context_indices(4, 5, 1) == [3, 4, 4]


def test_prepare_volume_channel_order() -> None:
    hu = np.stack([np.full((8, 8), v, np.float32) for v in (0.0, 40.0, 80.0)])
    x = prepare_volume(hu, DEFAULT_WINDOWS, (4, 4), context=1)
    assert x.shape == (3, 9, 4, 4)
    # slice 1: channels are (slice 0, slice 1, slice 2) x (brain, subdural, wide)
    brain = [x[1, 3 * k, 0, 0] for k in range(3)]
    np.testing.assert_allclose(brain, [0.0, 0.5, 1.0])
    np.testing.assert_allclose(prepare_slice(hu[1], DEFAULT_WINDOWS, (4, 4)), x[1, 3:6])


def test_resize_back_matches_scipy_bilinear() -> None:
    from scipy import ndimage

    p = np.random.default_rng(1).random((32, 48)).astype(np.float32)
    ref = ndimage.zoom(p, (100 / 32, 90 / 48), order=1, mode="nearest", grid_mode=True)
    np.testing.assert_allclose(resize_back(p, (100, 90)), ref, atol=1e-5)


@pytest.mark.parametrize("seed", range(40))
def test_resize_back_above_is_exactly_the_thresholded_resize(seed: int) -> None:
    rng = np.random.default_rng(seed)
    h, w = rng.integers(4, 64, 2)
    shape = tuple(int(v) for v in rng.integers(4, 260, 2))
    p = (rng.random((h, w)) ** rng.uniform(1, 30)).astype(np.float32)
    t = float(rng.uniform(0.2, 0.9))
    np.testing.assert_array_equal(resize_back_above(p, shape, t), resize_back(p, shape) >= t)


@pytest.mark.parametrize("seed", range(20))
def test_a_box_of_the_resize_is_bit_for_bit_that_part_of_the_whole(seed: int) -> None:
    """What lets the run compute probabilities only around a slice's mask without changing a value."""
    rng = np.random.default_rng(seed)
    h, w = (int(v) for v in rng.integers(2, 160, 2))
    shape = tuple(int(v) for v in rng.integers(2, 600, 2))
    p = rng.random((h, w)).astype(np.float32)
    whole = resize_back(p, shape)
    for _ in range(10):
        r0, c0 = int(rng.integers(0, shape[0])), int(rng.integers(0, shape[1]))
        r1, c1 = int(rng.integers(r0 + 1, shape[0] + 1)), int(rng.integers(c0 + 1, shape[1] + 1))
        part = resize_back_box(p, shape, slice(r0, r1), slice(c0, c1))
        assert part.dtype == np.float32
        np.testing.assert_array_equal(part, whole[r0:r1, c0:c1])

"""SliceMask: a box per slice with content, indexing and assignment as a dense volume would do."""

from __future__ import annotations

import numpy as np
import pytest

from edge_ich.analysis.masks import SliceMask, slice_counts, slices_with_content
from edge_ich.pipeline import postprocess


def _volume(seed: int, shape: tuple[int, int, int] = (9, 40, 50)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    vol = np.zeros(shape, dtype=np.uint8)
    for z in rng.choice(shape[0], size=shape[0] // 2, replace=False):
        y, x = rng.integers(0, shape[1] - 8), rng.integers(0, shape[2] - 8)
        vol[z, y : y + rng.integers(1, 8), x : x + rng.integers(1, 8)] = 1
        vol[z, rng.integers(0, shape[1]), rng.integers(0, shape[2])] = 1  # a stray pixel widens the box
    return vol


@pytest.mark.parametrize("seed", range(5))
def test_round_trip_counts_and_slices(seed: int) -> None:
    vol = _volume(seed)
    m = SliceMask.from_dense(vol)
    np.testing.assert_array_equal(np.asarray(m), vol)
    for z in range(vol.shape[0]):
        np.testing.assert_array_equal(m[z], vol[z])
    np.testing.assert_array_equal(slice_counts(m), slice_counts(vol))
    np.testing.assert_array_equal(slices_with_content(m), slices_with_content(vol))
    assert m.nbytes < vol.nbytes // 4  # only the boxes are kept


def test_assigning_an_empty_slice_forgets_it_and_bad_use_raises() -> None:
    m = SliceMask((3, 4, 5))
    plane = np.zeros((4, 5), bool)
    plane[1, 2] = True
    m[1] = plane
    assert m.slices() == [1] and m.any()
    m[-2] = np.zeros((4, 5), np.uint8)
    assert m.slices() == [] and not m.any()
    with pytest.raises(ValueError):
        m[0] = np.zeros((5, 4))
    with pytest.raises(IndexError):
        m[3]
    with pytest.raises(TypeError):
        m[0:2]


@pytest.mark.parametrize("seed", range(4))
def test_postprocess_gives_the_same_on_a_slicemask(seed: int) -> None:
    vol = _volume(seed, (12, 30, 30))
    dense, comps_dense = postprocess(vol.copy(), (2.0, 0.5, 0.5), np.eye(4), 3.0)
    sparse, comps_sparse = postprocess(SliceMask.from_dense(vol), (2.0, 0.5, 0.5), np.eye(4), 3.0)
    np.testing.assert_array_equal(np.asarray(sparse), dense)
    assert comps_sparse == comps_dense

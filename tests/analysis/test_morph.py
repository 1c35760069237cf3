"""The numpy morphology of the assessability gate gives what scipy.ndimage gives (default cross structure)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from edge_ich.analysis import morph
from edge_ich.analysis.labels import label4


@pytest.mark.parametrize("seed", range(40))
def test_morphology_and_labels_match_scipy(seed: int) -> None:
    rng = np.random.default_rng(seed)
    h, w = (int(v) for v in rng.integers(1, 40, 2))
    m = rng.random((h, w)) < rng.random()
    for it in (1, 2, 3):
        assert np.array_equal(morph.binary_dilation(m, it), ndimage.binary_dilation(m, iterations=it))
        assert np.array_equal(morph.binary_erosion(m, it), ndimage.binary_erosion(m, iterations=it))
        assert np.array_equal(morph.binary_closing(m, it), ndimage.binary_closing(m, iterations=it))
    assert np.array_equal(morph.binary_fill_holes(m), ndimage.binary_fill_holes(m))
    ours, n = label4(m)
    ref, k = ndimage.label(m)
    assert n == k and np.array_equal(ours, ref)
    x = rng.normal(size=(h, w)) * 50
    np.testing.assert_allclose(morph.uniform3(x), ndimage.uniform_filter(x, 3), atol=1e-9)


def test_fill_holes_fills_a_ring() -> None:
    ring = np.zeros((7, 7), dtype=bool)
    ring[1:6, 1:6] = True
    ring[3, 3] = False
    assert morph.binary_fill_holes(ring)[3, 3]

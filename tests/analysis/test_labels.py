"""The numpy labelling numbers components exactly as scipy does (the reference it replaces on the run path)."""

from __future__ import annotations

import numpy as np
import pytest

from edge_ich.analysis.labels import components, label4, label8


@pytest.mark.parametrize("seed", range(6))
def test_label8_equals_ndimage_label_full_structure(seed: int) -> None:
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    for _ in range(60):
        h, w = (int(v) for v in rng.integers(1, 80, 2))
        mask = rng.random((h, w)) < rng.uniform(0.05, 0.75)
        if rng.random() < 0.5:  # blobs as well as salt and pepper
            mask = ndimage.gaussian_filter(mask.astype(float), 1.5) > 0.3
        want, n_want = ndimage.label(mask, structure=np.ones((3, 3), bool))
        got, n_got = label8(mask.astype(np.uint8))
        assert n_got == n_want
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("seed", range(4))
def test_label4_equals_ndimage_label_default_structure(seed: int) -> None:
    from scipy import ndimage

    rng = np.random.default_rng(100 + seed)
    for _ in range(60):
        h, w = (int(v) for v in rng.integers(1, 90, 2))
        mask = rng.random((h, w)) < rng.uniform(0.05, 0.9)
        if rng.random() < 0.5:
            mask = ndimage.gaussian_filter(mask.astype(float), 1.5) > 0.3
        want, n_want = ndimage.label(mask)
        got, n_got = label4(mask)
        assert n_got == n_want
        np.testing.assert_array_equal(got, want)


def test_runs_that_fill_whole_rows_and_touch_only_at_corners() -> None:
    """Runs ending on the last column, starting on the first, and joined by one diagonal step."""
    from scipy import ndimage

    m = np.zeros((6, 9), bool)
    m[0, :] = True  # a whole row
    m[1, 0] = True  # under its first pixel
    m[2, 1:4] = True  # touches (1, 0) at a corner only
    m[3, 8] = m[4, 7] = True  # a diagonal pair at the right edge
    m[5, 0:3] = m[5, 5:9] = True  # two runs on the last row
    for fn, structure in ((label8, np.ones((3, 3), bool)), (label4, None)):
        want, n_want = ndimage.label(m, structure=structure)
        got, n_got = fn(m)
        assert n_got == n_want
        np.testing.assert_array_equal(got, want)


def test_label8_edges_and_empty() -> None:
    assert label8(np.zeros((5, 7), np.uint8))[1] == 0
    m = np.zeros((4, 4), bool)
    m[0, 3] = m[1, 2] = m[3, 0] = True  # a diagonal touch joins; a lone corner pixel stays apart
    lab, n = label8(m)
    assert n == 2 and lab[0, 3] == lab[1, 2] == 1 and lab[3, 0] == 2
    with pytest.raises(ValueError):
        label8(np.zeros((2, 2, 2)))


@pytest.mark.parametrize("seed", range(4))
def test_components_equal_csgraph(seed: int) -> None:
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    rng = np.random.default_rng(seed)
    for _ in range(80):
        n = int(rng.integers(1, 300))
        e = int(rng.integers(0, 2 * n))
        a, b = rng.integers(0, n, e), rng.integers(0, n, e)
        graph = coo_matrix((np.ones(e, np.int8), (a, b)), shape=(n, n))
        want_n, want = connected_components(graph, directed=False)
        got_n, got = components(n, a, b)
        assert got_n == want_n
        np.testing.assert_array_equal(got, want)


def test_a_long_chain_is_one_component() -> None:
    n = 5000
    order = np.random.default_rng(1).permutation(n)
    count, lab = components(n, order[:-1], order[1:])
    assert count == 1 and not lab.any()

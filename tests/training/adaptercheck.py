"""Checks shared by the dataset-adapter tests: one-line errors and adapters reading back the fixture truth."""

from __future__ import annotations

import numpy as np
import pytest

from edge_ich.errors import EdgeIchError
from tests import datafixtures as fx
from training.data import SUBTYPES, CaseList


def one_line_error(excinfo: pytest.ExceptionInfo, *fragments: str) -> str:
    """The error is an EdgeIchError with one line, no patient data, and says what it should."""
    msg = str(excinfo.value)
    assert isinstance(excinfo.value, EdgeIchError)
    assert "\n" not in msg and msg.strip() == msg and msg
    assert "ANON" not in msg and "FIXTURE" not in msg
    for f in fragments:
        assert f in msg, (f, msg)
    return msg


def assert_matches(cases: CaseList, truth: dict[str, fx.TruthCase], masks: bool = True) -> None:
    assert sorted(c.case_id for c in cases) == sorted(truth)
    for c in cases:
        t = truth[c.case_id]
        hu, spacing = c.load()
        assert hu.dtype == np.float32 and hu.shape == t.hu.shape
        np.testing.assert_array_equal(hu, t.hu)
        np.testing.assert_allclose(spacing, t.spacing, rtol=1e-5)
        assert c.slice_labels is not None and c.slice_labels.dtype == np.uint8
        np.testing.assert_array_equal(c.slice_labels, t.slice_labels)
        if t.subtype_labels is None:
            assert c.subtype_labels is None
        else:
            assert c.subtype_labels is not None and c.subtype_labels.shape == (hu.shape[0], len(SUBTYPES))
            np.testing.assert_array_equal(c.subtype_labels, t.subtype_labels)
        if masks and t.mask is not None:
            assert c.load_mask is not None
            m = c.load_mask()
            assert m.dtype == np.uint8
            np.testing.assert_array_equal(m, t.mask)

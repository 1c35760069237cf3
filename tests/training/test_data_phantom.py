"""Phantom layouts written by edge-ich read back through the training adapters with the generator's truth."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edge_ich.errors import InputError
from tests import datafixtures as fx
from tests.training.adaptercheck import one_line_error
from training.data import open_dataset

# --------------------------------------------------------------------------- phantom layouts

PHANTOM = {"cases": 3, "seed": 1, "difficulty": "standard", "slices": 5, "thickness": 5.0, "size": 64}


@pytest.fixture(scope="module")
def phantom_truth() -> list:
    from edge_ich.phantom.generator import case_seed, generate_case

    return [
        generate_case(case_seed(PHANTOM["seed"], i), difficulty="standard", slices=5, thickness=5.0, size=64)
        for i in range(PHANTOM["cases"])
    ]


@pytest.mark.parametrize(
    "layout, compress", [("dicom", True), ("rsna", False), ("physionet", False), ("instance", False)]
)
def test_phantom_layouts_read_back_the_generator_truth(
    tmp_path: Path, phantom_truth: list, layout: str, compress: bool
) -> None:
    from edge_ich.phantom.writers import write_dataset

    write_dataset(tmp_path, layout=layout, compress=compress, **PHANTOM)  # type: ignore[arg-type]
    cases = open_dataset("phantom", tmp_path)
    assert cases.meta["layout"] == layout and len(cases) == PHANTOM["cases"] and not cases.skipped
    for c in cases:
        index = int(c.meta.get("phantom_case", c.case_id).removeprefix("case_")) - (layout in ("physionet", "instance"))
        g = phantom_truth[index]
        hu, spacing = c.load()
        np.testing.assert_array_equal(hu, g.hu.astype(np.float32))
        mask = c.load_mask()
        np.testing.assert_array_equal(mask, g.labels)  # subtype codes, ascending, display orientation
        np.testing.assert_array_equal(c.slice_labels, g.slice_labels)
        np.testing.assert_array_equal(c.subtype_labels, fx.labels_from_mask(g.labels)[1])
        np.testing.assert_allclose(spacing[1:], g.spacing[1:], rtol=1e-5)
        if g.meta["tilt_deg"] == 0:
            np.testing.assert_allclose(spacing[0], g.spacing[0], rtol=1e-5)
    assert any(c.slice_labels.any() for c in cases) and any(not c.slice_labels.any() for c in cases)


def test_phantom_truth_problems_are_one_line(tmp_path: Path) -> None:
    from edge_ich.phantom.writers import write_dataset

    write_dataset(tmp_path, layout="instance", compress=False, **{**PHANTOM, "cases": 1})  # type: ignore[arg-type]
    truth = tmp_path / "truth" / "001.npz"
    with np.load(truth) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["labels"] = arrays["labels"][:-1]
    np.savez(truth, **arrays)
    with pytest.raises(InputError) as e:
        open_dataset("phantom", tmp_path)
    one_line_error(e, "case 001", "does not match scan shape")
    truth.unlink()
    with pytest.raises(InputError) as e:
        open_dataset("phantom", tmp_path)
    one_line_error(e, "phantom case 001", "001.npz not found")
    with pytest.raises(InputError) as e:
        open_dataset("phantom", tmp_path, orientation="rot90")
    one_line_error(e, "phantom instance layout has no option orientation")
    with pytest.raises(InputError) as e:
        open_dataset("phantom", tmp_path / "truth")
    one_line_error(e, "is not a phantom dataset folder")

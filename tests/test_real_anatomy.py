"""The bundled model on real anatomy: synthetic hematomas in the real head CT slices pydicom and
pydicom-data ship (CQ500 693_UNCR; J2K_pixelrep_mismatch), through `edge-ich run`'s API.

Each real slice is stacked into a 5-slice series (5 mm); an ellipsoidal clot (radius 8, 12, 16 mm;
50, 65 or 80 HU) is blended into the parenchyma. The lesion must be found (a reported region
overlapping it) and the untouched series must give no finding. Dice per case is printed and
recorded (`record_property`); benchmarks/real_anatomy.py writes the same table as a report.
The bundled model has seen phantoms only: the cases it fails (50 HU clots) are marked as expected
failures linked to the accuracy work (issue 16), not weakened; the rest must pass.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest

from edge_ich.analysis.metrics import dice
from edge_ich.card import bundled_model_path
from edge_ich.phantom.insert import (
    CASE_DENSITIES_HU,
    CASE_SIZES_MM,
    Hematoma,
    parenchyma_center,
    stack_with_hematoma,
    write_series,
)
from edge_ich.runner import RunOptions, load_model, run
from edge_ich.sources.dicom.pixels import hu_from_dataset
from tests.assess.cases import shipped

SLICES = ("693_UNCR.dcm", "J2K_pixelrep_mismatch.dcm")
N, SLICE_MM = 5, 5.0
ACCURACY_WORK = "issue 16 (weakly supervised segmentation that works): the bundled model was trained on phantoms only"
#: Measured on the bundled model (benchmarks/reports/real_anatomy, model ich_segmenter@1fdd27cc853c):
#: on the CQ500 slice, clots of 65 and 80 HU are found (Dice 0.88-0.95) and the 50 HU ones of 12 and
#: 16 mm (0.53, 0.85); the 8 mm 50 HU clot is missed on both slices: expected failures.
FAINT = pytest.mark.xfail(strict=False, reason=f"{ACCURACY_WORK}; 50 HU clots on real anatomy are missed or cut")
#: The untouched CQ500 slice gets no finding. The untouched JPEG 2000 slice gets 7 false regions, 13.6 mL in
#: all (0.77 mL with the model bundled before), and with a clot inserted the same false regions pull Dice
#: under 0.5 (0.21-0.44) unless the clot is the 16 mm one of 65 or 80 HU. False calls on real anatomy.
J2K_FALSE = pytest.mark.xfail(
    strict=True, reason=f"{ACCURACY_WORK}; 7 false regions (13.6 mL) on the untouched J2K slice"
)
J2K_SPILL = pytest.mark.xfail(
    strict=True, reason=f"{ACCURACY_WORK}; the J2K slice's false regions pull the clot's Dice under 0.5"
)


def _marks(name: str, r: float, d: float) -> list[Any]:
    if d <= 50 and r <= 8:
        return [FAINT]
    if name.startswith("J2K") and (r < 16 or d <= 50):
        return [J2K_SPILL]
    return []


CASES = [
    pytest.param(name, r, d, marks=_marks(name, r, d), id=f"{name[:8]}-r{r:g}-{d:g}HU")
    for name in SLICES
    for r in CASE_SIZES_MM
    for d in CASE_DENSITIES_HU
]


@pytest.fixture(scope="module")
def bundled() -> Any:
    path = bundled_model_path()
    if path is None:
        pytest.skip("no bundled model (engines/ich_segmenter.onnx)")
    model = load_model(path)
    yield model
    model.close()


def _real(name: str) -> tuple[Any, np.ndarray, float]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(shipped(name))
        hu = hu_from_dataset(ds)
    del ds.PixelData
    return ds, hu, float(ds.PixelSpacing[0])


def _run_case(
    tmp: Path, model: Any, name: str, lesion_mm: float | None, density: float
) -> tuple[dict, np.ndarray, np.ndarray]:
    ds, hu, px = _real(name)
    lesion = None
    if lesion_mm is not None:
        lesion = Hematoma(parenchyma_center(hu, px, lesion_mm), lesion_mm, max(lesion_mm, 7.5), density)
    vol, truth = stack_with_hematoma(hu, px, SLICE_MM, N, lesion)
    write_series(tmp / "in", ds, vol, SLICE_MM)
    res = run(
        RunOptions(series=tmp / "in", out=tmp / "out", write_seg=False, key_images=0), model=model, progress=False
    )
    return res.report, res.mask.astype(bool), truth


def _verdict(report: dict, mask: np.ndarray, truth: np.ndarray) -> tuple[bool, float]:
    found = report["finding"]["hemorrhage"] and bool((mask & truth).any())
    return found, dice(mask, truth)


@pytest.mark.slow
@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=[J2K_FALSE] if n.startswith("J2K") else [], id=n) for n in SLICES]
)
def test_untouched_real_slices_give_no_finding(tmp_path: Path, bundled: Any, name: str, record_property) -> None:
    report, mask, _ = _run_case(tmp_path, bundled, name, None, 0.0)
    record_property("regions", report["finding"]["n_components"])
    print(
        f"\n{name} untouched: {report['finding']['n_components']} region(s), {report['finding']['total_volume_ml']} mL"
    )
    assert not report["finding"]["hemorrhage"] and not mask.any()


@pytest.mark.slow
@pytest.mark.parametrize("name, radius, density", CASES)
def test_inserted_hematoma_is_found(
    tmp_path: Path, bundled: Any, name: str, radius: float, density: float, record_property
) -> None:
    report, mask, truth = _run_case(tmp_path, bundled, name, radius, density)
    found, d = _verdict(report, mask, truth)
    truth_ml = float(truth.sum()) * float(np.prod(report["input"]["spacing_mm"])) / 1000.0
    record_property("dice", round(d, 3))
    print(f"\n{name} r={radius:g} mm {density:g} HU: truth {truth_ml:.1f} mL, found={found}, Dice {d:.3f}")
    assert found, f"{name} r={radius:g} mm {density:g} HU ({truth_ml:.1f} mL) not found"
    assert d >= 0.5, f"Dice {d:.3f}"

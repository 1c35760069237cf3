"""`edge-ich run` accepts every layout `edge-ich phantom` writes, and measures what the phantom holds."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edge_ich.cli import main
from edge_ich.phantom.writers import write_dataset


def _run(args: list[str]) -> int:
    return main(args)


@pytest.fixture(scope="module")
def layouts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("layouts")
    for layout in ("dicom", "rsna", "physionet", "instance"):
        write_dataset(
            root / layout,
            cases=1,
            seed=3,
            layout=layout,
            difficulty="standard",
            slices=10,
            thickness=5.0,
            compress=False,
            size=128,
        )
    return root


def test_dicom_layout(layouts: Path, tiny_model: Path, tmp_path: Path) -> None:
    assert (
        _run(
            [
                "run",
                "--series",
                str(layouts / "dicom" / "case_000" / "dicom"),
                "--model",
                str(tiny_model),
                "--out",
                str(tmp_path),
            ]
        )
        == 0
    )
    report = json.loads((tmp_path / "report.json").read_text())
    truth = np.load(layouts / "dicom" / "case_000" / "truth.npz")
    assert report["input"]["shape"] == list(truth["labels"].shape)
    np.testing.assert_allclose(report["input"]["spacing_mm"], truth["spacing"], rtol=1e-3)


def test_rsna_layout_flat_folder(layouts: Path, tiny_model: Path, tmp_path: Path) -> None:
    assert (
        _run(
            [
                "run",
                "--series",
                str(layouts / "rsna" / "stage_2_train"),
                "--model",
                str(tiny_model),
                "--out",
                str(tmp_path),
            ]
        )
        == 0
    )
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["input"]["shape"][0] == 10


@pytest.mark.parametrize("layout, sub", [("physionet", "ct_scans"), ("instance", "data")])
def test_nifti_layouts(layouts: Path, tiny_model: Path, tmp_path: Path, layout: str, sub: str) -> None:
    (vol,) = sorted((layouts / layout / sub).glob("*.nii*"))
    assert _run(["run", "--volume", str(vol), "--model", str(tiny_model), "--out", str(tmp_path)]) == 0
    import nibabel as nib

    assert nib.load(str(tmp_path / "mask.nii.gz")).shape == nib.load(str(vol)).shape
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["input"]["kind"] == "nifti" and report["input"]["shape"][0] == 10

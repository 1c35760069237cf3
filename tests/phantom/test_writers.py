"""Phantom datasets on disk: valid DICOM (dciodvfy), exact HU round trip, layouts, same seed same bytes."""

from __future__ import annotations

import csv
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from edge_ich.errors import InputError
from edge_ich.phantom.generator import case_seed, generate_case
from edge_ich.phantom.writers import PHYSIONET_COLUMNS, RSNA_SUBTYPES, load_truth, write_dataset
from edge_ich.sources.volume import lps_to_ras

SMALL = {"difficulty": "standard", "slices": 4, "thickness": 5.0, "size": 64}


def _write(out: Path, layout: str, cases: int = 2, seed: int = 7, compress: bool = False) -> str:
    return write_dataset(out, cases=cases, seed=seed, layout=layout, compress=compress, **SMALL)  # type: ignore[arg-type]


def _expected(seed: int, i: int) -> np.ndarray:
    return generate_case(case_seed(seed, i), difficulty="standard", slices=4, thickness=5.0, size=64).hu


def _read_hu(files: list[Path]) -> tuple[np.ndarray, list]:
    """What a careful reader does: sort by position along the normal, rescale, fix the RSNA 12-bit quirk."""
    import pydicom

    dss = [pydicom.dcmread(f) for f in files]
    normal = np.cross(*np.array(dss[0].ImageOrientationPatient, float).reshape(2, 3))
    dss.sort(key=lambda d: float(np.dot(normal, np.array(d.ImagePositionPatient, float))))
    out = []
    for d in dss:
        p = d.pixel_array.astype(np.int32)
        icpt = float(d.RescaleIntercept)
        if d.BitsStored == 12 and d.PixelRepresentation == 0 and icpt > -100:
            p = p + 1000
            p[p >= 4096] -= 4096
            icpt = -1000.0
        out.append(p * float(d.RescaleSlope) + icpt)
    return np.stack(out), dss


@pytest.fixture(scope="module")
def dicom_set(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("ph") / "set"
    summary = write_dataset(out, cases=6, seed=7, layout="dicom", compress=False, **SMALL)  # type: ignore[arg-type]
    return out, summary


def test_dicom_layout_round_trips_hu_exactly(dicom_set: tuple[Path, str]) -> None:
    import pydicom

    out, summary = dicom_set
    assert "6 phantom case(s)" in summary and "dicom" in summary
    kinds = set()
    shuffled = 0
    for i in range(6):
        files = sorted((out / f"case_{i:03d}" / "dicom").glob("*.dcm"))
        assert len(files) == 4
        hu, dss = _read_hu(files)
        assert np.array_equal(hu, _expected(7, i).astype(float))
        kinds.add((dss[0].BitsStored, dss[0].PixelRepresentation, str(dss[0].RescaleIntercept)))
        # one series, consistent UIDs, distinct instances, geometry present
        assert len({d.SeriesInstanceUID for d in dss}) == 1 and len({d.StudyInstanceUID for d in dss}) == 1
        assert len({d.FrameOfReferenceUID for d in dss}) == 1 and len({d.SOPInstanceUID for d in dss}) == 4
        assert dss[0].SOPClassUID == "1.2.840.10008.5.1.4.1.1.2" and dss[0].Modality == "CT"
        assert float(dss[0].RescaleIntercept) in (-1024.0, -1000.0, 0.0)
        assert [int(d.InstanceNumber) for d in dss] == [1, 2, 3, 4]
        # file names are not in slice order, so readers must sort by position
        by_name = [int(pydicom.dcmread(f, stop_before_pixels=True).InstanceNumber) for f in files]
        shuffled += int(by_name != sorted(by_name))
        labels, slice_labels, spacing = load_truth(out / f"case_{i:03d}")
        assert labels.shape == hu.shape and np.array_equal(slice_labels.astype(bool), (labels > 0).any(axis=(1, 2)))
        assert spacing[0] == 5.0
    assert len(kinds) >= 2  # several storage schemes across cases
    assert shuffled >= 3


def test_dicom_case_table_and_nifti_truth(dicom_set: tuple[Path, str]) -> None:
    import nibabel as nib

    out, _ = dicom_set
    rows = list(csv.DictReader((out / "cases.csv").open()))
    assert [r["case"] for r in rows] == [f"case_{i:03d}" for i in range(6)]
    assert set(rows[0]) == {"case", "series_uid", "slices", "thickness_mm", "positive", "subtypes", "volume_ml"}
    labels, _, _ = load_truth(out / "case_000" / "truth.npz")
    img = nib.load(out / "case_000" / "truth_mask.nii.gz")
    assert np.array_equal(np.asarray(img.dataobj).transpose(2, 1, 0), labels)
    assert all(int(r["positive"]) == int(float(r["volume_ml"]) > 0) for r in rows)


def test_same_seed_same_bytes(tmp_path: Path) -> None:
    for layout in ("dicom", "physionet"):
        a, b = tmp_path / f"a_{layout}", tmp_path / f"b_{layout}"
        _write(a, layout, cases=1)
        _write(b, layout, cases=1)
        fa = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
        fb = sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
        assert fa == fb and fa
        assert all((a / p).read_bytes() == (b / p).read_bytes() for p in fa), layout


def test_compressed_dicom_is_jpeg2000_lossless(tmp_path: Path) -> None:
    _write(tmp_path, "dicom", cases=1, compress=True)
    files = sorted((tmp_path / "case_000" / "dicom").glob("*.dcm"))
    hu, dss = _read_hu(files)
    assert dss[0].file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.4.90"
    assert np.array_equal(hu, _expected(7, 0).astype(float))


@pytest.mark.skipif(shutil.which("dciodvfy") is None, reason="dciodvfy (dicom3tools) is not installed")
def test_dciodvfy_reports_no_errors(tmp_path: Path) -> None:
    write_dataset(
        tmp_path / "u",
        cases=3,
        seed=1,
        layout="dicom",
        difficulty="standard",
        slices=2,
        thickness=5.0,
        compress=False,
        size=64,
    )
    write_dataset(
        tmp_path / "c",
        cases=1,
        seed=1,
        layout="dicom",
        difficulty="standard",
        slices=2,
        thickness=5.0,
        compress=True,
        size=64,
    )
    files = sorted(tmp_path.rglob("*.dcm"))
    assert len(files) == 8
    for f in files:
        r = subprocess.run([shutil.which("dciodvfy") or "dciodvfy", str(f)], capture_output=True, text=True, timeout=60)
        text = r.stdout + r.stderr
        assert "CTImage" in text
        errors = [ln for ln in text.splitlines() if ln.startswith("Error")]
        assert not errors, f"{f.name}: {errors[:3]}"


def test_rsna_layout(tmp_path: Path) -> None:
    _write(tmp_path, "rsna", cases=2)
    files = sorted((tmp_path / "stage_2_train").glob("ID_*.dcm"))
    assert len(files) == 8
    lines = (tmp_path / "stage_2_train.csv").read_text().splitlines()
    assert lines[0] == "ID,Label"
    rows = [ln.split(",") for ln in lines[1:]]
    ids = {f.stem for f in files}
    assert {r[0].rsplit("_", 1)[0] for r in rows} == ids
    assert len(rows) > 6 * len(files) and len(set(map(tuple, rows))) == 6 * len(files)  # duplicates, as in the real CSV
    label = {r[0]: int(r[1]) for r in rows}
    for i in range(2):
        with np.load(tmp_path / "truth" / f"case_{i:03d}.npz") as z:
            for sid, lab in zip(z["ids"], z["labels"]):
                present = {int(v) for v in np.unique(lab) if v}
                assert label[f"{sid}_any"] == int(bool(present))
                assert label[f"{sid}_{RSNA_SUBTYPES[1]}"] == int(2 in present)
            hu, _ = _read_hu([tmp_path / "stage_2_train" / f"{sid}.dcm" for sid in z["ids"]])
            assert np.array_equal(hu, _expected(7, i).astype(float))


def test_physionet_layout(tmp_path: Path) -> None:
    import nibabel as nib

    _write(tmp_path, "physionet", cases=2)
    rows = list(csv.DictReader((tmp_path / "hemorrhage_diagnosis_raw_ct.csv").open()))
    assert tuple(rows[0]) == PHYSIONET_COLUMNS and len(rows) == 8
    for i in range(2):
        ct = nib.load(tmp_path / "ct_scans" / f"{i + 1:03d}.nii")
        mask = np.asarray(nib.load(tmp_path / "masks" / f"{i + 1:03d}.nii").dataobj)
        vol = np.asarray(ct.dataobj)
        assert vol.shape == (64, 64, 4) and set(np.unique(mask)) <= {0, 255}
        assert np.array_equal(vol.transpose(2, 1, 0), _expected(7, i))
        case = generate_case(case_seed(7, i), difficulty="standard", slices=4, thickness=5.0, size=64)
        assert np.allclose(ct.affine, lps_to_ras(case.affine_lps), atol=1e-4)  # a readable, true affine
        mine = [r for r in rows if int(r["PatientNumber"]) == i + 1]
        assert [int(r["SliceNumber"]) for r in mine] == [1, 2, 3, 4]
        for r in mine:
            k = int(r["SliceNumber"]) - 1
            assert int(r["No_Hemorrhage"]) == int(not mask[:, :, k].any())


def test_instance_layout(tmp_path: Path) -> None:
    import nibabel as nib

    summary = _write(tmp_path, "instance", cases=1)
    assert "instance" in summary
    vol = np.asarray(nib.load(tmp_path / "data" / "001.nii.gz").dataobj)
    lab = np.asarray(nib.load(tmp_path / "label" / "001.nii.gz").dataobj)
    assert np.array_equal(vol.transpose(2, 1, 0), _expected(7, 0)) and set(np.unique(lab)) <= {0, 1}


def test_bad_layout_and_options(tmp_path: Path) -> None:
    with pytest.raises(InputError):
        _write(tmp_path, "nnunet")
    with pytest.raises(InputError):
        _write(tmp_path, "physionet", compress=True)
    with pytest.raises(InputError):
        load_truth(tmp_path / "nowhere")

"""`edge-ich run` end to end through the CLI: real slices in, every output out and consistent."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from edge_ich.cli import main
from edge_ich.errors import InputError
from tests.dicomkit import PATIENT_ID, PATIENT_NAME, make_series
from tests.test_bad_input import SERIES_CASES, VOLUME_CASES

SCHEMA = Path(__file__).resolve().parents[1] / "edge_ich" / "schemas" / "report.schema.json"


def _run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(args)
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def _validate(report: dict) -> None:
    import jsonschema

    jsonschema.validate(report, json.loads(SCHEMA.read_text()))


def _mask_from_nifti(path: Path) -> np.ndarray:
    import nibabel as nib

    data = np.asarray(nib.load(str(path)).dataobj)  # (x, y, z) = (col, row, slice)
    return np.transpose(data, (2, 1, 0)).astype(bool)


@pytest.mark.parametrize("variant", ["plain", "reverse", "flip", "jpeg2000-source"])
def test_run_writes_consistent_outputs(tmp_path: Path, tiny_model: Path, real_ct_files, variant: str, capsys) -> None:
    src = real_ct_files["J2K_pixelrep_mismatch.dcm"] if variant == "jpeg2000-source" else None
    files = make_series(
        tmp_path / "series", n=6, size=128, from_file=src, reverse=variant == "reverse", flip=variant == "flip"
    )
    out = tmp_path / "out"
    code, stdout, err = _run(
        ["run", "--series", str(tmp_path / "series"), "--model", str(tiny_model), "--out", str(out)], capsys
    )
    assert code == 0, err
    assert stdout.count("\n") == 1 and str(out) in stdout
    report = json.loads((out / "report.json").read_text())
    _validate(report)
    assert report["input"]["shape"][0] == len(files)
    mask = _mask_from_nifti(out / "mask.nii.gz")
    assert mask.shape == tuple(report["input"]["shape"])
    # the report's per-slice areas are the mask's
    areas = mask.reshape(mask.shape[0], -1).sum(axis=1) * np.prod(report["input"]["spacing_mm"][1:])
    np.testing.assert_allclose([s["lesion_area_mm2"] for s in report["slices"]], areas, rtol=1e-3, atol=0.01)
    assert report["finding"]["hemorrhage"] == bool(mask.any())
    vol = mask.sum() * np.prod(report["input"]["spacing_mm"]) / 1000
    assert report["finding"]["total_volume_ml"] == pytest.approx(vol, rel=1e-3, abs=1e-3)
    # the SEG, read back per source slice, equals the NIfTI mask
    from edge_ich.outputs.seg import read_seg_mask

    sops = [s["sop_instance_uid"] for s in report["slices"]]
    np.testing.assert_array_equal(read_seg_mask(out / "seg.dcm", sops), mask)
    assert len(report["outputs"]["key_images"]) == min(3, int((areas > 0).sum()))
    for k in report["outputs"]["key_images"]:
        assert (out / k).is_file()
    assert not list(out.glob(".edge-ich-*")), "staging left behind"


def test_seg_is_valid_dicom(tmp_path: Path, tiny_model: Path, capsys) -> None:
    dciodvfy = shutil.which("dciodvfy")
    if dciodvfy is None:
        pytest.skip("dciodvfy (dicom3tools) not installed")
    make_series(tmp_path / "series", n=5, size=128)
    code, _, err = _run(
        ["run", "--series", str(tmp_path / "series"), "--model", str(tiny_model), "--out", str(tmp_path / "o")], capsys
    )
    assert code == 0, err
    res = subprocess.run([dciodvfy, str(tmp_path / "o" / "seg.dcm")], capture_output=True, text=True)
    errors = [ln for ln in (res.stdout + res.stderr).splitlines() if ln.startswith("Error")]
    assert res.returncode == 0 and not errors, errors


def test_outputs_are_readable_like_any_new_file(tmp_path: Path, tiny_model: Path, capsys) -> None:
    """Atomic writes go through mkstemp (mode 0600); published outputs must carry the usual mode instead,
    so a PACS forwarder or viewer running as another user can read them."""
    import os

    make_series(tmp_path / "series", n=5, size=128)
    code, _, err = _run(
        ["run", "--series", str(tmp_path / "series"), "--model", str(tiny_model), "--out", str(tmp_path / "o")], capsys
    )
    assert code == 0, err
    plain = tmp_path / "plain"
    plain.write_text("x")
    expected = plain.stat().st_mode & 0o777
    files = [p for p in (tmp_path / "o").rglob("*") if p.is_file()]
    assert {"report.json", "seg.dcm", "mask.nii.gz"} <= {p.name for p in files}
    assert {p.name: p.stat().st_mode & 0o777 for p in files} == {p.name: expected for p in files}
    assert not [p for p in (tmp_path / "o").iterdir() if p.name.startswith(".edge-ich-staging-")]
    assert os.access(tmp_path / "o" / "report.json", os.R_OK)


def test_json_flag_prints_the_report(tmp_path: Path, tiny_model: Path, capsys) -> None:
    make_series(tmp_path / "series", n=4, size=64)
    code, stdout, _ = _run(
        [
            "run",
            "--series",
            str(tmp_path / "series"),
            "--model",
            str(tiny_model),
            "--out",
            str(tmp_path / "o"),
            "--json",
            "--no-seg",
        ],
        capsys,
    )
    assert code == 0
    report = json.loads(stdout)
    _validate(report)
    assert "seg" not in report["outputs"] and not (tmp_path / "o" / "seg.dcm").exists()
    assert PATIENT_NAME not in stdout and PATIENT_ID not in stdout


def _head_nifti(path: Path, slices: int = 7, blob: bool = True) -> tuple[np.ndarray, np.ndarray, tuple[slice, slice]]:
    """A NIfTI head CT in HU from the real CQ500 slice (decimated to 128x128), an 80 HU blob in the brain
    on slices 2-4. Returns (data x,y,z, affine, the blob's (x, y) box)."""
    import nibabel as nib
    import pydicom

    from edge_ich.sources.dicom.pixels import hu_from_dataset
    from tests.dicomkit import default_source

    ds = pydicom.dcmread(default_source())
    hu = hu_from_dataset(ds)[::4, ::4]  # [row, col], 1.91 mm pixels: a 245 mm field of view
    px = float(ds.PixelSpacing[0]) * 4
    data = np.repeat(hu.T[:, :, None], slices, axis=2).astype(np.float32)  # (x=col, y=row, z)
    box = (slice(56, 72), slice(46, 62))  # inside the brain of this slice
    if blob:
        data[box[0], box[1], 2:5] = 80.0
    affine = np.array([[-px, 0, 0, 20], [0, px, 0, -30], [0, 0, 5.0, 7], [0, 0, 0, 1]])
    nib.save(nib.Nifti1Image(data, affine), str(path))
    return data, affine, box


def test_volume_input_mask_matches_input_grid(tmp_path: Path, tiny_model: Path, capsys) -> None:
    """The mask of a NIfTI input has exactly the input's shape and affine (fixture: a real head slice
    stacked into a volume; before the assessability gate it was a noise cube, which is not a head)."""
    import nibabel as nib

    data, affine, box = _head_nifti(tmp_path / "ct.nii.gz")
    code, _, err = _run(
        ["run", "--volume", str(tmp_path / "ct.nii.gz"), "--model", str(tiny_model), "--out", str(tmp_path / "o")],
        capsys,
    )
    assert code == 0, err
    out = nib.load(str(tmp_path / "o" / "mask.nii.gz"))
    assert out.shape == data.shape
    np.testing.assert_allclose(out.affine, affine)
    m = np.asarray(out.dataobj).astype(bool)
    inner = (slice(box[0].start + 4, box[0].stop - 4), slice(box[1].start + 4, box[1].stop - 4))
    assert m[inner[0], inner[1], 3].all() and not m[box[0], box[1], 0].any()
    np.testing.assert_array_equal(m[:, :, 0], m[:, :, 6])  # same input and context, same answer


# ---- bad input through the CLI: exit 1, one line, nothing written ----


def _assert_refused(code: int, stdout: str, err: str, out: Path) -> None:
    assert code == 1, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("edge-ich: error:"), err
    assert "Traceback" not in err and PATIENT_NAME not in err and PATIENT_ID not in err
    assert stdout == ""
    written = list(out.rglob("*")) if out.exists() else []
    assert written == [], written


@pytest.mark.parametrize("name", list(SERIES_CASES))
def test_bad_series_exit_1_nothing_written(tmp_path: Path, tiny_model: Path, name: str, capsys) -> None:
    root = SERIES_CASES[name](tmp_path)
    out = tmp_path / "out"
    code, stdout, err = _run(["run", "--series", str(root), "--model", str(tiny_model), "--out", str(out)], capsys)
    _assert_refused(code, stdout, err, out)


@pytest.mark.parametrize("name", list(VOLUME_CASES))
def test_bad_volume_exit_1_nothing_written(tmp_path: Path, tiny_model: Path, name: str, capsys) -> None:
    path = VOLUME_CASES[name](tmp_path)
    out = tmp_path / "out"
    code, stdout, err = _run(["run", "--volume", str(path), "--model", str(tiny_model), "--out", str(out)], capsys)
    _assert_refused(code, stdout, err, out)


def _model_without_card(tmp: Path, tiny: Path) -> Path:
    shutil.copy(tiny, tmp / "nocard.onnx")
    return tmp / "nocard.onnx"


def _corrupt_onnx(tmp: Path, tiny: Path) -> Path:
    from edge_ich.card import card_path_for, load_card, sha256_file

    bad = tmp / "corrupt.onnx"
    bad.write_bytes(tiny.read_bytes()[:200])
    card = load_card(tiny)
    card.model_sha256 = sha256_file(bad)  # the card matches the file, the file is broken
    card.save(card_path_for(bad))
    return bad


def _missing_model(tmp: Path, tiny: Path) -> Path:
    return tmp / "nothere.onnx"


@pytest.mark.parametrize("make_model", [_model_without_card, _corrupt_onnx, _missing_model])
def test_bad_model_exit_1_nothing_written(tmp_path: Path, tiny_model: Path, make_model, capsys) -> None:
    make_series(tmp_path / "series", n=3, size=64)
    model = make_model(tmp_path, tiny_model)
    out = tmp_path / "out"
    code, stdout, err = _run(
        ["run", "--series", str(tmp_path / "series"), "--model", str(model), "--out", str(out)], capsys
    )
    _assert_refused(code, stdout, err, out)


def test_a_bad_series_is_told_before_a_bad_model(tmp_path: Path, tiny_model, capsys) -> None:
    out = tmp_path / "out"
    empty = tmp_path / "empty"
    empty.mkdir()
    code, stdout, err = _run(
        ["run", "--series", str(empty), "--model", str(tmp_path / "x.onnx"), "--out", str(out)], capsys
    )
    _assert_refused(code, stdout, err, out)
    assert "model" not in err.lower() and "x.onnx" not in err


def test_unwritable_out_exit_1(tmp_path: Path, tiny_model: Path, capsys) -> None:
    make_series(tmp_path / "series", n=3, size=64)
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    code, stdout, err = _run(
        ["run", "--series", str(tmp_path / "series"), "--model", str(tiny_model), "--out", str(blocker / "sub")], capsys
    )
    assert code == 1 and "cannot write" in err and stdout == ""
    code, _, err = _run(
        ["run", "--series", str(tmp_path / "series"), "--model", str(tiny_model), "--out", str(blocker)], capsys
    )
    assert code == 1 and "not a folder" in err


def test_series_and_volume_are_exclusive(tmp_path: Path, tiny_model: Path, capsys) -> None:
    code, _, err = _run(["run", "--model", str(tiny_model), "--out", str(tmp_path / "o")], capsys)
    assert code == 1 and "exactly one" in err
    code, _, err = _run(
        [
            "run",
            "--series",
            str(tmp_path),
            "--volume",
            str(tmp_path / "v.nii"),
            "--model",
            str(tiny_model),
            "--out",
            str(tmp_path / "o"),
        ],
        capsys,
    )
    assert code == 1 and "exactly one" in err


def test_failed_output_keeps_previous_result(tmp_path: Path, tiny_model: Path, capsys, monkeypatch) -> None:
    """A writer failing midway leaves the earlier complete result untouched (no half set)."""
    make_series(tmp_path / "series", n=4, size=64)
    out = tmp_path / "o"
    assert (
        _run(["run", "--series", str(tmp_path / "series"), "--model", str(tiny_model), "--out", str(out)], capsys)[0]
        == 0
    )
    before = {p.name: p.read_bytes() for p in out.glob("*") if p.is_file()}
    import edge_ich.outputs.seg as seg_mod

    def broken(*a, **k):  # the environment failing under the writer, e.g. a full disk
        raise InputError("SEG writer failed (simulated full disk)")

    monkeypatch.setattr(seg_mod, "write_seg", broken)
    code, _, err = _run(
        ["run", "--series", str(tmp_path / "series"), "--model", str(tiny_model), "--out", str(out)], capsys
    )
    assert code == 1 and "simulated" in err
    after = {p.name: p.read_bytes() for p in out.glob("*") if p.is_file()}
    assert after == before
    assert not list(out.glob(".edge-ich-*"))

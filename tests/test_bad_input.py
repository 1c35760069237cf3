"""Bad input, reader side: each case is refused with an InputError of one line that carries no patient data.

`SERIES_CASES` / `VOLUME_CASES` map a case name to a builder(tmp_path) -> path, so the runner's
cases (exit 1 through the CLI, nothing half-written) can reuse the same inputs.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from edge_ich.errors import InputError
from edge_ich.sources.dicom.source import open_series
from edge_ich.sources.nifti import open_volume
from tests.dicomkit import PATIENT_ID, PATIENT_NAME, edit, make_series, truncate, write_text

Builder = Callable[[Path], Path]


def _empty(tmp: Path) -> Path:
    (tmp / "empty").mkdir()
    return tmp / "empty"


def _missing_dir(tmp: Path) -> Path:
    return tmp / "does-not-exist"


def _no_dicom(tmp: Path) -> Path:
    write_text(tmp / "d" / "readme.txt")
    (tmp / "d" / "image.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 100)
    return tmp / "d"


def _truncated_only(tmp: Path) -> Path:
    for p in make_series(tmp / "d", n=2, size=64):
        truncate(p, 0.3)
    return tmp / "d"


def _truncated_header(tmp: Path) -> Path:
    p = make_series(tmp / "d", n=1, size=64)[0]
    p.write_bytes(p.read_bytes()[:300])
    return tmp / "d"


def _localizer_only(tmp: Path) -> Path:
    for p in make_series(tmp / "d", n=2, size=64):
        edit(p, lambda ds: setattr(ds, "ImageType", ["ORIGINAL", "PRIMARY", "LOCALIZER"]))
    return tmp / "d"


def _one_slice(tmp: Path) -> Path:
    make_series(tmp / "d", n=1, size=64)
    return tmp / "d"


def _duplicate_positions(tmp: Path) -> Path:
    """Two different images at the same position (two acquisitions stored as one series)."""
    from pydicom.uid import generate_uid

    paths = make_series(tmp / "d", n=4, size=64)
    other = Path(shutil.copy(paths[1], tmp / "d" / "second_acquisition"))

    def differ(ds) -> None:
        ds.SOPInstanceUID = generate_uid()
        arr = ds.pixel_array.copy()
        arr[20:30, 20:30] += 50
        ds.PixelData = arr.tobytes()

    edit(other, differ)
    return tmp / "d"


def _missing_slices(tmp: Path) -> Path:
    paths = make_series(tmp / "d", n=8, size=64)
    paths[3].unlink()
    paths[4].unlink()
    return tmp / "d"


def _mixed_series(tmp: Path) -> Path:
    """One SeriesInstanceUID holding two stacks of different image size."""
    a = make_series(tmp / "d" / "a", n=4, size=64, series_uid="1.2.826.0.1.3680043.10.1.1")
    make_series(tmp / "d" / "b", n=4, size=128, series_uid="1.2.826.0.1.3680043.10.1.1", spacing=5.0)
    assert a
    return tmp / "d"


def _missing_position(tmp: Path) -> Path:
    for p in make_series(tmp / "d", n=4, size=64):
        edit(p, lambda ds: delattr(ds, "ImagePositionPatient"))
    return tmp / "d"


def _missing_pixel_data(tmp: Path) -> Path:
    for p in make_series(tmp / "d", n=3, size=64):
        edit(p, lambda ds: delattr(ds, "PixelData"))
    return tmp / "d"


def _non_axial(tmp: Path) -> Path:
    for p in make_series(tmp / "d", n=3, size=64):
        edit(p, lambda ds: setattr(ds, "ImageOrientationPatient", [0, 1, 0, 0, 0, -1]))
    return tmp / "d"


def _enhanced_only(tmp: Path) -> Path:
    from pydicom.data import get_testdata_file

    src = get_testdata_file("eCT_Supplemental.dcm")
    if src is None:
        pytest.skip("pydicom-data's eCT_Supplemental.dcm is not installed")
    (tmp / "d").mkdir()
    shutil.copy(src, tmp / "d" / "enhanced.dcm")
    return tmp / "d"


def _series_path_is_a_file(tmp: Path) -> Path:
    return make_series(tmp / "d", n=2, size=64)[0]


def _all_same_position(tmp: Path) -> Path:
    """Copies of one slice with new UIDs and identical pixels: one position only."""
    from pydicom.uid import generate_uid

    paths = make_series(tmp / "d", n=1, size=64)
    for k in range(3):
        extra = Path(shutil.copy(paths[0], tmp / "d" / f"copy{k}"))
        edit(extra, lambda ds: setattr(ds, "SOPInstanceUID", generate_uid()))
    return tmp / "d"


SERIES_CASES: dict[str, Builder] = {
    "empty dir": _empty,
    "missing dir": _missing_dir,
    "no DICOM": _no_dicom,
    "truncated files": _truncated_only,
    "truncated header": _truncated_header,
    "localizer only": _localizer_only,
    "one slice": _one_slice,
    "duplicate positions": _duplicate_positions,
    "missing slices": _missing_slices,
    "mixed series": _mixed_series,
    "missing ImagePositionPatient": _missing_position,
    "missing pixel data": _missing_pixel_data,
    "non-axial": _non_axial,
    "enhanced CT only": _enhanced_only,
    "series path is a file": _series_path_is_a_file,
    "all slices at one position": _all_same_position,
}


def _assert_clean(err: InputError) -> str:
    msg = str(err)
    assert msg and "\n" not in msg, msg
    for secret in (PATIENT_NAME, PATIENT_ID, "Secret", "CQ500", "pytest-of"):
        assert secret not in msg, msg
    assert len(msg) < 300, msg
    return msg


@pytest.mark.parametrize("name", list(SERIES_CASES))
def test_series_input_refused(tmp_path: Path, name: str) -> None:
    root = SERIES_CASES[name](tmp_path)
    with pytest.raises(InputError) as err:
        open_series(root)
    _assert_clean(err.value)


EXPECTED_WORDS = {
    "empty dir": "no files",
    "no DICOM": "not DICOM",
    "truncated files": "truncated",
    "truncated header": "truncated",
    "localizer only": "localizer",
    "one slice": "one",
    "duplicate positions": "duplicate",
    "missing slices": "missing slices",
    "mixed series": "mixes",
    "missing ImagePositionPatient": "ImagePositionPatient",
    "missing pixel data": "no pixel data",
    "non-axial": "not axial",
    "enhanced CT only": "Enhanced",
}


@pytest.mark.parametrize("name", list(EXPECTED_WORDS))
def test_series_refusal_says_why(tmp_path: Path, name: str) -> None:
    with pytest.raises(InputError) as err:
        open_series(SERIES_CASES[name](tmp_path))
    assert EXPECTED_WORDS[name] in _assert_clean(err.value)


def test_unknown_series_uid_refused(tmp_path: Path) -> None:
    make_series(tmp_path / "d", n=3, size=64)
    with pytest.raises(InputError) as err:
        open_series(tmp_path / "d", series_uid="1.2.3.999")
    assert "SeriesInstanceUID" in _assert_clean(err.value)


def test_undecodable_slice_refused_on_read(tmp_path: Path) -> None:
    from pydicom.encaps import encapsulate
    from pydicom.uid import RLELossless

    paths = make_series(tmp_path / "d", n=3, size=64, transfer_syntax=RLELossless)
    edit(paths[2], lambda ds: setattr(ds, "PixelData", encapsulate([b"\x01\x02\x03" * 10])))
    s = open_series(tmp_path / "d")
    with pytest.raises(InputError) as err:
        s.read_hu(2)
    _assert_clean(err.value)


# --- NIfTI ----------------------------------------------------------------------------------------------------------


def _nifti(tmp: Path, data: np.ndarray, affine: np.ndarray | None = None, name: str = "v.nii.gz") -> Path:
    import nibabel as nib

    p = tmp / name
    nib.save(nib.Nifti1Image(data, np.eye(4) if affine is None else affine), str(p))
    return p


def _patched_sform(tmp: Path, offset: int, value: float, name: str) -> Path:
    """A valid .nii whose sform (qform off) gets one float replaced at byte offset (srow_x at 280, _y 296, _z 312)."""
    import struct

    p = _nifti(tmp, np.zeros((4, 4, 3), np.int16), name=name)
    raw = bytearray(p.read_bytes())
    raw[252:254] = struct.pack("<h", 0)  # qform_code 0
    raw[254:256] = struct.pack("<h", 1)  # sform_code 1
    raw[offset : offset + 4] = struct.pack("<f", value)
    p.write_bytes(bytes(raw))
    return p


def _nan_affine(tmp: Path) -> Path:
    return _patched_sform(tmp, 280, float("nan"), "nan.nii")


def _singular_affine(tmp: Path) -> Path:
    return _patched_sform(tmp, 320, 0.0, "flat.nii")  # srow_z[2] = 0: zero slice spacing


VOLUME_CASES: dict[str, Builder] = {
    "2D volume": lambda tmp: _nifti(tmp, np.zeros((8, 8), np.int16)),
    "4D volume": lambda tmp: _nifti(tmp, np.zeros((4, 4, 3, 2), np.int16)),
    "one-slice volume": lambda tmp: _nifti(tmp, np.zeros((4, 4, 1), np.int16)),
    "singular affine": _singular_affine,
    "non-finite affine": _nan_affine,
    "not NIfTI": lambda tmp: write_text(tmp / "garbage.nii.gz", "hello"),
    "wrong extension": lambda tmp: write_text(tmp / "volume.mha", "x"),
    "missing file": lambda tmp: tmp / "absent.nii",
    "RGB volume": lambda tmp: _rgb(tmp),
}


def _rgb(tmp: Path) -> Path:
    import nibabel as nib

    rgb = np.zeros((4, 4, 3), dtype=[("R", "u1"), ("G", "u1"), ("B", "u1")])
    p = tmp / "rgb.nii"
    nib.save(nib.Nifti1Image(rgb, np.eye(4)), str(p))
    return p


@pytest.mark.parametrize("name", list(VOLUME_CASES))
def test_volume_input_refused(tmp_path: Path, name: str) -> None:
    path = VOLUME_CASES[name](tmp_path)
    with pytest.raises(InputError) as err:
        open_volume(path)
    _assert_clean(err.value)


def test_nan_voxels_refused_on_read(tmp_path: Path) -> None:
    data = np.zeros((4, 4, 3), np.float32)
    data[1, 1, 2] = np.nan
    v = open_volume(_nifti(tmp_path, data))
    assert v.read_hu(0).shape == (4, 4)
    with pytest.raises(InputError) as err:
        v.read_hu(2)
    assert "non-finite" in _assert_clean(err.value)


def test_corrupted_bytes_never_crash(tmp_path: Path) -> None:
    """Randomly damaged copies of a real-slice series: every outcome is a series or a one-line InputError."""
    import random
    import warnings

    from edge_ich.sources.dicom.discover import discover
    from edge_ich.sources.dicom.source import DicomSeries

    paths = make_series(tmp_path / "src", n=4, size=64)
    rng = random.Random(1)
    root = tmp_path / "damaged"
    root.mkdir()
    for k in range(60):
        data = bytearray(paths[k % 4].read_bytes())
        for _ in range(rng.randint(1, 20)):
            i = rng.randrange(128, 1800)
            data[i] = rng.randrange(256)
        if k % 3 == 0:
            data = data[: rng.randrange(100, len(data))]
        (root / f"f{k}").write_bytes(bytes(data))
    (root / "noise").write_bytes(bytes(rng.randrange(256) for _ in range(1000)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = discover(root)
        assert result.skipped and all(s.reason for s in result.skipped)
        outcomes = 0
        for cand in result.candidates:
            try:
                s = DicomSeries(cand, root=root)
                for i in range(len(s)):
                    try:
                        assert s.read_hu(i).dtype == np.float32
                    except InputError as err:
                        _assert_clean(err)
            except InputError as err:
                _assert_clean(err)
            outcomes += 1
    assert outcomes == len(result.candidates)

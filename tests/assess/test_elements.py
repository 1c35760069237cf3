"""Every header element used is validated in one place (edge_ich/sources/dicom/elements.py)."""

from __future__ import annotations

import io
from pathlib import Path

import pydicom
import pytest

from edge_ich.cli import main
from edge_ich.errors import InputError
from edge_ich.sources.dicom import elements
from edge_ich.sources.dicom.source import open_series
from tests.assess.cases import put_raw
from tests.dicomkit import edit, make_series

_VR = {"float": "DS", "int": "IS", "code": "CS", "uid": "UI", "text": "LO"}
SECRET = b"Secret9"


def _reread(ds: pydicom.Dataset) -> pydicom.Dataset:
    buf = io.BytesIO()
    ds.save_as(buf)
    buf.seek(0)
    return pydicom.dcmread(buf, force=True)


def _bad_values(spec: elements.Spec) -> list[bytes]:
    """Raw values that break the spec: too few/many values, not a number, out of range."""
    lo, hi = spec.vm
    out = []
    if hi is not None:
        out.append(b"\\".join([b"1"] * (hi + 1)))
    if lo > 1:
        out.append(b"1")
    if spec.kind in ("float", "int"):
        out += [b"\\".join([SECRET] * lo), b"\\".join([b"nan"] * lo)]
        if spec.hi is not None:
            out.append(b"\\".join([str(spec.hi * 10 + 10).encode()] * lo))
        if spec.kind == "int":
            out.append(b"\\".join([b"1.5"] * lo))
    elif spec.kind in ("uid", "code"):
        out.append(SECRET + b"*#" * 40)
    return out


CASES = [(kw, v) for kw, spec in elements.SPECS.items() for v in _bad_values(spec)]


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("keyword, raw", CASES)
def test_bad_element_is_named_never_its_value(keyword: str, raw: bytes) -> None:
    spec = elements.SPECS[keyword]
    ds = pydicom.Dataset()
    ds.file_meta = pydicom.dataset.FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    put_raw(ds, keyword, _VR[spec.kind], raw)  # binary US elements stored as IS text: a wrong VR, as in the wild
    back = _reread(ds)
    with pytest.raises(elements.ElementError) as err:
        elements.values(back, keyword)
    msg = str(err.value)
    assert keyword in msg and "Secret" not in msg and "\n" not in msg
    assert [p.keyword for p in elements.problems(back)] == [keyword]
    if not spec.critical:
        assert elements.optional(back, keyword) is None  # informational: ignored, and listed as ignored


def test_good_values_pass_and_multi_valued_rescale_takes_the_first() -> None:
    ds = pydicom.Dataset()
    ds.RescaleSlope = ["1", "2"]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.Rows = 512
    assert elements.first(ds, "RescaleSlope") == 1.0
    assert elements.values(ds, "ImageOrientationPatient") == [1, 0, 0, 0, 1, 0]
    assert elements.first(ds, "Rows") == 512 and elements.first(ds, "Modality") is None
    with pytest.raises(elements.ElementError, match="missing Modality"):
        elements.required(ds, "Modality")


def test_single_valued_orientation_everywhere_is_one_line_naming_it(tmp_path: Path, tiny_model: Path, capsys) -> None:
    """Was a traceback in discovery (axial_normal)."""
    for p in make_series(tmp_path / "d", n=4, size=64):
        edit(p, lambda ds: setattr(ds, "ImageOrientationPatient", "1"))
    with pytest.raises(InputError, match="invalid ImageOrientationPatient"):
        open_series(tmp_path / "d")
    code = main(["run", "--series", str(tmp_path / "d"), "--model", str(tiny_model), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 1 and len(err.splitlines()) == 1 and "ImageOrientationPatient" in err and "Traceback" not in err


def test_one_bad_slice_is_excluded_and_said_so(tmp_path: Path) -> None:
    from edge_ich.assess import source_warnings

    paths = make_series(tmp_path / "d", n=8, size=64)
    edit(paths[5], lambda ds: setattr(ds, "PixelSpacing", ["0.5", "0.5", "0.5"]))
    s = open_series(tmp_path / "d")
    assert len(s.present_headers) == 7 and s.geometry.missing == (5,)
    (w,) = [w for w in source_warnings(s) if w.code == "slices_excluded"]
    assert "invalid PixelSpacing" in w.message

"""Headers whose repeated elements share one object read exactly as pydicom reads them alone."""

from __future__ import annotations

from pathlib import Path

import pydicom

from edge_ich.sources.dicom.discover import discover
from tests.assess.cases import put_raw
from tests.dicomkit import edit, make_series


def _values(ds: pydicom.Dataset) -> dict[str, tuple[str, str]]:
    out = {}
    for tag in list(ds.keys()):
        try:
            e = ds[tag]
            out[str(tag)] = (str(e.VR), repr(e.value))
        except Exception as exc:  # a value pydicom refuses: the same refusal either way
            out[str(tag)] = ("refused", type(exc).__name__)
    return out


def test_shared_headers_read_as_alone_and_share_only_repeats(tmp_path: Path) -> None:
    paths = make_series(tmp_path / "s", n=6)
    # two slices with a value that is no DS number: read (with pydicom's warning) as it reads alone
    for k in (3, 4):
        edit(paths[k], lambda ds: put_raw(ds, "WindowCenter", "DS", b"abc"))
    cands = discover(tmp_path / "s").candidates
    assert len(cands) == 1
    headers = [cands[0].headers[p] for p in paths]
    for p, h in zip(paths, headers):
        alone = pydicom.dcmread(p, stop_before_pixels=True)
        assert _values(h) == _values(alone)
        assert _values(h.file_meta) == _values(alone.file_meta)
    for kw in ("StudyInstanceUID", "Rows", "PatientID", "ImageOrientationPatient"):
        # one object for the repeats: the first header keeps its raw element, the others share one
        assert len({id(h._dict[pydicom.tag.Tag(kw)]) for h in headers}) == 2, kw
    for kw in ("SOPInstanceUID", "ImagePositionPatient"):  # a value of its own is never shared
        assert len({id(h._dict[pydicom.tag.Tag(kw)]) for h in headers}) == len(headers)

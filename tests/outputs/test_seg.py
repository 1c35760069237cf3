"""DICOM SEG writer: valid per dciodvfy, read back by highdicom equal to the mask per source slice."""

from __future__ import annotations

import logging
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest

from edge_ich.errors import InputError, OutputError
from edge_ich.outputs.seg import SEGMENT_LABEL, derived_frame_of_reference_uid, read_seg_mask, write_seg
from tests.outputs_series import blob_mask, make_series

DCIODVFY = "/usr/bin/dciodvfy"


def dciodvfy_errors(path: Path) -> list[str]:
    """Error lines dciodvfy reports for `path` (skips the test when dicom3tools is absent)."""
    if not Path(DCIODVFY).exists():
        pytest.skip("dicom3tools (dciodvfy) not installed")
    proc = subprocess.run([DCIODVFY, str(path)], capture_output=True, text=True, timeout=120)
    errors = [ln for ln in (proc.stdout + proc.stderr).splitlines() if ln.startswith("Error")]
    assert (proc.returncode == 0) == (not errors), proc.stdout + proc.stderr
    return errors


def _write(tmp_path: Path, series, mask: np.ndarray, name: str = "seg.dcm") -> Path:
    out = tmp_path / "out" / name
    write_seg(out, mask, series.headers, algorithm_name="edge-ich-test", algorithm_version="abc123")
    return out


@pytest.mark.parametrize(
    "kind",
    ["plain", "reverse", "flip_row", "ct_small"],
)
def test_seg_valid_and_reads_back_per_source_slice(tmp_path: Path, kind: str) -> None:
    if kind == "ct_small":
        series = make_series(tmp_path / "src", 4, base="CT_small.dcm")
    else:
        series = make_series(
            tmp_path / "src", 5, reverse=kind == "reverse", flip_row=kind == "flip_row", frame_of_reference=True
        )
    mask = blob_mask(series.geometry.shape, seed=len(kind))
    out = _write(tmp_path, series, mask)

    assert dciodvfy_errors(out) == []
    back = read_seg_mask(out, series.sop_instance_uids)
    assert back.dtype == np.bool_
    np.testing.assert_array_equal(back, mask)
    # frames are tied to the sorted source slices by UID: a shuffled request comes back shuffled
    perm = np.random.default_rng(1).permutation(len(series.headers))
    shuffled = read_seg_mask(out, [series.sop_instance_uids[k] for k in perm])
    np.testing.assert_array_equal(shuffled, mask[perm])


def test_sorted_order_is_not_file_order(tmp_path: Path) -> None:
    """The helper really produces the reversed and flipped cases the SEG tests rely on."""
    rev = make_series(tmp_path / "rev", 4, reverse=True)
    flip = make_series(tmp_path / "flip", 4, flip_row=True)
    assert [p.name for p in rev.paths] == ["003.dcm", "002.dcm", "001.dcm", "000.dcm"]
    assert [p.name for p in flip.paths] == ["003.dcm", "002.dcm", "001.dcm", "000.dcm"]
    assert rev.geometry.affine_lps[2, 2] > 0  # sorted along +z, against the instance order
    assert flip.geometry.affine_lps[0, 0] < 0 and flip.geometry.affine_lps[2, 2] < 0  # normal points to -z


def test_seg_content(tmp_path: Path) -> None:
    series = make_series(tmp_path / "src", 6)
    mask = blob_mask(series.geometry.shape)
    out = _write(tmp_path, series, mask)
    seg = pydicom.dcmread(out)

    assert seg.SOPClassUID == "1.2.840.10008.5.1.4.1.1.66.4"
    assert seg.SegmentationType == "BINARY"
    assert seg.Manufacturer == "edge-ich" and seg.ContentLabel == "ICH" and seg.SeriesNumber == 9901
    assert seg.StudyInstanceUID == series.headers[0].StudyInstanceUID
    assert seg.FrameOfReferenceUID == series.headers[0].FrameOfReferenceUID
    (segment,) = seg.SegmentSequence
    assert segment.SegmentLabel == SEGMENT_LABEL
    prop = segment.SegmentedPropertyTypeCodeSequence[0]
    assert (prop.CodeValue, prop.CodingSchemeDesignator) == ("1386000", "SCT")
    algo = segment.SegmentationAlgorithmIdentificationSequence[0]
    assert (algo.AlgorithmName, algo.AlgorithmVersion) == ("edge-ich-test", "abc123")
    # every source slice is referenced, frames exist only where the mask is non-empty
    refs = {str(i.ReferencedSOPInstanceUID) for i in seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence}
    assert refs == set(series.sop_instance_uids)
    nonempty = [series.sop_instance_uids[k] for k in range(mask.shape[0]) if mask[k].any()]
    assert int(seg.NumberOfFrames) == len(nonempty) < mask.shape[0]
    frame_refs = [
        str(f.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID)
        for f in seg.PerFrameFunctionalGroupsSequence
    ]
    assert sorted(frame_refs) == sorted(nonempty)


def test_seg_of_empty_mask_keeps_all_frames(tmp_path: Path) -> None:
    series = make_series(tmp_path / "src", 3, base="CT_small.dcm")
    mask = np.zeros(series.geometry.shape, dtype=np.uint8)
    out = _write(tmp_path, series, mask)
    assert int(pydicom.dcmread(out, stop_before_pixels=True).NumberOfFrames) == 3
    assert dciodvfy_errors(out) == []
    assert not read_seg_mask(out, series.sop_instance_uids).any()


def test_missing_frame_of_reference_gets_a_derived_one(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The real CQ500 slice has no FrameOfReferenceUID: the SEG stays valid with a stable derived one."""
    series = make_series(tmp_path / "src", 3, frame_of_reference=False)
    assert "FrameOfReferenceUID" not in series.headers[0]
    mask = blob_mask(series.geometry.shape, seed=3)
    with caplog.at_level(logging.WARNING, logger="edge_ich.outputs.seg"):
        out = _write(tmp_path, series, mask)
    assert any("FrameOfReferenceUID" in r.getMessage() for r in caplog.records)
    assert all("FrameOfReferenceUID" not in h for h in series.headers)  # caller's headers untouched
    seg = pydicom.dcmread(out, stop_before_pixels=True)
    assert seg.FrameOfReferenceUID == derived_frame_of_reference_uid(series.headers[0])
    assert derived_frame_of_reference_uid(series.headers[0]) == derived_frame_of_reference_uid(series.headers[1])
    assert dciodvfy_errors(out) == []
    np.testing.assert_array_equal(read_seg_mask(out, series.sop_instance_uids), mask)


def test_deidentified_source_keeps_a_valid_patient_module(tmp_path: Path) -> None:
    """CQ500 says PatientIdentityRemoved YES without a method; the SEG must still carry one (Type 1C)."""
    series = make_series(tmp_path / "src", 2)
    assert series.headers[0].PatientIdentityRemoved == "YES"
    out = _write(tmp_path, series, blob_mask(series.geometry.shape))
    seg = pydicom.dcmread(out, stop_before_pixels=True)
    assert seg.PatientIdentityRemoved == "YES" and seg.DeidentificationMethod


def test_patient_name_never_reaches_warnings_or_logs(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, recwarn: pytest.WarningsRecorder
) -> None:
    series = make_series(tmp_path / "src", 2, frame_of_reference=False)
    name = str(series.headers[0].PatientName)
    assert name
    with caplog.at_level(logging.DEBUG):
        _write(tmp_path, series, blob_mask(series.geometry.shape))
    texts = [str(w.message) for w in recwarn.list] + [r.getMessage() for r in caplog.records]
    assert not [t for t in texts if name in t]


def test_mixed_frame_of_reference_refused(tmp_path: Path) -> None:
    series = make_series(tmp_path / "src", 3)
    series.headers[1].FrameOfReferenceUID = pydicom.uid.generate_uid()
    with pytest.raises(InputError, match="FrameOfReferenceUID"):
        _write(tmp_path, series, blob_mask(series.geometry.shape))
    assert not (tmp_path / "out" / "seg.dcm").exists()


def test_missing_position_refused_with_one_line(tmp_path: Path) -> None:
    series = make_series(tmp_path / "src", 2, base="CT_small.dcm")
    del series.headers[0].ImagePositionPatient
    with pytest.raises(InputError) as exc:
        _write(tmp_path, series, blob_mask(series.geometry.shape))
    assert "ImagePositionPatient" in str(exc.value) and "\n" not in str(exc.value)


def test_mask_not_matching_headers_is_a_bug(tmp_path: Path) -> None:
    series = make_series(tmp_path / "src", 2, base="CT_small.dcm")
    with pytest.raises(ValueError):
        _write(tmp_path, series, np.zeros((3, 128, 128), dtype=bool))
    with pytest.raises(ValueError):
        _write(tmp_path, series, np.zeros((2, 64, 64), dtype=bool))


def test_unwritable_location_is_an_output_error(tmp_path: Path) -> None:
    series = make_series(tmp_path / "src", 2, base="CT_small.dcm")
    blocker = tmp_path / "not_a_dir"
    blocker.write_text("x")
    with pytest.raises(OutputError):
        write_seg(
            blocker / "seg.dcm",
            blob_mask(series.geometry.shape),
            series.headers,
            algorithm_name="a",
            algorithm_version="1",
        )
    assert not list(tmp_path.glob("**/*.tmp"))


def test_read_seg_mask_refuses_foreign_slices_and_non_seg(tmp_path: Path) -> None:
    series = make_series(tmp_path / "src", 2, base="CT_small.dcm")
    out = _write(tmp_path, series, blob_mask(series.geometry.shape))
    with pytest.raises(InputError):
        read_seg_mask(out, [pydicom.uid.generate_uid(), series.sop_instance_uids[0]])
    with pytest.raises(InputError):
        read_seg_mask(series.paths[0], series.sop_instance_uids)
    junk = tmp_path / "junk.dcm"
    junk.write_bytes(b"not dicom at all")
    with pytest.raises(InputError):
        read_seg_mask(junk, series.sop_instance_uids)


def test_dcmtk_agrees_it_is_a_segmentation(tmp_path: Path) -> None:
    """A second, independent reader (dcmtk) parses the file (skipped without dcmtk)."""
    dcmdump = shutil.which("dcmdump", path="/usr/bin")
    if dcmdump is None:
        pytest.skip("dcmtk not installed")
    series = make_series(tmp_path / "src", 2, base="CT_small.dcm")
    out = _write(tmp_path, series, blob_mask(series.geometry.shape))
    proc = subprocess.run([dcmdump, "+P", "SOPClassUID", str(out)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "SegmentationStorage" in proc.stdout


@pytest.mark.parametrize(
    "opts", [{}, {"reverse": True}, {"flip": True}, {"reverse": True, "flip": True}, {"tilt": 12.0}]
)
def test_seg_from_the_runtime_dicom_series(tmp_path: Path, opts: dict) -> None:
    """The runtime's own DicomSeries (sorting, headers) feeding the writer, as the runner does."""
    from edge_ich.sources.dicom.source import series_from_files
    from tests.dicomkit import make_series as kit_series

    series = series_from_files(kit_series(tmp_path / "src", 5, size=128, **opts))
    headers = [series.header(i) for i in range(len(series))]
    mask = blob_mask(series.geometry.shape, seed=7)
    out = tmp_path / "seg.dcm"
    write_seg(out, mask, headers, algorithm_name="edge-ich-test", algorithm_version="1")
    assert dciodvfy_errors(out) == []
    np.testing.assert_array_equal(read_seg_mask(out, series.sop_instance_uids), mask)


def test_empty_frame_of_reference_value_is_replaced_without_touching_the_caller(tmp_path: Path) -> None:
    series = make_series(tmp_path / "src", 2, base="CT_small.dcm")
    for h in series.headers:
        h.FrameOfReferenceUID = ""
    _write(tmp_path, series, blob_mask(series.geometry.shape))
    assert all(h.FrameOfReferenceUID == "" for h in series.headers)
    seg = pydicom.dcmread(tmp_path / "out" / "seg.dcm", stop_before_pixels=True)
    assert seg.FrameOfReferenceUID == derived_frame_of_reference_uid(series.headers[0])


def test_missing_slice_thickness_is_filled_from_positions(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    series = make_series(tmp_path / "src", 3, base="CT_small.dcm", slice_mm=2.5, reverse=True)
    for h in series.headers:
        del h.SliceThickness
    mask = blob_mask(series.geometry.shape)
    with caplog.at_level(logging.WARNING, logger="edge_ich.outputs.seg"):
        out = _write(tmp_path, series, mask)
    assert any("SliceThickness" in r.getMessage() for r in caplog.records)
    assert all("SliceThickness" not in h for h in series.headers)
    seg = pydicom.dcmread(out, stop_before_pixels=True)
    measures = seg.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0]
    assert float(measures.SliceThickness) == pytest.approx(2.5)
    assert dciodvfy_errors(out) == []
    np.testing.assert_array_equal(read_seg_mask(out, series.sop_instance_uids), mask)


def test_warm_up_builds_a_throwaway_seg_and_writes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from edge_ich.outputs.seg import warm_up

    monkeypatch.chdir(tmp_path)
    seconds = warm_up()
    assert isinstance(seconds, float) and seconds >= 0.0
    assert list(tmp_path.iterdir()) == []

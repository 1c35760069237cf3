"""DICOM input: discovery, choice, geometry, HU decoding on real slices and series built from them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from edge_ich.sources.dicom.discover import choose_series, discover
from edge_ich.sources.dicom.pixels import hu_from_dataset
from edge_ich.sources.dicom.source import open_series, series_from_files
from tests.dicomkit import PATIENT_ID, PATIENT_NAME, edit, make_series, marker_of, truncate, write_text


def _markers(series) -> list[int]:
    return [marker_of(series.read_hu(i)) for i in range(len(series))]


# --- pixels on real files -------------------------------------------------------------------------------------------


def test_hu_of_real_cq500_slice(real_ct_files: dict[str, Path]) -> None:
    import pydicom

    ds = pydicom.dcmread(real_ct_files["693_UNCR.dcm"])
    hu = hu_from_dataset(ds)
    assert hu.dtype == np.float32 and hu.shape == (512, 512)
    assert np.array_equal(hu, ds.pixel_array.astype(np.float32) * float(ds.RescaleSlope) + float(ds.RescaleIntercept))
    # A head: air outside near -1000 HU, brain tissue in 0..80, skull above 700.
    centre = hu[200:300, 200:300]
    assert -50 < float(np.median(centre)) < 100
    assert float(hu.max()) > 700 and float(np.percentile(hu, 5)) < -900


def test_hu_of_real_jpeg2000_head_ct(real_ct_files: dict[str, Path]) -> None:
    import pydicom

    ds = pydicom.dcmread(real_ct_files["J2K_pixelrep_mismatch.dcm"])
    assert ds.file_meta.TransferSyntaxUID.is_compressed
    hu = hu_from_dataset(ds)
    assert hu.shape == (512, 512)
    assert float(hu.max()) > 700
    assert -50 < float(np.median(hu[220:290, 220:290])) < 100


def test_hu_multivalued_rescale_takes_first(real_ct_files: dict[str, Path]) -> None:
    import pydicom

    ds = pydicom.dcmread(real_ct_files["CT_small.dcm"])
    raw = ds.pixel_array.astype(np.float32)
    ds.RescaleSlope = ["2", "3"]
    ds.RescaleIntercept = ["-1000", "7"]
    assert np.array_equal(hu_from_dataset(ds), raw * 2 - 1000)


def test_hu_rsna_12bit_quirk() -> None:
    """Stored values 1000 too low and wrapped at 4096, intercept > -100: the note's fix recovers HU."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian

    hu_true = np.array([[-1000, -500, -1], [0, 40, 80], [700, 1500, 3000]], dtype=np.int32)
    stored = ((hu_true + 1000) - 1000) % 4096
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.Rows, ds.Columns = hu_true.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.RescaleSlope, ds.RescaleIntercept = "1", "-24"  # > -100: the quirk
    ds.PixelData = stored.astype(np.uint16).tobytes()
    assert np.array_equal(hu_from_dataset(ds), hu_true.astype(np.float32))
    ds.RescaleIntercept = "-1024"  # a normal file is left alone
    assert np.array_equal(hu_from_dataset(ds), stored.astype(np.float32) - 1024)


# --- series built from a real slice ---------------------------------------------------------------------------------


def test_shuffled_names_sorted_by_position(tmp_path: Path) -> None:
    paths = make_series(tmp_path / "s", n=7, size=64, seed=3)
    s = open_series(tmp_path / "s")
    assert _markers(s) == list(range(7))
    assert s.files == paths
    assert s.geometry.shape == (7, 64, 64)
    assert s.geometry.spacing[0] == pytest.approx(5.0)
    assert s.geometry.warnings == [] and s.skipped == [] and s.other_series == []
    assert len(set(s.sop_instance_uids)) == 7
    assert s.kind == "dicom"


def test_reverse_order_and_instance_numbers_do_not_matter(tmp_path: Path) -> None:
    make_series(tmp_path / "r", n=6, size=64, reverse=True)
    s = open_series(tmp_path / "r")
    assert _markers(s) == list(range(6))
    assert [int(s.header(i).InstanceNumber) for i in range(6)] == [6, 5, 4, 3, 2, 1]


def test_flipped_orientation_same_anatomy(tmp_path: Path) -> None:
    make_series(tmp_path / "a", n=4, size=64)
    make_series(tmp_path / "f", n=4, size=64, flip=True)
    a, f = open_series(tmp_path / "a"), open_series(tmp_path / "f")
    assert _markers(f) == list(range(4))  # still inferior -> superior
    assert f.geometry.affine_lps[0, 0] < 0 < a.geometry.affine_lps[0, 0]
    ha, hf = a.read_hu(2), f.read_hu(2)
    assert np.array_equal(ha[1:, 4:], hf[1:, ::-1][:, 4:])  # the stored image is mirrored (marker row aside)
    # The same voxel content maps to the same patient point.
    col, row, k = 40, 30, 2
    pa = a.geometry.affine_lps @ [col, row, k, 1]
    pf = f.geometry.affine_lps @ [63 - col, row, k, 1]
    assert np.allclose(pa, pf, atol=1e-3)


def test_gantry_tilt_gives_sheared_affine_and_warning(tmp_path: Path) -> None:
    make_series(tmp_path / "t", n=5, size=64, tilt=15.0, spacing=2.5)
    s = open_series(tmp_path / "t")
    assert _markers(s) == list(range(5))
    assert any("tilt 15.0" in w for w in s.geometry.warnings)
    step = s.geometry.affine_lps[:3, 2]
    assert step[2] == pytest.approx(2.5, abs=1e-3)
    assert step[1] == pytest.approx(2.5 * np.tan(np.radians(15)), abs=1e-3)
    assert s.geometry.spacing[0] == pytest.approx(2.5, abs=1e-3)  # distance between planes, not along the step


@pytest.mark.parametrize("ts_name", ["RLELossless", "JPEGLSLossless", "JPEG2000Lossless", "JPEGLosslessSV1"])
def test_compressed_transfer_syntaxes_decode_to_same_hu(tmp_path: Path, ts_name: str) -> None:
    import pydicom.uid

    ts = getattr(pydicom.uid, ts_name)
    if ts == pydicom.uid.JPEGLosslessSV1 and not Path("/usr/bin/dcmcjpeg").exists():
        pytest.skip("dcmtk's dcmcjpeg is needed to write JPEG lossless")
    make_series(tmp_path / "u", n=3, size=128, seed=1)
    make_series(tmp_path / "c", n=3, size=128, seed=1, transfer_syntax=ts)
    u, c = open_series(tmp_path / "u"), open_series(tmp_path / "c")
    assert c.summary()["transfer_syntaxes"] == [str(ts)]
    for i in range(3):
        assert np.array_equal(u.read_hu(i), c.read_hu(i))


def test_real_jpeg2000_slices_as_a_series(tmp_path: Path, real_ct_files: dict[str, Path]) -> None:
    """The real JPEG 2000 head CT (oblique IOP) copied to 3 positions along its own normal, compressed bytes kept."""
    import pydicom
    from pydicom.uid import generate_uid

    src = real_ct_files["J2K_pixelrep_mismatch.dcm"]
    ds0 = pydicom.dcmread(src, stop_before_pixels=True)
    iop = np.array([float(x) for x in ds0.ImageOrientationPatient])
    normal = np.cross(iop[:3], iop[3:])
    normal /= np.linalg.norm(normal)
    series_uid = generate_uid()
    (tmp_path / "j").mkdir()
    for k in (2, 0, 1):
        ds = pydicom.dcmread(src)
        ds.SeriesInstanceUID = series_uid
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        pos = np.array([float(x) for x in ds0.ImagePositionPatient]) + 5.0 * k * normal
        ds.ImagePositionPatient = [f"{v:.4f}" for v in pos]
        ds.save_as(tmp_path / "j" / f"IM{k * 7 % 5}")
    s = open_series(tmp_path / "j")
    assert s.geometry.shape == (3, 512, 512)
    assert s.geometry.spacing[0] == pytest.approx(5.0, abs=1e-3)
    assert not any("tilt" in w for w in s.geometry.warnings)
    expected = hu_from_dataset(pydicom.dcmread(src))
    assert np.array_equal(s.read_hu(1), expected)
    assert s.frame_of_reference_uid == str(ds0.FrameOfReferenceUID)


def test_cq500_slice_without_frame_of_reference(tmp_path: Path, real_ct_files: dict[str, Path]) -> None:
    """The real CQ500 file lacks FrameOfReferenceUID; copies at two positions still open."""
    import pydicom
    from pydicom.uid import generate_uid

    (tmp_path / "q").mkdir()
    for k in range(2):
        ds = pydicom.dcmread(real_ct_files["693_UNCR.dcm"])
        assert "FrameOfReferenceUID" not in ds
        ds.SOPInstanceUID = generate_uid()
        ds.ImagePositionPatient = [
            ds.ImagePositionPatient[0],
            ds.ImagePositionPatient[1],
            float(ds.ImagePositionPatient[2]) + 5 * k,
        ]
        ds.save_as(tmp_path / "q" / f"slice{k}")
    s = open_series(tmp_path / "q")
    assert s.frame_of_reference_uid is None and len(s) == 2
    assert "the series has no FrameOfReferenceUID" in s.geometry.warnings
    assert s.read_hu(0).shape == (512, 512)


# --- discovery: skipped files and choice of series ------------------------------------------------------------------


def test_discovery_skips_with_reasons(tmp_path: Path, real_ct_files: dict[str, Path]) -> None:
    root = tmp_path / "study"
    make_series(root / "ct", n=5, size=64)
    make_series(root / "mr", n=2, size=64, modality="MR")
    loc = make_series(root / "loc", n=1, size=64, seed=9)
    edit(loc[0], lambda ds: setattr(ds, "ImageType", ["ORIGINAL", "PRIMARY", "LOCALIZER"]))
    write_text(root / "notes.txt")
    write_text(root / "DICOMDIR", "index")
    shutil.copy(real_ct_files["693_UNCR.dcm"], root / "ct_single_other_series.dcm")
    from pydicom.data import get_testdata_file

    enh = get_testdata_file("eCT_Supplemental.dcm")
    if enh:
        shutil.copy(enh, root / "enhanced")
    result = discover(root)
    reasons = {s.path: s.reason for s in result.skipped}
    assert reasons["notes.txt"] == "not DICOM"
    assert reasons["DICOMDIR"].startswith("DICOMDIR")
    assert sum(r == "not CT (modality MR)" for r in reasons.values()) == 2
    assert reasons[f"loc/{loc[0].name}"].startswith("localizer")
    if enh:
        assert reasons["enhanced"].startswith("Enhanced")
    assert all(not Path(p).is_absolute() for p in reasons)
    assert [c.n_files for c in result.candidates] == [5, 1]
    chosen, others = choose_series(result, None)
    assert chosen.n_files == 5
    assert others[0]["n_files"] == 1 and "most slices" in others[0]["reason_not_chosen"]
    s = open_series(root)
    assert len(s) == 5 and len(s.skipped) == len(result.skipped) and len(s.other_series) == 1


def test_series_uid_picks_the_other_series(tmp_path: Path) -> None:
    make_series(tmp_path / "a", n=6, size=64, series_uid="1.2.3.4.6")
    make_series(tmp_path / "b", n=3, size=64, series_uid="1.2.3.4.3", spacing=2.0)
    assert len(open_series(tmp_path)) == 6
    s = open_series(tmp_path, series_uid="1.2.3.4.3")
    assert len(s) == 3 and s.series_uid == "1.2.3.4.3"
    assert s.geometry.spacing[0] == pytest.approx(2.0)
    assert s.other_series == [
        {"series_uid": "1.2.3.4.6", "n_files": 6, "reason_not_chosen": "another SeriesInstanceUID was requested"}
    ]


def test_equal_counts_prefer_thinner_slices(tmp_path: Path) -> None:
    make_series(tmp_path / "thick", n=4, size=64, spacing=5.0, series_uid="1.2.3.9")
    make_series(tmp_path / "thin", n=4, size=64, spacing=1.0, series_uid="1.2.3.8")
    assert open_series(tmp_path).series_uid == "1.2.3.8"


def test_truncated_end_slice_is_skipped_and_series_stays(tmp_path: Path) -> None:
    paths = make_series(tmp_path / "s", n=6, size=64)
    truncate(paths[-1], 0.7)
    s = open_series(tmp_path / "s")
    assert len(s) == 5 and _markers(s) == list(range(5))
    assert [x.reason for x in s.skipped] == ["truncated pixel data"]


def test_truncated_compressed_slice_is_skipped(tmp_path: Path) -> None:
    from pydicom.uid import JPEG2000Lossless

    paths = make_series(tmp_path / "s", n=4, size=64, transfer_syntax=JPEG2000Lossless)
    truncate(paths[0], 0.8)
    s = open_series(tmp_path / "s")
    assert len(s) == 3 and _markers(s) == [1, 2, 3]
    assert s.skipped[0].reason == "truncated pixel data"


def test_duplicate_files_of_same_instance_kept_once(tmp_path: Path) -> None:
    paths = make_series(tmp_path / "s", n=4, size=64)
    shutil.copy(paths[2], tmp_path / "s" / "copy_of_2")
    s = open_series(tmp_path / "s")
    assert _markers(s) == [0, 1, 2, 3]
    assert any("duplicate" in w for w in s.geometry.warnings)
    assert len(s.skipped) == 1 and "duplicate" in s.skipped[0].reason


def test_duplicate_position_with_identical_pixels_kept_once(tmp_path: Path) -> None:
    from pydicom.uid import generate_uid

    paths = make_series(tmp_path / "s", n=4, size=64)
    dup = Path(shutil.copy(paths[1], tmp_path / "s" / "resent"))
    edit(dup, lambda ds: setattr(ds, "SOPInstanceUID", generate_uid()))
    s = open_series(tmp_path / "s")
    assert _markers(s) == [0, 1, 2, 3]
    assert any("identical pixels" in w for w in s.geometry.warnings)


def test_uneven_spacing_warns(tmp_path: Path) -> None:
    paths = make_series(tmp_path / "s", n=5, size=64, spacing=5.0)

    def nudge(ds) -> None:
        p = [float(x) for x in ds.ImagePositionPatient]
        ds.ImagePositionPatient = [p[0], p[1], p[2] + 1.5]

    edit(paths[2], nudge)
    s = open_series(tmp_path / "s")
    assert any("uneven" in w for w in s.geometry.warnings)
    assert s.geometry.spacing[0] == pytest.approx(5.0)


def test_odd_orientation_file_in_series_is_left_out(tmp_path: Path) -> None:
    """A scout stored in the same series with another orientation (but not flagged LOCALIZER) is left out."""
    paths = make_series(tmp_path / "s", n=8, size=64)
    extra = Path(shutil.copy(paths[0], tmp_path / "s" / "scout"))

    def oblique(ds) -> None:
        from pydicom.uid import generate_uid

        ds.SOPInstanceUID = generate_uid()
        ds.ImageOrientationPatient = [1, 0, 0, 0, 0.8, -0.6]

    edit(extra, oblique)
    s = open_series(tmp_path / "s")
    assert len(s) == 8
    assert s.skipped[0].path == "scout" and "orientation differs" in s.skipped[0].reason


def test_header_has_no_pixels_and_summary_no_patient_data(tmp_path: Path) -> None:
    make_series(tmp_path / "s", n=3, size=64)
    s = open_series(tmp_path / "s")
    h = s.header(1)
    assert "PixelData" not in h and str(h.SOPInstanceUID) == s.sop_instance_uids[1]
    h.PatientName = "changed"
    assert str(s.header(1).PatientName) == PATIENT_NAME  # a copy
    text = json.dumps(s.summary())
    assert PATIENT_NAME not in text and PATIENT_ID not in text and "Secret" not in text
    summ = s.summary()
    assert summ["n_slices"] == 3 and summ["shape"] == [3, 64, 64] and summ["series_uid"] == s.series_uid


def test_series_from_files(tmp_path: Path) -> None:
    paths = make_series(tmp_path / "s", n=4, size=64, reverse=True)
    write_text(tmp_path / "s" / "junk")
    s = series_from_files(list(reversed(paths)) + [tmp_path / "s" / "junk"])
    assert _markers(s) == [0, 1, 2, 3]
    assert [x.reason for x in s.skipped] == ["not DICOM"]


def test_pixels_decoded_only_when_read(tmp_path: Path) -> None:
    """A slice whose JPEG 2000 stream is garbage (structure intact) opens; reading it is a one-line InputError."""
    from pydicom.encaps import encapsulate
    from pydicom.uid import JPEG2000Lossless

    from edge_ich.errors import InputError

    paths = make_series(tmp_path / "s", n=3, size=64, transfer_syntax=JPEG2000Lossless)
    edit(paths[1], lambda ds: setattr(ds, "PixelData", encapsulate([b"\x00" * 64])))
    s = open_series(tmp_path / "s")
    assert len(s) == 3
    assert marker_of(s.read_hu(0)) == 0
    with pytest.raises(InputError) as err:
        s.read_hu(1)
    assert "\n" not in str(err.value) and "decoded" in str(err.value)


def test_preamble_less_implicit_and_deflated_files(tmp_path: Path) -> None:
    """Raw datasets without preamble/meta (old archives) and Deflated Explicit VR both read."""
    import pydicom
    from pydicom.uid import DeflatedExplicitVRLittleEndian

    for p in make_series(tmp_path / "raw", n=3, size=64):
        ds = pydicom.dcmread(p)
        del ds.file_meta
        ds.preamble = None
        pydicom.dcmwrite(p, ds, implicit_vr=True, little_endian=True)
        assert p.read_bytes()[:2] == b"\x08\x00"
    for p in make_series(tmp_path / "defl", n=3, size=64):
        edit(p, lambda ds: setattr(ds.file_meta, "TransferSyntaxUID", DeflatedExplicitVRLittleEndian))
    for name in ("raw", "defl"):
        s = open_series(tmp_path / name)
        assert _markers(s) == [0, 1, 2] and s.skipped == []


def test_other_image_objects_in_a_ct_series_are_skipped(tmp_path: Path) -> None:
    """A screen capture (Secondary Capture, modality CT) stored in the series is left out with its SOP class."""
    from pydicom.uid import SecondaryCaptureImageStorage, generate_uid

    paths = make_series(tmp_path / "s", n=3, size=64)
    sc = Path(shutil.copy(paths[0], tmp_path / "s" / "capture"))

    def to_sc(ds) -> None:
        ds.SOPClassUID = SecondaryCaptureImageStorage
        ds.file_meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
        ds.SOPInstanceUID = generate_uid()

    edit(sc, to_sc)
    s = open_series(tmp_path / "s")
    assert len(s) == 3
    assert s.skipped[0].reason == f"not a CT image object (SOP class {SecondaryCaptureImageStorage})"


def test_refused_first_choice_gives_way_to_next_series(tmp_path: Path) -> None:
    """A thin series missing more slices than the documented limit (geometry.MAX_MISSING_FRACTION) is
    refused; the complete thick series is used and the refusal listed."""
    thin = make_series(tmp_path / "thin", n=10, size=64, spacing=1.0, series_uid="1.2.3.10")
    for k in (4, 5, 6):
        thin[k].unlink()
    make_series(tmp_path / "thick", n=4, size=64, spacing=5.0, series_uid="1.2.3.4")
    s = open_series(tmp_path)
    assert s.series_uid == "1.2.3.4" and _markers(s) == [0, 1, 2, 3]
    assert s.other_series[0]["series_uid"] == "1.2.3.10"
    assert s.other_series[0]["reason_not_chosen"].startswith("refused: missing slices")
    from edge_ich.errors import InputError

    with pytest.raises(InputError, match="missing slices"):
        open_series(tmp_path, series_uid="1.2.3.10")

"""Native 16-bit pixel data read straight from the file give pydicom's pixel_array, bit for bit.

The run reads each uncompressed slice from the offset discovery noted instead of parsing the file
a second time with pydicom; pydicom stays the reference. Real files (pydicom-data's CQ500 and
CT_small slices) and variants of them: implicit VR, no preamble, BitsStored 12 signed and
unsigned with junk in the unused high bits, MONOCHROME1; big endian (dcmtk's dcmconv) and compressed
files must fall back to pydicom, and so must a file rewritten after discovery. Headers read once: the
receiver's, read on arrival, are not read again when the series completes.
"""

from __future__ import annotations

import copy
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from edge_ich.sources.dicom.discover import read_header
from edge_ich.sources.dicom.pixels import hu_from_dataset, native_stored
from edge_ich.sources.dicom.source import _hu_of_path
from tests.dicomkit import default_source


def _reference(path: Path) -> np.ndarray:
    import pydicom

    return hu_from_dataset(pydicom.dcmread(path, force=True))


def _variant(tmp: Path, name: str, src: Path, edit) -> Path:
    import pydicom

    ds = pydicom.dcmread(src)
    ds = edit(ds) or ds
    p = tmp / name
    ds.save_as(p, enforce_file_format=True)
    return p


def _junk_high_bits(stored: int, signed: bool):
    def edit(ds):
        raw = np.frombuffer(ds.PixelData, "<u2").copy()
        rng = np.random.default_rng(stored + signed)
        raw ^= (rng.integers(0, 1 << 16, raw.size).astype(np.uint16)) & np.uint16(0xFFFF ^ ((1 << stored) - 1))
        raw[:8] = [0, 1, (1 << stored) - 1, 1 << (stored - 1), 0xFFFF, 0x8000, 0x7FFF, 0x0800]
        ds.PixelData = raw.tobytes()
        ds.BitsStored, ds.HighBit, ds.PixelRepresentation = stored, stored - 1, int(signed)

    return edit


def _files(tmp: Path) -> dict[str, tuple[Path, bool]]:
    """name -> (file, whether the native path must take it)."""
    from pydicom.data import get_testdata_file
    from pydicom.uid import ImplicitVRLittleEndian, RLELossless

    cq = default_source()
    small = Path(get_testdata_file("CT_small.dcm"))
    out = {"cq500": (cq, True), "ct_small": (small, True)}

    def implicit(ds):
        ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian

    def mono1(ds):
        ds.PhotometricInterpretation = "MONOCHROME1"

    def rle(ds):
        ds.compress(RLELossless)

    out["implicit"] = (_variant(tmp, "implicit.dcm", cq, implicit), True)
    out["mono1"] = (_variant(tmp, "mono1.dcm", cq, mono1), True)
    for stored in (12, 15):
        for signed in (False, True):
            name = f"bits{stored}{'s' if signed else 'u'}"
            out[name] = (_variant(tmp, name + ".dcm", cq, _junk_high_bits(stored, signed)), True)
    out["rle"] = (_variant(tmp, "rle.dcm", cq, rle), False)
    raw = tmp / "no_preamble"
    raw.write_bytes(cq.read_bytes()[132:])  # no preamble, no "DICM": read with force
    out["no_preamble"] = (raw, True)
    if shutil.which("dcmconv"):  # dcmtk writes real big-endian files (installed in CI)
        big = tmp / "big.dcm"
        subprocess.run(["dcmconv", "+tb", str(cq), str(big)], check=True, capture_output=True)
        out["big_endian"] = (big, False)
    return out


def test_native_pixels_equal_pydicom(tmp_path: Path) -> None:
    for name, (path, native) in _files(tmp_path).items():
        header, why, _ = read_header(path)
        assert why is None and header is not None, name
        stored = native_stored(path, header)
        assert (stored is not None) == native, name
        got = _hu_of_path(path, header)
        want = _reference(path)
        assert got.dtype == want.dtype == np.float32, name
        np.testing.assert_array_equal(got, want, err_msg=name)
        if stored is not None:
            import pydicom

            ref = pydicom.dcmread(path, force=True).pixel_array
            assert stored.dtype == ref.dtype, name
            np.testing.assert_array_equal(stored, ref, err_msg=name)


def test_a_file_rewritten_after_discovery_is_read_by_pydicom(tmp_path: Path) -> None:
    import pydicom

    path = tmp_path / "slice.dcm"
    path.write_bytes(default_source().read_bytes())
    header, _, _ = read_header(path)
    assert native_stored(path, header) is not None
    ds = pydicom.dcmread(path)
    ds.add_new(0x00091010, "LO", "a longer header moves the pixel data")  # private tag, shifts the offset
    ds.save_as(path)
    assert native_stored(path, header) is None
    np.testing.assert_array_equal(_hu_of_path(path, header), _reference(path))


@pytest.mark.parametrize("frames", [2])
def test_multi_frame_headers_are_left_to_pydicom(tmp_path: Path, frames: int) -> None:
    path = tmp_path / "slice.dcm"
    path.write_bytes(default_source().read_bytes())
    header, _, _ = read_header(path)
    h = copy.deepcopy(header)
    h.NumberOfFrames = frames
    assert native_stored(path, h) is None


def test_series_from_files_takes_the_headers_the_caller_already_read(tmp_path: Path, monkeypatch) -> None:
    """The receiver reads each header on arrival; completion must not read those files' headers again,
    and the series must be the same as one read from scratch."""
    from edge_ich.sources.dicom import source as source_mod
    from tests.dicomkit import make_series

    files = make_series(tmp_path / "s", n=5, size=64)
    fresh = source_mod.series_from_files(files)
    known = {p: read_header(p) for p in files[:3]}
    calls: list[Path] = []
    real = source_mod.read_header
    monkeypatch.setattr(source_mod, "read_header", lambda p: calls.append(p) or real(p))
    cached = source_mod.series_from_files(files, headers=known)
    assert sorted(calls) == sorted(files[3:])
    assert cached.files == fresh.files and cached.geometry.shape == fresh.geometry.shape
    for i in range(len(files)):
        np.testing.assert_array_equal(cached.read_hu(i), fresh.read_hu(i))


def test_a_file_gone_or_cut_after_discovery_is_one_clear_error(tmp_path: Path) -> None:
    from edge_ich.errors import InputError

    for damage in ("delete", "truncate"):
        path = tmp_path / f"{damage}.dcm"
        path.write_bytes(default_source().read_bytes())
        header, _, _ = read_header(path)
        if damage == "delete":
            path.unlink()
        else:
            path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
        assert native_stored(path, header) is None
        with pytest.raises(InputError) as exc:
            _hu_of_path(path, header)
        assert "Secret" not in str(exc.value) and str(path) not in str(exc.value)

"""NIfTI mask writer: a marked voxel lands where its DICOM pixel is; NIfTI input keeps shape and affine."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from edge_ich.errors import OutputError
from edge_ich.outputs.nifti import write_mask_nifti
from edge_ich.sources.volume import Geometry, affine_from_dicom
from tests.outputs_series import blob_mask, make_series, pixel_lps

LPS_TO_RAS = np.array([-1.0, -1.0, 1.0])


@pytest.mark.parametrize("kind", ["plain", "reverse", "flip_row", "ct_small"])
def test_marked_voxels_land_on_their_dicom_pixels(tmp_path: Path, kind: str) -> None:
    if kind == "ct_small":
        series = make_series(tmp_path / "src", 3, base="CT_small.dcm")
    else:
        series = make_series(tmp_path / "src", 4, reverse=kind == "reverse", flip_row=kind == "flip_row")
    z, y, x = series.geometry.shape
    mask = np.zeros((z, y, x), dtype=bool)
    marks = [(0, 3, 7), (z - 1, y - 5, 2), (1, y // 2, x - 1)]
    for m in marks:
        mask[m] = True
    out = tmp_path / "out" / "mask.nii.gz"
    write_mask_nifti(out, mask, series)

    img = nib.load(out)
    assert img.shape == (x, y, z) and img.get_data_dtype() == np.uint8
    data = np.asarray(img.dataobj)
    np.testing.assert_array_equal(data, mask.transpose(2, 1, 0).astype(np.uint8))
    assert int(img.header["sform_code"]) == 1 and int(img.header["qform_code"]) == 1
    for k, r, c in marks:
        world_ras = img.affine @ np.array([c, r, k, 1.0])
        expected = pixel_lps(series.headers[k], r, c) * LPS_TO_RAS  # from the DICOM header alone
        np.testing.assert_allclose(world_ras[:3], expected, atol=1e-3)
        # the qform (used by some viewers) agrees with the sform
        np.testing.assert_allclose(img.get_qform() @ np.array([c, r, k, 1.0]), world_ras, atol=1e-3)


def test_plain_nii_and_probability_map(tmp_path: Path) -> None:
    series = make_series(tmp_path / "src", 2, base="CT_small.dcm")
    prob = (np.arange(np.prod(series.geometry.shape)) % 256).astype(np.uint8).reshape(series.geometry.shape)
    out = tmp_path / "prob.nii"
    write_mask_nifti(out, prob, series)
    img = nib.load(out)
    np.testing.assert_array_equal(np.asarray(img.dataobj), prob.transpose(2, 1, 0))
    assert out.read_bytes()[:4] != b"\x1f\x8b\x08\x00"  # not gzipped
    assert not list(tmp_path.glob(".*.tmp"))


def test_gantry_tilt_affine_is_kept_exactly(tmp_path: Path) -> None:
    """A sheared native grid (tilted gantry): the sform carries it exactly."""

    class Tilted:
        kind = "dicom"

        def __init__(self) -> None:
            step = np.array([0.0, 1.2, 4.85])  # slices shifted along y: not orthogonal to the rows/cols
            aff = affine_from_dicom(np.array([1, 0, 0, 0, 1, 0.0]), np.array([-100.0, -90.0, 10.0]), 0.5, 0.5, step)
            self.geometry = Geometry((3, 8, 9), (5.0, 0.5, 0.5), aff)

    src = Tilted()
    mask = blob_mask(src.geometry.shape)
    out = tmp_path / "tilt.nii.gz"
    write_mask_nifti(out, mask, src)
    img = nib.load(out)
    np.testing.assert_allclose(img.get_sform(), np.diag([-1.0, -1.0, 1.0, 1.0]) @ src.geometry.affine_lps, atol=1e-5)


class NiftiInputStandIn:
    """The NiftiVolume contract (to_input_grid, input_affine, input_shape) over a real NIfTI file.

    The input is stored (x, y, z) with an oblique affine; its native grid [z, y, x] is the
    input rotated by 90 degrees in-plane (as PhysioNet CT-ICH needs), so to_input_grid is a
    real reorientation and a writer that ignored it would fail.
    """

    kind = "nifti"

    def __init__(self, path: Path) -> None:
        img = nib.load(path)
        self.input_shape = img.shape
        self.input_affine = img.affine
        z = img.shape[2]
        self.geometry = Geometry((z, img.shape[0], img.shape[1]), (1.0, 1.0, 1.0), np.eye(4))

    def to_input_grid(self, mask_zyx: np.ndarray) -> np.ndarray:
        # native [z, r, c] with r = input x, c = input y  ->  input (x, y, z)
        return np.asarray(mask_zyx).transpose(1, 2, 0)


def test_nifti_input_gets_exactly_its_shape_and_affine(tmp_path: Path) -> None:
    theta = np.deg2rad(12.0)
    aff = np.array(
        [
            [-0.45 * np.cos(theta), 0.45 * np.sin(theta), 0.0, 110.0],
            [0.45 * np.sin(theta), 0.45 * np.cos(theta), 0.0, -95.5],
            [0.0, 0.0, 5.0, -30.0],
            [0.0, 0.0, 0.0, 1.0],
        ]
    )
    vol = np.zeros((20, 16, 5), dtype=np.int16)
    inp = tmp_path / "ct.nii.gz"
    nib.save(nib.Nifti1Image(vol, aff), inp)
    src = NiftiInputStandIn(inp)
    mask = blob_mask(src.geometry.shape, seed=5)
    out = tmp_path / "out" / "mask.nii.gz"
    write_mask_nifti(out, mask, src)

    img, ref = nib.load(out), nib.load(inp)
    assert img.shape == ref.shape
    np.testing.assert_allclose(img.affine, ref.affine, atol=1e-6)
    np.testing.assert_array_equal(np.asarray(img.dataobj), src.to_input_grid(mask).astype(np.uint8))


def test_wrong_shapes_and_paths(tmp_path: Path) -> None:
    series = make_series(tmp_path / "src", 2, base="CT_small.dcm")
    with pytest.raises(ValueError):
        write_mask_nifti(tmp_path / "m.nii.gz", np.zeros((3, 128, 128), bool), series)
    with pytest.raises(ValueError):
        write_mask_nifti(tmp_path / "m.nii.gz", np.zeros((2, 128, 128), np.float32), series)
    with pytest.raises(ValueError):
        write_mask_nifti(tmp_path / "m.png", np.zeros((2, 128, 128), bool), series)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OutputError):
        write_mask_nifti(blocker / "m.nii.gz", np.zeros((2, 128, 128), bool), series)
    assert not list(tmp_path.glob("*.nii*"))


@pytest.mark.parametrize("opts", [{"reverse": True}, {"flip": True}, {"tilt": 12.0}])
def test_runtime_dicom_series_overlays(tmp_path: Path, opts: dict) -> None:
    """With the runtime's DicomSeries geometry, marked voxels land on their DICOM pixels."""
    from edge_ich.sources.dicom.source import series_from_files
    from tests.dicomkit import make_series as kit_series

    series = series_from_files(kit_series(tmp_path / "src", 4, size=64, **opts))
    z, y, x = series.geometry.shape
    marks = [(0, 1, 2), (z - 1, y - 3, x - 1), (2, y // 2, 5)]
    mask = np.zeros((z, y, x), dtype=bool)
    for m in marks:
        mask[m] = True
    out = tmp_path / "mask.nii.gz"
    write_mask_nifti(out, mask, series)
    img = nib.load(out)
    data = np.asarray(img.dataobj)
    for k, r, c in marks:
        assert data[c, r, k] == 1
        world_ras = img.affine @ np.array([c, r, k, 1.0])
        np.testing.assert_allclose(world_ras[:3], pixel_lps(series.header(k), r, c) * LPS_TO_RAS, atol=1e-2)
    assert int(data.sum()) == len(marks)


@pytest.mark.parametrize("axcodes", [("R", "A", "S"), ("L", "P", "S"), ("P", "R", "I")])
def test_runtime_nifti_volume_round_trip(tmp_path: Path, axcodes: tuple[str, str, str]) -> None:
    """The runtime's NiftiVolume: the mask has the input's shape and affine, and each voxel keeps its world position."""
    from nibabel.orientations import axcodes2ornt, inv_ornt_aff, ornt_transform

    from edge_ich.sources.nifti import NiftiVolume

    base = np.diag([0.45, 0.45, 5.0, 1.0])
    base[:3, 3] = [-50.0, -40.0, -20.0]  # RAS+ base grid, then re-stored in `axcodes` order
    shape_ras = (14, 12, 6)
    t = ornt_transform(axcodes2ornt(("R", "A", "S")), axcodes2ornt(axcodes))
    vol = nib.orientations.apply_orientation(np.zeros(shape_ras, np.int16), t)
    aff = base @ inv_ornt_aff(t, shape_ras)
    inp = tmp_path / "ct.nii.gz"
    nib.save(nib.Nifti1Image(vol, aff), inp)
    src = NiftiVolume(inp)
    z, y, x = src.geometry.shape
    marks = [(0, 0, 1), (z - 1, y - 1, 2), (z // 2, 3, x - 1)]
    mask = np.zeros(src.geometry.shape, dtype=bool)
    for m in marks:
        mask[m] = True
    out = tmp_path / "mask.nii.gz"
    write_mask_nifti(out, mask, src)
    img, ref = nib.load(out), nib.load(inp)
    assert img.shape == ref.shape
    np.testing.assert_allclose(img.affine, ref.affine, atol=1e-6)
    data = np.asarray(img.dataobj)
    assert int(data.sum()) == len(marks)
    got = sorted(tuple(np.round((img.affine @ np.array([*ijk, 1.0]))[:3], 4)) for ijk in np.argwhere(data == 1))
    want = sorted(
        tuple(np.round((src.geometry.affine_lps @ np.array([c, r, k, 1.0]))[:3] * LPS_TO_RAS, 4)) for k, r, c in marks
    )
    np.testing.assert_allclose(got, want, atol=1e-3)


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii"])
@pytest.mark.parametrize("sparse", [True, False])
def test_streamed_file_is_the_bytes_of_the_whole_volume_writer(tmp_path: Path, suffix: str, sparse: bool) -> None:
    """The stream (dense or SliceMask) writes what nibabel's to_bytes + gzip.compress wrote for the whole volume."""
    import gzip
    import sys

    from edge_ich.analysis.masks import SliceMask
    from edge_ich.outputs.nifti import GZIP_LEVEL, mask_image

    series = make_series(tmp_path / "src", 5, base="CT_small.dcm")
    mask = blob_mask(series.geometry.shape).astype(np.uint8)
    out = tmp_path / f"m{suffix}"
    write_mask_nifti(out, SliceMask.from_dense(mask) if sparse else mask, series)
    whole = mask_image(mask, series).to_bytes()
    if suffix == ".nii":
        assert out.read_bytes() == whole
    else:
        assert gzip.decompress(out.read_bytes()) == whole
        if sys.version_info >= (3, 11):  # gzip.compress(mtime=0) is zlib's gzip stream from 3.11 on
            assert out.read_bytes() == gzip.compress(whole, compresslevel=GZIP_LEVEL, mtime=0)

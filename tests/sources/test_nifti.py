"""NiftiVolume: reorientation to the display frame for every axis order/flip, exact round trip, scaling."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

from edge_ich.sources.nifti import open_volume

NZ, NY, NX = 5, 7, 9
SPACING_XYZ = (0.5, 0.6, 2.5)


def _display_volume() -> tuple[np.ndarray, np.ndarray]:
    """A [z, y, x] volume in the display frame and its RAS affine (x -> patient left, y -> posterior, z -> up)."""
    rng = np.random.default_rng(0)
    vol = rng.integers(-1000, 1000, (NZ, NY, NX)).astype(np.int16)
    aff = np.diag([-SPACING_XYZ[0], -SPACING_XYZ[1], SPACING_XYZ[2], 1.0])
    aff[:3, 3] = [10.0, 20.0, -30.0]
    return vol, aff


def _stored_as(vol_zyx: np.ndarray, aff: np.ndarray, perm: tuple[int, ...], flips: tuple[bool, ...]):
    """The same volume stored with its axes permuted and flipped, with the matching affine."""
    arr = np.transpose(np.transpose(vol_zyx, (2, 1, 0)), perm)
    m = np.zeros((4, 4))
    m[3, 3] = 1
    for a, p in enumerate(perm):
        m[p, a] = 1
    out_aff = aff @ m
    for a, f in enumerate(flips):
        if f:
            n = arr.shape[a]
            arr = np.flip(arr, a)
            flip = np.eye(4)
            flip[a, a] = -1
            flip[a, 3] = n - 1
            out_aff = out_aff @ flip
    return np.ascontiguousarray(arr), out_aff


ORIENTATIONS = [(p, f) for p in itertools.permutations(range(3)) for f in itertools.product([False, True], repeat=3)]


@pytest.mark.parametrize("ext", [".nii", ".nii.gz"])
def test_every_axis_order_reads_the_same_display_volume_and_maps_back(tmp_path: Path, ext: str) -> None:
    import nibabel as nib

    vol, aff = _display_volume()
    expected_lps = np.diag([-1.0, -1.0, 1.0, 1.0]) @ aff
    for i, (perm, flips) in enumerate(ORIENTATIONS):
        arr, a = _stored_as(vol, aff, perm, flips)
        path = tmp_path / f"v{i}{ext}"
        nib.save(nib.Nifti1Image(arr, a), str(path))
        v = open_volume(path)
        got = np.stack([v.read_hu(k) for k in range(len(v))])
        assert got.dtype == np.float32
        assert np.array_equal(got, vol), (perm, flips)
        assert v.geometry.shape == (NZ, NY, NX)
        assert np.allclose(v.geometry.spacing, SPACING_XYZ[::-1], atol=1e-5)
        assert np.allclose(v.geometry.affine_lps, expected_lps, atol=1e-4)
        back = v.to_input_grid(vol)
        assert back.shape == arr.shape and v.input_shape == arr.shape
        assert np.array_equal(back, arr), (perm, flips)
        assert np.allclose(v.input_affine, a)


def test_scaled_storage_gives_hu(tmp_path: Path) -> None:
    import nibabel as nib

    vol, aff = _display_volume()
    arr, a = _stored_as(vol, aff, (0, 1, 2), (False, False, False))
    img = nib.Nifti1Image((arr.astype(np.int32) + 1024).astype(np.uint16), a)
    img.header.set_slope_inter(1.0, -1024.0)
    for ext in (".nii", ".nii.gz"):
        nib.save(img, str(tmp_path / f"s{ext}"))
        v = open_volume(tmp_path / f"s{ext}")
        assert np.array_equal(np.stack([v.read_hu(k) for k in range(len(v))]), vol)


def test_4d_with_one_volume_round_trips_to_4d(tmp_path: Path) -> None:
    import nibabel as nib

    vol, aff = _display_volume()
    arr, a = _stored_as(vol, aff, (1, 0, 2), (True, False, False))
    nib.save(nib.Nifti1Image(arr[..., np.newaxis], a), str(tmp_path / "v4.nii.gz"))
    v = open_volume(tmp_path / "v4.nii.gz")
    assert np.array_equal(v.read_hu(2), vol[2])
    back = v.to_input_grid(vol > 0)
    assert back.shape == arr.shape + (1,)
    assert np.array_equal(back[..., 0], arr > 0)


def test_summary_is_non_identifying_and_complete(tmp_path: Path) -> None:
    import json

    import nibabel as nib

    vol, aff = _display_volume()
    nib.save(nib.Nifti1Image(np.transpose(vol, (2, 1, 0)).copy(), aff), str(tmp_path / "case.nii"))
    v = open_volume(tmp_path / "case.nii")
    s = v.summary()
    json.dumps(s)
    assert s["kind"] == "nifti" and s["n_slices"] == NZ and s["format"] == "nifti1"
    assert s["input_shape"] == [NX, NY, NZ]
    assert "case" not in json.dumps(s)


def test_oblique_volume_warns_and_keeps_affine(tmp_path: Path) -> None:
    import nibabel as nib

    vol, aff = _display_volume()
    t = np.radians(10)
    rot = np.eye(4)
    rot[1:3, 1:3] = [[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]]
    a = rot @ aff
    nib.save(nib.Nifti1Image(np.transpose(vol, (2, 1, 0)).copy(), a), str(tmp_path / "obl.nii.gz"))
    v = open_volume(tmp_path / "obl.nii.gz")
    assert any("oblique" in w for w in v.geometry.warnings)
    assert np.allclose(v.geometry.affine_lps, np.diag([-1.0, -1.0, 1.0, 1.0]) @ a, atol=1e-4)
    assert np.array_equal(v.read_hu(0), vol[0])

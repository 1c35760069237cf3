"""Key-image PNGs: right size, the slice's windowed pixels, the mask visibly tinted and outlined."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from matplotlib.image import imread

from edge_ich.errors import OutputError
from edge_ich.outputs.keyimages import (
    OUTLINE_RGB,
    TINT_ALPHA,
    TINT_RGB,
    display_size,
    edge_letters,
    key_image,
    write_key_images,
)
from edge_ich.preprocess import apply_window
from tests.outputs_series import make_series


def _png_rgb(path: Path) -> np.ndarray:
    img = imread(path)
    assert img.dtype == np.float32 and img.ndim == 3
    return np.rint(img[..., :3] * 255.0).astype(np.int32)


def _lesion(shape: tuple[int, int, int], k: int) -> np.ndarray:
    mask = np.zeros(shape, dtype=bool)
    _, y, x = shape
    mask[k, y // 3 : y // 3 + y // 6, x // 2 : x // 2 + x // 5] = True
    return mask


def test_png_of_a_512_slice_is_the_windowed_slice_with_the_overlay(tmp_path: Path) -> None:
    series = make_series(tmp_path / "src", 3)
    mask = _lesion(series.geometry.shape, 1)
    paths = write_key_images(tmp_path / "keys", series, mask, [1, 0])
    assert [p.name for p in paths] == ["key_002.png", "key_001.png"]
    assert all(p.is_file() for p in paths)

    rgb = _png_rgb(paths[0])
    assert rgb.shape[1] == 512 and rgb.shape[0] > 512
    caption, img = rgb[:-512], rgb[-512:]
    assert (caption > 128).any()  # text was drawn in the caption strip

    gray = np.rint(apply_window(series.read_hu(1), 40.0, 80.0) * 255.0).astype(np.int32)
    m = mask[1]
    from scipy import ndimage

    away = ~ndimage.binary_dilation(m, iterations=3)
    away[:, :48] = away[:, -48:] = away[:48] = away[-48:] = False  # direction letters live at the edges
    np.testing.assert_array_equal(img[away], np.repeat(gray[away][:, None], 3, axis=1))  # untouched elsewhere
    inside = img[m]
    expected_r = np.rint(gray[m] * (1 - TINT_ALPHA) + TINT_RGB[0] * TINT_ALPHA)
    assert np.abs(inside[:, 0] - expected_r).max() <= 1
    assert (inside[:, 0] - inside[:, 1] >= 70).all() and (inside[:, 1] == inside[:, 2]).all()  # tinted red
    ring = ndimage.binary_dilation(m, iterations=2) & ~m
    assert (img[ring] == OUTLINE_RGB).all()

    other = _png_rgb(paths[1])[-512:]  # a slice without lesion: pure grey
    assert (other[..., 0] == other[..., 1]).all() and (other[..., 1] == other[..., 2]).all()


def test_small_slice_is_upsampled_to_a_readable_size(tmp_path: Path) -> None:
    series = make_series(tmp_path / "src", 2, base="CT_small.dcm")
    mask = _lesion(series.geometry.shape, 0)
    (path,) = write_key_images(tmp_path, series, mask, [0], window=(40.0, 400.0), prefix="ct")
    assert path.name == "ct_001.png"
    img = _png_rgb(path)[-512:]
    assert img.shape[:2] == (512, 512)
    gray = np.rint(apply_window(series.read_hu(0), 40.0, 400.0) * 255.0).astype(np.int32)
    # nearest-neighbour x4: pixel (r, c) of the slice fills the 4x4 block at (4r, 4c)
    assert img[4 * 5 + 2, 4 * 7 + 1, 0] == gray[5, 7]
    r0, c0 = np.argwhere(mask[0])[len(np.argwhere(mask[0])) // 2]
    block = img[4 * r0 : 4 * r0 + 4, 4 * c0 : 4 * c0 + 4]
    assert (block[..., 0] > block[..., 1]).all()


def test_direction_letters_follow_the_orientation(tmp_path: Path) -> None:
    """Radiological view for the usual orientation; a mirrored row cosine swaps R and L."""
    plain = make_series(tmp_path / "plain", 2, base="CT_small.dcm")
    flipped = make_series(tmp_path / "flip", 2, base="CT_small.dcm", flip_row=True)
    assert edge_letters(plain.geometry.affine_lps) == {"left": "R", "right": "L", "top": "A", "bottom": "P"}
    assert edge_letters(flipped.geometry.affine_lps) == {"left": "L", "right": "R", "top": "A", "bottom": "P"}
    coronal = np.eye(4)
    coronal[:3, 1] = [0.0, 0.0, -1.0]  # rows run head -> feet
    assert edge_letters(coronal)["top"] == "S" and edge_letters(coronal)["bottom"] == "I"
    # the letters are drawn: white pixels on the black air at the middle of the left and right edges
    img = key_image(plain, np.zeros(plain.geometry.shape, bool), 0)[-512:]
    for edge in (img[236:276, :40], img[236:276, -40:]):
        assert (edge.min(axis=2) > 200).sum() > 10


def test_display_size_keeps_physical_aspect() -> None:
    assert display_size((512, 512), (0.48, 0.48)) == (512, 512)
    assert display_size((128, 128), (0.66, 0.66)) == (512, 512)
    h, w = display_size((400, 512), (0.5, 0.4))  # 200 mm tall, 204.8 mm wide, 0.4 mm pixels
    assert (h, w) == (500, 512)
    assert max(display_size((4000, 4000), (0.1, 0.1))) == 2048


def test_caption_is_consistent_with_the_mask(tmp_path: Path) -> None:
    """The two slices with different lesion areas get different captions; the image region is identical width."""
    series = make_series(tmp_path / "src", 2, base="CT_small.dcm")
    mask = _lesion(series.geometry.shape, 0)
    a = key_image(series, mask, 0)
    b = key_image(series, mask, 1)
    assert a.shape == b.shape
    assert not np.array_equal(a[:-512], b[:-512])  # different caption (slice number, area)


def test_bad_index_and_unwritable_dir(tmp_path: Path) -> None:
    series = make_series(tmp_path / "src", 2, base="CT_small.dcm")
    mask = np.zeros(series.geometry.shape, dtype=bool)
    with pytest.raises(ValueError):
        write_key_images(tmp_path / "k", series, mask, [5])
    with pytest.raises(ValueError):
        write_key_images(tmp_path / "k", series, mask[:1], [0])
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OutputError):
        write_key_images(blocker / "keys", series, mask, [0])
    assert not list(tmp_path.glob("**/*.tmp"))


def test_png_carries_no_patient_data(tmp_path: Path) -> None:
    series = make_series(tmp_path / "src", 1, base="CT_small.dcm")
    name, pid = str(series.headers[0].PatientName), str(series.headers[0].PatientID)
    (path,) = write_key_images(tmp_path, series, _lesion(series.geometry.shape, 0), [0])
    raw = path.read_bytes()
    assert name.encode() not in raw and pid.encode() not in raw


def test_outline_dilation_equals_ndimage_binary_dilation() -> None:
    from scipy import ndimage

    from edge_ich.outputs.keyimages import _dilate4

    rng = np.random.default_rng(0)
    for _ in range(40):
        m = rng.random((int(rng.integers(1, 60)), int(rng.integers(1, 60)))) < rng.uniform(0.01, 0.3)
        for it in (1, 2, 3):
            np.testing.assert_array_equal(_dilate4(m, it), ndimage.binary_dilation(m, iterations=it))

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


def _old_key_image(source, mask: np.ndarray, i: int) -> np.ndarray:
    """The key image as edge-ich drew it before (matplotlib's Agg canvas for the text)."""
    from edge_ich.outputs import keyimages as K
    from tests.outputs import keyimage_reference as R

    shape = tuple(source.geometry.shape)
    size = K.display_size(shape[1:], tuple(source.geometry.spacing[1:]))
    img = R.draw_letters(
        K.render_slice(source.read_hu(i), mask[i], size, (40.0, 80.0)), K.edge_letters(source.geometry.affine_lps)
    )
    strip = R.caption_strip(K._caption(source, i, shape[0], mask[i], (40.0, 80.0)), size[1])
    return np.concatenate([strip, img], axis=0)


def _ink_boxes(img: np.ndarray, background: np.ndarray) -> list[tuple[int, int, int, int]]:
    """(top, bottom, left, right) of each run of rows holding ink (text differs from the background)."""
    ink = np.abs(img.astype(np.int32) - background).max(axis=-1) > 60
    rows = np.flatnonzero(ink.any(axis=1))
    if rows.size == 0:
        return []
    runs = np.split(rows, np.flatnonzero(np.diff(rows) > 1) + 1)
    boxes = []
    for run in runs:
        cols = np.flatnonzero(ink[run].any(axis=0))
        boxes.append((int(run[0]), int(run[-1]), int(cols[0]), int(cols[-1])))
    return boxes


@pytest.mark.parametrize("base", ["693_UNCR.dcm", "CT_small.dcm"])
def test_key_image_looks_as_it_did_with_matplotlib(tmp_path: Path, base: str) -> None:
    """Same slice, overlay and layout as the matplotlib rendering: identical pixels away from the
    text; the caption lines and direction letters in the same places, at the same size."""
    series = make_series(tmp_path / "src", 3, base=base, flip_row=base == "CT_small.dcm")
    mask = _lesion(series.geometry.shape, 1)
    new, old = key_image(series, mask, 1), _old_key_image(series, mask, 1)
    assert new.shape == old.shape
    width = new.shape[1]
    strip = new.shape[0] - display_size(series.geometry.shape[1:], tuple(series.geometry.spacing[1:]))[0]
    # the image region away from the four letters is the same, pixel for pixel
    away = np.ones(new.shape[:2], dtype=bool)
    away[:strip] = False
    away[:, :40] = away[:, -40:] = False
    away[strip : strip + 40] = away[-40:] = False
    np.testing.assert_array_equal(new[away], old[away])
    # caption: the same lines, starting in the same place, on the same rows, the same length (5%)
    black = np.zeros(3, dtype=np.int32)
    new_lines, old_lines = _ink_boxes(new[:strip], black), _ink_boxes(old[:strip], black)
    assert len(new_lines) == len(old_lines) == 2
    for (t1, b1, l1, r1), (t0, b0, l0, r0) in zip(new_lines, old_lines):
        assert abs(t1 - t0) <= 1 and abs(b1 - b0) <= 1 and abs(l1 - l0) <= 1
        assert abs((r1 - l1) - (r0 - l0)) <= 0.05 * (r0 - l0)
    # letters (what differs from the slice without them): in the same place, centre within
    # 1.5 px, with a similar amount of ink
    from edge_ich.outputs.keyimages import render_slice

    size = (new.shape[0] - strip, width)
    plain = np.concatenate([new[:strip], render_slice(series.read_hu(1), mask[1], size, (40.0, 80.0))], axis=0)
    h = new.shape[0]
    for rows, cols in (
        (slice(strip, strip + 40), slice(width // 2 - 30, width // 2 + 30)),
        (slice(h - 40, h), slice(width // 2 - 30, width // 2 + 30)),
        (slice((strip + h) // 2 - 30, (strip + h) // 2 + 30), slice(0, 40)),
        (slice((strip + h) // 2 - 30, (strip + h) // 2 + 30), slice(width - 40, width)),
    ):
        base = plain[rows, cols].astype(np.int32)
        ink_a = np.abs(new[rows, cols].astype(np.int32) - base).max(axis=-1) > 60
        ink_b = np.abs(old[rows, cols].astype(np.int32) - base).max(axis=-1) > 60
        assert ink_b.sum() > 10
        assert abs(int(ink_a.sum()) - int(ink_b.sum())) <= 0.3 * ink_b.sum()
        ca, cb = np.argwhere(ink_a).mean(axis=0), np.argwhere(ink_b).mean(axis=0)
        assert np.abs(ca - cb).max() <= 1.5, (ca, cb)


def test_png_is_what_matplotlib_wrote_but_for_compression(tmp_path: Path) -> None:
    """Pillow writes the pixels, mode, text chunk and resolution matplotlib's imsave wrote; the bytes
    differ only by the zlib level (matplotlib's own bytes again at level 6)."""
    from matplotlib.image import imsave
    from PIL import Image

    from edge_ich.outputs import keyimages
    from edge_ich.outputs.keyimages import save_png

    rgb = np.random.default_rng(0).integers(0, 256, (37, 53, 3), dtype=np.uint8)
    rgb[:, :20] = 40  # flat runs, as in a CT slice: compression has something to find
    imsave(tmp_path / "old.png", rgb, format="png", metadata={"Software": "edge-ich"})
    save_png(tmp_path / "new.png", rgb)
    with Image.open(tmp_path / "old.png") as old, Image.open(tmp_path / "new.png") as new:
        assert new.mode == old.mode == "RGBA"
        assert np.array_equal(np.asarray(new), np.asarray(old))
        assert new.info == old.info
        assert np.array_equal(np.asarray(new)[..., :3], rgb)
    assert (tmp_path / "new.png").read_bytes() != (tmp_path / "old.png").read_bytes()
    default = keyimages.PNG_LEVEL
    try:
        keyimages.PNG_LEVEL = 6
        save_png(tmp_path / "six.png", rgb)
    finally:
        keyimages.PNG_LEVEL = default
    assert (tmp_path / "six.png").read_bytes() == (tmp_path / "old.png").read_bytes()

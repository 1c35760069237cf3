"""Key-image PNGs: a windowed slice with the hemorrhage mask outlined, and a caption a clinician can act on.

Layout: a caption strip on top (slice k/N counted from 1 in sorted order, slice position z in
mm, lesion area on the slice, the window; no patient data), the slice below it. The slice is
shown at square physical pixels and at least `MIN_SIDE` pixels on its long side, upsampled by
nearest neighbour, so a 512x512 slice maps 1:1 and the pixels are the windowed HU themselves.
The mask is drawn as a light red tint inside and a solid red outline just outside, so every
lesion pixel stays visible under the overlay. Patient-direction letters (R/L, A/P, S/I, from the
affine) mark the image edges, so a mirrored acquisition cannot be misread left for right.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edge_ich.errors import OutputError, require
from edge_ich.outputs.atomic import atomic_path
from edge_ich.preprocess import apply_window

MIN_SIDE = 512  # long side of the image region, pixels
MAX_SIDE = 2048
OUTLINE_RGB = (255, 40, 40)
TINT_RGB = (255, 0, 0)
TINT_ALPHA = 0.3
OUTLINE_PX = 2
CAPTION_BG = (0, 0, 0)
STROKE_PX = 2.5 * 100.0 / 72.0 / 2.0  # the letters' black edge: a 2.5 pt outline at 100 dpi, half of it outside


def display_size(shape_yx: tuple[int, int], spacing_yx: tuple[float, float]) -> tuple[int, int]:
    """(height, width) of the image region: square physical pixels, never coarser than native."""
    rows, cols = shape_yx
    row_mm, col_mm = (float(s) if s and s > 0 else 1.0 for s in spacing_yx)
    h_mm, w_mm = rows * row_mm, cols * col_mm
    px = min(row_mm, col_mm, max(h_mm, w_mm) / MIN_SIDE)
    px = max(px, max(h_mm, w_mm) / MAX_SIDE)
    return max(1, round(h_mm / px)), max(1, round(w_mm / px))


def _nearest(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resample of a 2D array to `size` (pixel centres aligned)."""
    rows, cols = img.shape
    h, w = size
    ri = np.minimum(((np.arange(h) + 0.5) * rows / h).astype(np.intp), rows - 1)
    ci = np.minimum(((np.arange(w) + 0.5) * cols / w).astype(np.intp), cols - 1)
    return img[np.ix_(ri, ci)]


def _dilate4(m: np.ndarray, iterations: int) -> np.ndarray:
    """Binary dilation by the 4-neighbour cross, `iterations` times, outside the image empty
    (what scipy.ndimage.binary_dilation does by default, without importing it)."""
    out = m.copy()
    for _ in range(iterations):
        grown = out.copy()
        grown[1:] |= out[:-1]
        grown[:-1] |= out[1:]
        grown[:, 1:] |= out[:, :-1]
        grown[:, :-1] |= out[:, 1:]
        out = grown
    return out


def render_slice(hu: np.ndarray, mask: np.ndarray, size: tuple[int, int], window: tuple[float, float]) -> np.ndarray:
    """RGB uint8 [H, W, 3]: the windowed slice with the mask tinted and outlined."""
    gray = np.rint(apply_window(np.asarray(hu, dtype=np.float32), window[0], window[1]) * 255.0).astype(np.uint8)
    gray = _nearest(gray, size)
    m = _nearest(np.asarray(mask) != 0, size)
    rgb = np.repeat(gray[..., None], 3, axis=2)
    if m.any():
        tint = np.asarray(TINT_RGB, dtype=np.float32)
        inside = rgb[m].astype(np.float32)
        rgb[m] = np.rint(inside * (1.0 - TINT_ALPHA) + tint * TINT_ALPHA).astype(np.uint8)
        ring = _dilate4(m, OUTLINE_PX) & ~m
        rgb[ring] = OUTLINE_RGB
    return rgb


_LETTERS = (("R", "L"), ("A", "P"), ("I", "S"))  # (negative, positive) along LPS x, y, z


def _direction_letter(v: np.ndarray) -> str:
    """Patient direction of a vector in LPS by its dominant axis."""
    axis = int(np.argmax(np.abs(v)))
    return _LETTERS[axis][1 if v[axis] > 0 else 0]


def edge_letters(affine_lps: np.ndarray) -> dict[str, str]:
    """Patient direction at each edge of the displayed slice: {"left", "right", "top", "bottom"}."""
    a = np.asarray(affine_lps, dtype=float)
    col_dir, row_dir = a[:3, 0], a[:3, 1]  # increasing column, increasing row
    return {
        "left": _direction_letter(-col_dir),
        "right": _direction_letter(col_dir),
        "top": _direction_letter(-row_dir),
        "bottom": _direction_letter(row_dir),
    }


_FONT_FILES = {False: "DejaVuSans.ttf", True: "DejaVuSans-Bold.ttf"}


@functools.lru_cache(maxsize=8)
def _font(bold: bool, px: float) -> Any:
    """DejaVu Sans at `px` pixels per em, from matplotlib's font folder (found, not imported)."""
    import importlib.util

    from PIL import ImageFont

    spec = importlib.util.find_spec("matplotlib")
    folders = list(spec.submodule_search_locations or []) if spec is not None else []
    for folder in folders:
        path = Path(folder) / "mpl-data" / "fonts" / "ttf" / _FONT_FILES[bold]
        if path.is_file():
            return ImageFont.truetype(str(path), size=px)
    require("matplotlib")  # names the extra to install
    raise OutputError(f"font {_FONT_FILES[bold]} not found in matplotlib's data folder")


def _text_origin(font: Any, text: str, x: float, y: float, ha: str, va: str) -> tuple[float, float]:
    """Pillow baseline origin of `text` placed as matplotlib places it (x, y from the top left;
    the box of the text is its ink, at least as tall as "lp", anchored by ha/va)."""
    left, top, right, bottom = font.getbbox(text, anchor="ls")
    _, lp_top, _, lp_bottom = font.getbbox("lp", anchor="ls")
    descent = max(bottom, lp_bottom)
    height = max(bottom - top, lp_bottom - lp_top)
    ox = {"left": x, "center": x - (left + right) / 2.0, "right": x - right}[ha]
    oy = {"top": y + height - descent, "center": y + height / 2.0 - descent, "bottom": y - descent}[va]
    return ox, oy


def _coverage(size: tuple[int, int], items: Sequence[tuple[Any, str, float, float]], stroke: float = 0.0) -> np.ndarray:
    """Antialiased ink coverage in [0, 1] of texts drawn at baseline origins, [h, w] float32."""
    from PIL import Image, ImageDraw

    canvas = Image.new("L", (size[1], size[0]), 0)
    draw = ImageDraw.Draw(canvas)
    for font, text, ox, oy in items:
        draw.text((ox, oy), text, fill=255, font=font, anchor="ls", stroke_width=stroke, stroke_fill=255)
    return np.asarray(canvas, dtype=np.float32) / 255.0


def _blend(rgb: np.ndarray, cover: np.ndarray, color: tuple[int, int, int]) -> np.ndarray:
    a = cover[..., None]
    return rgb.astype(np.float32) * (1.0 - a) + np.asarray(color, dtype=np.float32) * a


def _font_px(width: int) -> float:
    return max(11.0, width / 40.0)


def _draw_letters(rgb: np.ndarray, letters: dict[str, str]) -> np.ndarray:
    """White, black-edged direction letters at the edges of the image region."""
    h, w = rgb.shape[:2]
    font = _font(True, _font_px(w) * 1.1)
    spots = {
        "left": (6.0, h / 2.0, "left", "center"),
        "right": (w - 6.0, h / 2.0, "right", "center"),
        "top": (w / 2.0, 6.0, "center", "top"),
        "bottom": (w / 2.0, h - 6.0, "center", "bottom"),
    }
    items = [(font, letters[e], *_text_origin(font, letters[e], x, y, ha, va)) for e, (x, y, ha, va) in spots.items()]
    stroked = _coverage((h, w), items, stroke=STROKE_PX)
    filled = _coverage((h, w), items)
    hit = stroked > 0  # blend only where text was drawn
    out = rgb.copy()
    edged = _blend(rgb[hit], stroked[hit], (0, 0, 0))
    out[hit] = np.rint(_blend(edged, filled[hit], (255, 255, 255))).astype(np.uint8)
    return out


def _caption_strip(lines: Sequence[str], width: int) -> np.ndarray:
    """RGB uint8 [h, width, 3]: white text on black, font scaled to the width."""
    font_px = _font_px(width)
    line_px = font_px * 1.35
    height = int(np.ceil(line_px * len(lines) + font_px * 0.8))
    font = _font(False, font_px)
    items = [
        (font, line, *_text_origin(font, line, font_px * 0.5, font_px * 0.4 + line_px * (k + 0.5), "left", "center"))
        for k, line in enumerate(lines)
    ]
    strip = np.empty((height, width, 3), dtype=np.uint8)
    strip[:] = CAPTION_BG
    return np.rint(_blend(strip, _coverage((height, width), items), (255, 255, 255))).astype(np.uint8)


def _caption(source: Any, i: int, n: int, mask: np.ndarray, window: tuple[float, float]) -> list[str]:
    """Two lines, no patient data: where the slice is, how much lesion it shows, how it is displayed."""
    spacing = source.geometry.spacing
    area_cm2 = float(np.count_nonzero(mask)) * float(spacing[1]) * float(spacing[2]) / 100.0
    z_mm = float((np.asarray(source.geometry.affine_lps, dtype=float) @ np.array([0.0, 0.0, i, 1.0]))[2])
    return [
        f"slice {i + 1}/{n}   z {z_mm:+.1f} mm   lesion area {area_cm2:.2f} cm\u00b2",
        f"W {window[1]:g} / L {window[0]:g}   edge-ich, research use only",
    ]


def key_image(source: Any, mask_zyx: np.ndarray, i: int, window: tuple[float, float] = (40.0, 80.0)) -> np.ndarray:
    """RGB uint8 key image of slice `i`: caption strip on top of the rendered slice."""
    shape = tuple(source.geometry.shape)
    if not 0 <= i < shape[0]:
        raise ValueError(f"slice index {i} outside 0..{shape[0] - 1}")
    hu = source.read_hu(i)
    size = display_size(shape[1:], tuple(source.geometry.spacing[1:]))
    img = _draw_letters(render_slice(hu, mask_zyx[i], size, window), edge_letters(source.geometry.affine_lps))
    strip = _caption_strip(_caption(source, i, shape[0], mask_zyx[i], window), size[1])
    return np.concatenate([strip, img], axis=0)


#: zlib level of the key images (see `save_png`).
PNG_LEVEL = 1


def save_png(path: Path, rgb: np.ndarray) -> None:
    """RGB uint8 [H, W, 3] as an RGBA PNG with a Software text chunk and 100 dpi: the pixels and
    chunks matplotlib's `imsave(..., metadata={"Software": "edge-ich"})` wrote, through Pillow alone.

    zlib level 1 instead of Pillow's default 6: the same pixels (PNG is lossless), 3-4x less encoding
    time for a CT slice and, for these images, a file no larger."""
    from PIL import Image, PngImagePlugin

    rgba = np.empty((*rgb.shape[:2], 4), dtype=np.uint8)
    rgba[..., :3] = rgb
    rgba[..., 3] = 255
    info = PngImagePlugin.PngInfo()
    info.add_text("Software", "edge-ich")
    Image.frombuffer("RGBA", (rgba.shape[1], rgba.shape[0]), rgba, "raw", "RGBA", 0, 1).save(
        path, format="png", pnginfo=info, dpi=(100, 100), compress_level=PNG_LEVEL
    )


def key_image_name(prefix: str, i: int, n: int) -> str:
    """File name with the 1-based slice number shown in the caption, zero-padded to sort."""
    return f"{prefix}_{i + 1:0{max(3, len(str(n)))}d}.png"


def write_key_images(
    out_dir: Path,
    source: Any,
    mask_zyx: np.ndarray,
    slice_indices: list[int],
    *,
    window: tuple[float, float] = (40.0, 80.0),
    prefix: str = "key",
) -> list[Path]:
    """Write one PNG per sorted-order slice index (window = (center, width) in HU); return the paths."""
    mask = mask_zyx if hasattr(mask_zyx, "box") else np.asarray(mask_zyx)  # a SliceMask stays one
    if tuple(mask.shape) != tuple(source.geometry.shape):
        raise ValueError(f"mask shape {mask.shape} does not match the source {tuple(source.geometry.shape)}")
    out_dir = Path(out_dir)
    n = mask.shape[0]
    paths: list[Path] = []
    for i in slice_indices:
        rgb = key_image(source, mask, int(i), window)
        path = out_dir / key_image_name(prefix, int(i), n)
        try:
            with atomic_path(path) as tmp:
                save_png(tmp, rgb)
        except OSError as exc:
            raise OutputError(f"cannot write {path.name} in {out_dir}: {exc.strerror or exc}") from None
        paths.append(path)
    return paths

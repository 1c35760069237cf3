"""The key-image text as edge-ich drew it with matplotlib's Agg canvas: the reference the runtime's
Pillow text is compared with (tests/outputs/test_keyimages.py). Test-only; never imported at run time."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from edge_ich.outputs.keyimages import CAPTION_BG, _font_px


def text_layer(width: int, height: int, draw: Any, bg: tuple[int, int, int] | None) -> np.ndarray:
    """RGBA uint8 [height, width, 4] drawn by `draw(fig)` on an Agg canvas of that pixel size."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    dpi = 100.0
    fig = Figure(figsize=(width / dpi, height / dpi), dpi=dpi)
    if bg is None:
        fig.patch.set_alpha(0.0)
    else:
        fig.patch.set_facecolor((bg[0] / 255.0, bg[1] / 255.0, bg[2] / 255.0))
    canvas = FigureCanvasAgg(fig)
    draw(fig)
    canvas.draw()
    drawn = np.asarray(canvas.buffer_rgba())
    out = np.zeros((height, width, 4), dtype=np.uint8)
    if bg is not None:
        out[..., :3] = bg
        out[..., 3] = 255
    h, w = min(height, drawn.shape[0]), min(width, drawn.shape[1])
    out[:h, :w] = drawn[:h, :w]
    return out


def draw_letters(rgb: np.ndarray, letters: dict[str, str]) -> np.ndarray:
    """Blend white, black-edged direction letters onto the edges of the image region."""
    from matplotlib import patheffects

    h, w = rgb.shape[:2]
    size_pt = _font_px(w) * 1.1 * 72.0 / 100.0
    pad_x, pad_y = 6.0 / w, 6.0 / h
    spots = {
        "left": (pad_x, 0.5, "left", "center"),
        "right": (1 - pad_x, 0.5, "right", "center"),
        "top": (0.5, 1 - pad_y, "center", "top"),
        "bottom": (0.5, pad_y, "center", "bottom"),
    }

    def draw(fig: Any) -> None:
        for edge, (x, y, ha, va) in spots.items():
            fig.text(
                x,
                y,
                letters[edge],
                color="white",
                ha=ha,
                va=va,
                fontsize=size_pt,
                family="DejaVu Sans",
                weight="bold",
                path_effects=[patheffects.withStroke(linewidth=2.5, foreground="black")],
            )

    layer = text_layer(w, h, draw, None)
    hit = layer[..., 3] > 0  # blend only where text was drawn
    alpha = layer[hit, 3:4].astype(np.float32) / 255.0
    out = rgb.copy()
    out[hit] = np.rint(rgb[hit].astype(np.float32) * (1.0 - alpha) + layer[hit, :3].astype(np.float32) * alpha).astype(
        np.uint8
    )
    return out


def caption_strip(lines: Sequence[str], width: int) -> np.ndarray:
    """RGB uint8 [h, width, 3]: white text on black, font scaled to the width."""
    font_px = _font_px(width)
    line_px = font_px * 1.35
    height = int(np.ceil(line_px * len(lines) + font_px * 0.8))

    def draw(fig: Any) -> None:
        for k, line in enumerate(lines):
            y = 1.0 - (font_px * 0.4 + line_px * (k + 0.5)) / height
            fig.text(
                font_px * 0.5 / width,
                y,
                line,
                color="white",
                va="center",
                ha="left",
                fontsize=font_px * 72.0 / 100.0,
                family="DejaVu Sans",
            )

    return text_layer(width, height, draw, CAPTION_BG)[..., :3]

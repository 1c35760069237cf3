"""The bundled model on real anatomy: synthetic hematomas in the real head CT slices pydicom(-data) ship.

Writes benchmarks/reports/real_anatomy/{real_anatomy.json, real_anatomy.md}: per case (slice, clot
radius, density) the truth volume, whether a reported region overlaps the clot, the reported
volume and the Dice; and the untouched series (nothing may be reported). The same cases as
tests/test_real_anatomy.py, through the same runner API as `edge-ich run`.

Run:  python benchmarks/real_anatomy.py
"""

from __future__ import annotations

import json
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._common import REPORTS, command_line, write_text_atomic  # noqa: E402
from edge_ich.analysis.metrics import dice  # noqa: E402
from edge_ich.card import bundled_model_path  # noqa: E402
from edge_ich.phantom.insert import (  # noqa: E402
    CASE_DENSITIES_HU,
    CASE_SIZES_MM,
    Hematoma,
    parenchyma_center,
    stack_with_hematoma,
    write_series,
)
from edge_ich.runner import RunOptions, load_model, run  # noqa: E402
from edge_ich.sources.dicom.pixels import hu_from_dataset  # noqa: E402

SLICES = ("693_UNCR.dcm", "J2K_pixelrep_mismatch.dcm")
N, SLICE_MM = 5, 5.0


def one(model: Any, name: str, radius: float | None, density: float) -> dict[str, Any]:
    import pydicom
    from pydicom.data import get_testdata_file

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(get_testdata_file(name))
        hu = hu_from_dataset(ds)
    del ds.PixelData
    px = float(ds.PixelSpacing[0])
    lesion = None if radius is None else Hematoma(parenchyma_center(hu, px, radius), radius, max(radius, 7.5), density)
    vol, truth = stack_with_hematoma(hu, px, SLICE_MM, N, lesion)
    with tempfile.TemporaryDirectory() as tmp:
        write_series(Path(tmp) / "in", ds, vol, SLICE_MM)
        res = run(
            RunOptions(series=Path(tmp) / "in", out=Path(tmp) / "out", write_seg=False, key_images=0),
            model=model,
            progress=False,
        )
    mask = res.mask.astype(bool)
    f = res.report["finding"]
    voxel_ml = float(np.prod(res.report["input"]["spacing_mm"])) / 1000.0
    return {
        "slice": name,
        "radius_mm": radius,
        "density_hu": density if radius is not None else None,
        "truth_ml": round(float(truth.sum()) * voxel_ml, 2),
        "found": bool(f["hemorrhage"] and (mask & truth).any()) if radius is not None else None,
        "reported_ml": f["total_volume_ml"],
        "regions": f["n_components"],
        "dice": round(dice(mask, truth), 3) if radius is not None else None,
    }


def main() -> None:
    path = bundled_model_path()
    if path is None:
        sys.exit("no bundled model (engines/ich_segmenter.onnx)")
    model = load_model(path)
    try:
        rows = [one(model, s, None, 0.0) for s in SLICES]
        rows += [one(model, s, r, d) for s in SLICES for r in CASE_SIZES_MM for d in CASE_DENSITIES_HU]
    finally:
        model.close()
    out = REPORTS / "real_anatomy"
    out.mkdir(parents=True, exist_ok=True)
    doc = {
        "command": command_line(),
        "model": model.card.card_id,
        "slices_per_series": N,
        "slice_mm": SLICE_MM,
        "cases": rows,
    }
    write_text_atomic(out / "real_anatomy.json", json.dumps(doc, indent=2) + "\n")
    lines = [
        "# The bundled model on real anatomy",
        "",
        f"Model `{model.card.card_id}`. Each real slice stacked into {N} slices of {SLICE_MM:g} mm; an ellipsoidal",
        "clot blended into the parenchyma (one-pixel partial-volume edge, 3 HU noise). Found = a reported",
        "region overlaps the clot. Untouched rows: the same series without a clot (nothing may be reported).",
        f"Command: `{command_line()}`",
        "",
        "| slice | radius mm | density HU | truth mL | found | reported mL | regions | Dice |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        cells = [
            r["slice"],
            r["radius_mm"] or "untouched",
            r["density_hu"] or "-",
            r["truth_ml"],
            "-" if r["found"] is None else ("yes" if r["found"] else "**no**"),
            r["reported_ml"],
            r["regions"],
            "-" if r["dice"] is None else f"{r['dice']:.3f}",
        ]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    write_text_atomic(out / "real_anatomy.md", "\n".join(lines) + "\n")
    print(f"wrote {out / 'real_anatomy.md'}")


if __name__ == "__main__":
    main()

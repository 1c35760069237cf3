"""Precision report: FP32 vs INT8 (vs FP16 size) of one model on CPU, written as JSON + Markdown.

For each precision: file size, ONNX Runtime CPU latency (median ms per slice over held-out
batches), Dice vs truth and vs FP32, sensitivity vs FP32, and the gate's verdict. Held-out and
calibration slices come from the same stratified split `edge-ich build-engine` uses. FP16 is
not run on the CPU (float16 convolutions there are ~200x slower): only its size is reported.

Runs on any model with a card: `--model PATH`, else the bundled model, else the 4-layer test net
of tests/buildnets.py (hand-set weights, not trained; the report says so).
Data: `--calib DIR` (DICOM series folders with truth.npz), else phantoms generated here.

    python benchmarks/precision_report.py [--model M] [--calib DIR] [--cases 6] [--size 256]
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from edge_ich.builder import gate  # noqa: E402
from edge_ich.builder.calib import LabelledSeries, read_folder, split_slices  # noqa: E402
from edge_ich.builder.precision import inspect_qdq, make_fp16, make_int8  # noqa: E402
from edge_ich.card import bundled_model_path, load_card  # noqa: E402
from edge_ich.outputs.atomic import write_text_atomic  # noqa: E402


def _model(arg: Path | None, work: Path) -> tuple[Path, str]:
    if arg is not None:
        return arg, f"{arg.name} (given with --model)"
    found = bundled_model_path()
    if found is not None:
        return found, "the bundled model (engines/ich_segmenter.onnx)"
    from tests.buildnets import build_deep_model

    return (
        build_deep_model(work / "model", "testnet", size=64),
        "the 4-layer TEST net of tests/buildnets.py (hand-set weights, 64x64, not trained): no bundled model existed when this ran",
    )


def _phantoms(cases: int, slices: int, size: int, seed: int, work: Path) -> tuple[list[LabelledSeries], str]:
    """Phantom series: written as DICOM and read back with the runtime reader when phantom_io exists, else in memory."""
    try:
        from edge_ich.phantom.writers import write_dataset
    except ImportError:
        write_dataset = None
    if write_dataset is not None:
        root = work / "phantoms"
        write_dataset(
            root,
            cases=cases,
            seed=seed,
            layout="dicom",
            difficulty="standard",
            slices=slices,
            thickness=5.0,
            compress=False,
        )
        series, _ = read_folder(root)
        rows, cols = series[0].source.geometry.shape[1:]
        return series, (
            f"{cases} phantom series (edge_ich.phantom.writers.write_dataset, seed {seed}, standard difficulty, {slices} "
            f"slices of 5 mm, {rows}x{cols}) written as DICOM and read back with the runtime reader"
        )
    from edge_ich.phantom.generator import case_seed, generate_case
    from edge_ich.sources.volume import ArraySource

    series = []
    for k in range(cases):
        c = generate_case(case_seed(seed, k), "standard", slices=slices, thickness=5.0, size=size, positive=k % 3 != 2)
        series.append(LabelledSeries(ArraySource(c.hu.astype("float32"), c.spacing), f"case_{k:03d}", c.labels))
    return series, (
        f"{cases} phantom series (edge_ich.phantom.generate_case, seed {seed}, {slices} slices of 5 mm, {size}x{size}) "
        "in memory (phantom_io's DICOM writer was not available)"
    )


def _row(name: str, s: gate.Scores | None, size: int, verdict: str) -> dict[str, Any]:
    d: dict[str, Any] = {"precision": name, "size_bytes": size, "verdict": verdict}
    if s is not None:
        d |= {
            "latency_ms_per_slice": s.latency_ms_per_slice,
            "dice_vs_truth": s.dice_vs_truth,
            "dice_vs_fp32": s.dice_vs_fp32,
            "sens_vs_fp32": s.sens_vs_fp32,
            "slice_sens_vs_fp32": s.slice_sens_vs_fp32,
            "sens_vs_truth": s.sens_vs_truth,
        }
    return d


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path)
    ap.add_argument("--calib", type=Path, help="DICOM series folders with truth.npz (default: generate phantoms)")
    ap.add_argument("--cases", type=int, default=6)
    ap.add_argument("--slices", type=int, default=24)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--calib-slices", type=int, default=500)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--max-dice-drop", type=float, default=0.01)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "reports" / "precision")
    args = ap.parse_args(argv)
    command = " ".join(
        [
            "python",
            "benchmarks/precision_report.py",
            *(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:])),
        ]
    )
    with tempfile.TemporaryDirectory(prefix="edge-ich-precision-") as td:
        work = Path(td)
        model, model_note = _model(args.model, work)
        card = load_card(model)
        if args.calib:
            series, _ = read_folder(args.calib)
            data_note = f"DICOM series under {args.calib}"
        else:
            series, data_note = _phantoms(args.cases, args.slices, args.size, args.seed, work)
        split = split_slices(series, card, n_calib=args.calib_slices, seed=args.seed)
        q, h = work / "int8.onnx", work / "fp16.onnx"
        recipe = make_int8(model, q, card.input_name, split.calib.inputs)
        make_fp16(model, h)
        rep = gate.run_gate(model, q, card, split.heldout, "int8", args.max_dice_drop, threads=args.threads)
        qdq = inspect_qdq(q).to_dict()
        rows = [
            _row("fp32", rep.fp32, model.stat().st_size, "reference"),
            _row("int8", rep.candidate, q.stat().st_size, "PASS" if rep.passed else "REFUSED"),
            _row(
                "fp16",
                None,
                h.stat().st_size,
                "not measured on CPU (float16 convs ~200x slower); gated on the GPU engine",
            ),
        ]
    import onnxruntime

    doc = {
        "command": command,
        "model": model_note,
        "card": card.card_id,
        "input_size": list(card.input_size),
        "data": data_note,
        "calibration_slices": len(split.calib),
        "calibration_bleed": int(split.calib.positive.sum()),
        "heldout_slices": len(split.heldout),
        "heldout_bleed": rep.n_bleed_slices,
        "strata": split.truth_source,
        "notes": split.notes,
        "recipe": recipe,
        "qdq": qdq,
        "gate": {
            "dice_drop": rep.dice_drop,
            "sens_drop": rep.sens_drop,
            "drops": rep.drops,
            "max_dice_drop": rep.max_dice_drop,
            "max_sens_drop": rep.max_sens_drop,
            "passed": rep.passed,
            "reference": rep.reference,
        },
        "rows": rows,
        "environment": {
            "onnxruntime": onnxruntime.__version__,
            "threads": args.threads,
            "python": platform.python_version(),
            "machine": platform.machine(),
            "processor": platform.processor() or platform.machine(),
        },
    }
    args.out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(args.out / "precision.json", json.dumps(doc, indent=2) + "\n")

    def f(v: Any, nd: int = 3) -> str:
        return "n/a" if v is None else f"{v:.{nd}f}"

    md = [
        "# Precision report: FP32 vs INT8 (Q/DQ) on the CPU",
        "",
        f"Command (from the repository root): `{command}`",
        "",
        f"- Model: {model_note}; card `{card.card_id}`, input {card.input_size[0]}x{card.input_size[1]}, context {card.context}",
        f"- Data: {data_note}",
        f"- Calibration: {len(split.calib)} slices ({int(split.calib.positive.sum())} bleed); held out: {len(split.heldout)} "
        f"slices ({rep.n_bleed_slices} bleed by {rep.reference}), disjoint, stratified",
        f"- INT8 recipe: ONNX Runtime quantize_static, QDQ, symmetric INT8, per-channel weights, {recipe['calibration_method']} "
        f"calibration; FP32 layers: {', '.join(qdq['fp32_weighted_nodes'])}",
        f"- ONNX Runtime {onnxruntime.__version__} on the CPU, {args.threads} threads; latency = median ms per slice over batches of 8",
        *(f"- Note: {n}" for n in split.notes),
        "",
        "| precision | size (KiB) | ORT CPU ms/slice | Dice vs truth | Dice vs FP32 | sens vs FP32 | verdict |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        md.append(
            f"| {r['precision']} | {r['size_bytes'] / 1024:.1f} | {f(r.get('latency_ms_per_slice'), 2)} | "
            f"{f(r.get('dice_vs_truth'))} | {f(r.get('dice_vs_fp32'))} | {f(r.get('sens_vs_fp32'))} | {r['verdict']} |"
        )
    md += [
        "",
        f"Gate ({'PASS' if rep.passed else 'REFUSED'}): " + rep.lines()[-1].strip().rsplit(":", 1)[0] + ". The drop is "
        "FP32's score minus INT8's; the gate judges it against truth where truth exists, else against the FP32 masks. Dice is pooled over all "
        "held-out pixels; against truth on the native grid, against FP32 on the model grid.",
        "",
    ]
    write_text_atomic(args.out / "precision.md", "\n".join(md))
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())

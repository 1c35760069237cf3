"""`python -m training <command>`: train (weakly or fully supervised, exports ONNX + card) and experiment.

Runs under torchrun unchanged (`torchrun --nproc_per_node N -m training train ...`).
User errors (EdgeIchError) print one line and exit 1.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from edge_ich.errors import EdgeIchError, InputError

#: The experiment's arms (training/experiment.py ARMS; here so parsing imports no torch).
ARMS = ("threshold", "fs_small", "ws_large", "fs_large", "ws_large_f10", "ws_large_f25", "ws_large_f50")


def _add_pipeline_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model and training length")
    g.add_argument("--size", type=int, default=128, help="model input size (square)")
    g.add_argument(
        "--cls-size",
        type=int,
        default=None,
        help="classifier input size (default: --size); a coarser grid trains faster",
    )
    g.add_argument("--context", type=int, default=1, help="neighbour slices each side stacked as channels")
    g.add_argument("--seq-len", type=int, default=8, help="classifier window of contiguous slices")
    g.add_argument("--cls-steps", type=int, default=400)
    g.add_argument("--cls-batch", type=int, default=4, help="windows per classifier step")
    g.add_argument("--cls-lr", type=float, default=1e-3)
    g.add_argument("--no-cls-augment", action="store_true", help="no flips or shifts of the classifier's windows")
    g.add_argument(
        "--cls-pool",
        default="lse",
        choices=["mean", "max", "lse"],
        help="how the classifier pools each slice's feature maps",
    )
    g.add_argument("--cls-stride", type=int, default=4, choices=[4, 8], help="classifier encoder output stride")
    g.add_argument(
        "--cls-widths", default="16,32,48,64", help="classifier ResNet stage widths, comma-separated (4 stages)"
    )
    g.add_argument("--seg-steps", type=int, default=800)
    g.add_argument("--seg-batch", type=int, default=16)
    g.add_argument("--seg-base", type=int, default=12, help="U-Net width of the first level")
    g.add_argument(
        "--hard-negative-weight",
        type=float,
        default=1.0,
        help="weight of the BCE on the most confident 1%% of pixels of slices labelled negative (0: off; "
        "the experiment keeps 0, its pre-registered protocol)",
    )
    g.add_argument("--self-train-rounds", type=int, default=1, help="weakly supervised: rounds of self-training")
    g.add_argument("--self-train-steps", type=int, default=None, help="steps per round (default: half of seg-steps)")
    g.add_argument(
        "--min-component-mm3",
        type=float,
        default=None,
        help="smallest kept component; default: chosen on the validation cases with the threshold",
    )
    g.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto")
    g.add_argument("--amp", action="store_true", help="bf16 autocast (CUDA, and CPUs with AVX-512 BF16)")
    g.add_argument("--seed", type=int, default=0)
    r = p.add_argument_group("pseudo-mask refinement (see training/refine.py)")
    r.add_argument(
        "--cam-threshold", type=float, default=None, help="CAM value (of the volume's peak) opening the search region"
    )
    r.add_argument("--hu-low", type=float, default=None, help="lowest HU taken as blood")
    r.add_argument("--hu-high", type=float, default=None, help="highest HU taken as blood")
    r.add_argument("--component-cam-peak", type=float, default=None, help="CAM value a kept component must reach")
    r.add_argument("--rel-hu", type=float, default=None, help="HU above the slice's brain level taken as blood")
    r.add_argument("--asym-hu", type=float, default=None, help="> 0: also voxels this much denser than the mirror side")


def _widths(text: str) -> tuple[int, ...]:
    from edge_ich.errors import InputError

    try:
        widths = tuple(int(t) for t in text.split(","))
    except ValueError:
        widths = ()
    if len(widths) != 4 or min(widths) < 1:
        raise InputError(f"--cls-widths wants 4 positive integers separated by commas, not {text!r}")
    return widths


def _non_negative(name: str, value: float) -> float:
    from edge_ich.errors import InputError

    if not value >= 0:  # also refuses nan
        raise InputError(f"{name} wants a number >= 0, not {value!r}")
    return value


def _pipeline(a: argparse.Namespace) -> PipelineConfig:  # noqa: F821
    from edge_ich.errors import InputError
    from training.pipeline import PipelineConfig
    from training.refine import RefineParams

    if a.cls_size is not None and a.cls_size != 0 and not 16 <= a.cls_size <= a.size:
        raise InputError(f"--cls-size must lie between 16 and --size ({a.size}), not {a.cls_size}")
    refine = RefineParams()
    for key in ("cam_threshold", "hu_low", "hu_high", "component_cam_peak", "rel_hu", "asym_hu"):
        if getattr(a, key) is not None:
            setattr(refine, key, float(getattr(a, key)))
    return PipelineConfig(
        refine=refine,
        size=a.size,
        cls_size=a.cls_size,
        context=a.context,
        seq_len=a.seq_len,
        cls_steps=a.cls_steps,
        cls_batch=a.cls_batch,
        cls_lr=a.cls_lr,
        cls_pool=a.cls_pool,
        cls_stride=a.cls_stride,
        cls_widths=_widths(a.cls_widths),
        cls_augment=not a.no_cls_augment,
        seg_steps=a.seg_steps,
        seg_batch=a.seg_batch,
        hard_negative_weight=_non_negative("--hard-negative-weight", a.hard_negative_weight),
        seg_base=a.seg_base,
        self_train_rounds=a.self_train_rounds,
        self_train_steps=a.self_train_steps,
        min_component_mm3=a.min_component_mm3,
        device=a.device,
        amp=a.amp,
        seed=a.seed,
    )


def _add_phantom_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("phantom data")
    g.add_argument("--difficulty", default="standard", choices=["easy", "standard", "hard"])
    g.add_argument("--slices", type=int, default=24, help="slices per phantom; 0 = full head coverage")
    g.add_argument("--thickness", type=float, default=5.0, help="slice thickness mm; 0 = random 1-5 mm per case")
    g.add_argument(
        "--gen-size", type=int, default=None, help="generate phantoms at this size, then resize like the runtime"
    )
    g.add_argument("--cache", type=Path, default=Path("runs/cache"), help="folder for cached volumes (.npz)")
    g.add_argument("--workers", type=int, default=1, help="processes generating phantoms")


def train_options(a: argparse.Namespace) -> TrainOptions:  # noqa: F821
    """The TrainOptions that `python -m training train` builds from its parsed arguments."""
    from training.train import TrainOptions

    return TrainOptions(
        data=a.data,
        root=a.root,
        cases=a.cases,
        val_cases=a.val_cases,
        test_cases=a.test_cases,
        seed=a.seed,
        difficulty=a.difficulty,
        slices=a.slices or None,
        thickness=a.thickness or None,
        gen_size=a.gen_size,
        supervision=a.supervision,
        work=a.work,
        cache=a.cache,
        out=None if a.no_export else a.out,
        name=a.name,
        workers=a.workers,
        pipeline=_pipeline(a),
    )


def parser() -> argparse.ArgumentParser:
    """The argument parser of `python -m training` (train and experiment)."""
    ap = argparse.ArgumentParser(prog="python -m training", description=__doc__)
    sub = ap.add_subparsers(dest="cmd", required=True)

    t = sub.add_parser("train", help="train a segmenter and export it as ONNX with its card")
    t.add_argument("--data", default="phantom", help="phantom, rsna, physionet, instance, bhsd or generic")
    t.add_argument("--root", type=Path, default=None, help="dataset folder (not for phantoms)")
    t.add_argument("--cases", type=int, default=120, help="phantom training cases")
    t.add_argument("--val-cases", type=int, default=12)
    t.add_argument("--test-cases", type=int, default=24)
    t.add_argument("--supervision", default="weak", choices=["weak", "full"])
    t.add_argument("--work", type=Path, default=Path("runs/train"), help="checkpoints and stage outputs (resumable)")
    t.add_argument(
        "--out", type=Path, default=Path("engines/ich_segmenter.onnx"), help="ONNX model path (card beside it)"
    )
    t.add_argument("--no-export", action="store_true")
    t.add_argument("--name", default="ich_segmenter")
    _add_pipeline_args(t)
    _add_phantom_args(t)

    e = sub.add_parser("experiment", help="the pre-registered low-data experiment (benchmarks/reports/experiment)")
    e.add_argument("--out", type=Path, default=Path("benchmarks/reports/experiment"))
    e.add_argument("--work", type=Path, default=Path("runs/experiment"), help="one resumable folder per seed and arm")
    e.add_argument("--seeds", default="0,1,2", help="seeds to run now")
    e.add_argument("--design-seeds", default="0,1,2", help="the pre-registered seeds the summary is judged on")
    e.add_argument("--arms", default=",".join(ARMS), help="arms to run, in this order within each seed")
    e.add_argument("--large", type=int, default=300, help="large-set phantoms (slice labels only)")
    e.add_argument("--val", type=int, default=20, help="large-domain validation phantoms")
    e.add_argument("--small", type=int, default=8, help="target-site phantoms with voxel masks")
    e.add_argument("--test", type=int, default=120, help="target-site test phantoms")
    e.add_argument("--folds", type=int, default=5)
    e.add_argument("--slices", type=int, default=32, help="slices per phantom")
    e.add_argument("--fs-large-steps", type=int, default=1200)
    e.add_argument("--fs-small-steps", type=int, default=300, help="per fold")
    e.add_argument("--summarize", action="store_true", help="only rewrite the reports from the finished units")
    e.add_argument("--cache", type=Path, default=Path("runs/cache"), help="folder for cached volumes (.npz)")
    e.add_argument("--workers", type=int, default=1, help="processes generating phantoms")
    _add_pipeline_args(e)
    e.set_defaults(cls_steps=600, seg_steps=800, self_train_steps=400, seg_base=8, hard_negative_weight=0.0)

    return ap


def main(argv: list[str] | None = None) -> int:
    a = parser().parse_args(argv)
    try:
        if a.cmd == "train":
            from training.train import train_main

            o = train_options(a)
            train_main(o)
        elif a.cmd == "experiment":
            from training.experiment import ExperimentOptions, run_experiment, summarize_units

            eo = ExperimentOptions(
                out=a.out,
                work=a.work,
                seeds=tuple(int(x) for x in a.seeds.split(",")),
                design_seeds=tuple(int(x) for x in a.design_seeds.split(",")),
                arms=tuple(x for x in a.arms.split(",") if x),
                large=a.large,
                val=a.val,
                small=a.small,
                test=a.test,
                folds=a.folds,
                slices=a.slices,
                fs_large_steps=a.fs_large_steps,
                fs_small_steps=a.fs_small_steps,
                cache=a.cache,
                workers=a.workers,
                pipeline=_pipeline(a),
                argv=list(sys.argv[1:] if argv is None else argv),
            )
            bad = [x for x in eo.arms if x not in ARMS]
            if bad:
                raise InputError(f"unknown arm {bad[0]!r} ({', '.join(ARMS)})")
            summarize_units(eo) if a.summarize else run_experiment(eo)
    except EdgeIchError as exc:
        print(f"training: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

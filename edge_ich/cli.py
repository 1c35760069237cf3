"""The `edge-ich` command. Each command is a thin wrapper over one typed API function.

EdgeIchError and usage errors -> one line on stderr and exit 1 (no traceback, no patient data).
Anything else is a bug and keeps its traceback. Heavy imports happen inside the commands.
"""

from __future__ import annotations

import sys
from enum import Enum
from pathlib import Path

import typer

from edge_ich.errors import EdgeIchError, NotAssessable

app = typer.Typer(
    name="edge-ich",
    help="Intracranial hemorrhage segmentation on head CT at the point of care (research use only).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


class BackendOpt(str, Enum):
    auto = "auto"
    onnxrt = "onnxrt"
    tensorrt = "tensorrt"


class LayoutOpt(str, Enum):
    dicom = "dicom"
    rsna = "rsna"
    physionet = "physionet"
    instance = "instance"


class DifficultyOpt(str, Enum):
    easy = "easy"
    standard = "standard"
    hard = "hard"


class PrecisionOpt(str, Enum):
    fp32 = "fp32"
    fp16 = "fp16"
    int8 = "int8"


def _inference_process() -> None:
    """Thread budget for a command that runs the model: BLAS on the calling thread (set before numpy loads)."""
    from edge_ich.host.threads import limit_blas

    limit_blas()


@app.command()
def run(
    series: Path | None = typer.Option(None, "--series", help="Folder with a DICOM series (searched recursively)."),
    volume: Path | None = typer.Option(None, "--volume", help="NIfTI volume in HU instead of a DICOM folder."),
    model: Path | None = typer.Option(
        None, "--model", help="ONNX model (with its .card.json) or TensorRT .plan; default: the bundled model."
    ),
    out: Path = typer.Option(Path("edge-ich-out"), "--out", help="Output folder."),
    backend: BackendOpt = typer.Option(BackendOpt.auto, "--backend", help="Inference backend."),
    series_uid: str | None = typer.Option(
        None, "--series-uid", help="Pick this SeriesInstanceUID when the folder holds several."
    ),
    json_out: bool = typer.Option(False, "--json", help="Print the report JSON instead of the summary line."),
    threads: int | None = typer.Option(None, "--threads", min=1, help="CPU threads for ONNX Runtime (default: all)."),
    batch: int = typer.Option(4, "--batch", min=1, max=64, help="Slices per inference call."),
    no_seg: bool = typer.Option(False, "--no-seg", help="Skip the DICOM Segmentation output."),
) -> None:
    """Segment hemorrhage in one head-CT series and write report, mask, SEG and key images."""
    _inference_process()
    from edge_ich.runner import RunOptions, run_and_print

    run_and_print(
        RunOptions(
            series=series,
            volume=volume,
            model=model,
            out=out,
            backend=backend.value,
            series_uid=series_uid,
            threads=threads,
            batch=batch,
            write_seg=not no_seg,
        ),
        json_out=json_out,
    )


@app.command()
def phantom(
    out: Path = typer.Option(..., "--out", help="Output folder."),
    cases: int = typer.Option(1, "--cases", min=1, max=100000, help="Number of cases."),
    seed: int = typer.Option(0, "--seed", help="Random seed (same seed, same bytes)."),
    layout: LayoutOpt = typer.Option(LayoutOpt.dicom, "--layout", help="On-disk layout."),
    difficulty: DifficultyOpt = typer.Option(DifficultyOpt.standard, "--difficulty"),
    slices: int | None = typer.Option(
        None, "--slices", min=1, max=1000, help="Slices per case (default: from thickness)."
    ),
    thickness: float | None = typer.Option(
        None, "--thickness", min=0.5, max=10.0, help="Slice thickness in mm (default: random 1-5)."
    ),
    compress: bool = typer.Option(
        False, "--compress", help="Write JPEG 2000 lossless instead of uncompressed (dicom/rsna)."
    ),
    size: int = typer.Option(
        512, "--size", min=64, max=1024, help="Matrix size (pixel spacing scales so the head keeps its size)."
    ),
    site: str = typer.Option(
        "default",
        "--site",
        help="Acquisition protocol: default, or target (2.5 mm, 200 mm FOV, sharp kernel, low dose).",
    ),
) -> None:
    """Generate synthetic head-CT series with hemorrhages and ground truth."""
    from edge_ich.phantom.writers import write_dataset

    summary = write_dataset(
        out,
        cases=cases,
        seed=seed,
        layout=layout.value,
        difficulty=difficulty.value,
        slices=slices,
        thickness=thickness,
        compress=compress,
        size=size,
        site=site,
    )
    typer.echo(summary)


@app.command("build-engine")
def build_engine(
    model: Path = typer.Argument(..., help="FP32 ONNX model with its card."),
    precision: PrecisionOpt = typer.Option(PrecisionOpt.fp16, "--precision"),
    calib: Path | None = typer.Option(
        None, "--calib", help="Folder of DICOM series (or phantom folder) for INT8 calibration and the gate."
    ),
    calib_slices: int = typer.Option(
        500, "--calib-slices", min=8, help="Calibration slices (stratified bleed/no bleed)."
    ),
    max_dice_drop: float = typer.Option(
        0.01, "--max-dice-drop", min=0.0, max=1.0, help="Refuse the build above this Dice drop vs FP32."
    ),
    max_sens_drop: float = typer.Option(
        0.02, "--max-sens-drop", min=0.0, max=1.0, help="Refuse the build above this sensitivity drop."
    ),
    out: Path = typer.Option(Path("engines/build"), "--out", help="Output folder."),
    workspace: int = typer.Option(1024, "--workspace", min=16, help="TensorRT workspace cap in MB."),
    dla_core: int | None = typer.Option(
        None, "--dla-core", min=0, max=1, help="Build for DLA core K (Orin NX/AGX) with GPU fallback."
    ),
    timing_cache: Path | None = typer.Option(None, "--timing-cache", help="TensorRT timing cache file to reuse."),
    quantizer: str = typer.Option("ort", "--quantizer", help="INT8 quantizer: ort (ONNX Runtime) or modelopt."),
    batch: int = typer.Option(4, "--batch", min=1, max=64, help="Batch the engine profile is optimised for."),
) -> None:
    """Make FP16/INT8 ONNX, gate its accuracy, and build a TensorRT engine with a manifest."""
    from edge_ich.builder.engine import BuildOptions, build_and_print

    build_and_print(
        BuildOptions(
            model=model,
            precision=precision.value,
            calib=calib,
            calib_slices=calib_slices,
            max_dice_drop=max_dice_drop,
            max_sens_drop=max_sens_drop,
            out=out,
            workspace_mb=workspace,
            dla_core=dla_core,
            timing_cache=timing_cache,
            quantizer=quantizer,
            batch=batch,
        )
    )


@app.command()
def bench(
    model: Path | None = typer.Option(None, "--model", help="Model or engine; default: the bundled model."),
    series: Path | None = typer.Option(None, "--series", help="DICOM series folder to stream."),
    use_phantom: bool = typer.Option(False, "--phantom", help="Generate a phantom series to stream."),
    backend: BackendOpt = typer.Option(BackendOpt.auto, "--backend"),
    batch: int = typer.Option(4, "--batch", min=1, max=64),
    warmup: float = typer.Option(2.0, "--warmup", min=0.0, help="Warm-up seconds."),
    duration: float | None = typer.Option(None, "--duration", min=0.1, help="Measure for this many seconds."),
    iterations: int | None = typer.Option(None, "--iterations", min=1, help="Or: measure this many series passes."),
    threads: int | None = typer.Option(None, "--threads", min=1),
    out: Path = typer.Option(Path("edge-ich-bench"), "--out", help="Report folder (bench.json, bench.md, PNGs)."),
) -> None:
    """Measure the point-of-care path per stage and write bench.json, bench.md and plots."""
    _inference_process()
    from edge_ich.bench import BenchOptions, bench_and_print

    bench_and_print(
        BenchOptions(
            model=model,
            series=series,
            phantom=use_phantom,
            backend=backend.value,
            batch=batch,
            warmup_s=warmup,
            duration_s=duration,
            iterations=iterations,
            threads=threads,
            out=out,
        )
    )


@app.command()
def serve(
    port: int = typer.Option(11112, "--port", min=1, max=65535),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to bind (default loopback only)."),
    ae_title: str = typer.Option("EDGE-ICH", "--ae-title"),
    allow_ae: str | None = typer.Option(
        None, "--allow-ae", help="Comma-separated calling AE titles allowed (default: any)."
    ),
    spool: Path = typer.Option(Path("edge-ich-spool"), "--spool", help="Spool folder for received instances."),
    out: Path = typer.Option(Path("edge-ich-out"), "--out", help="Output folder (one subfolder per series)."),
    send_to: str | None = typer.Option(None, "--send-to", help="AE@HOST:PORT to C-STORE the SEG to."),
    quiet_seconds: float = typer.Option(5.0, "--quiet-seconds", min=0.0),
    watch: Path | None = typer.Option(None, "--watch", help="Also process series dropped into this folder."),
    model: Path | None = typer.Option(None, "--model"),
    backend: BackendOpt = typer.Option(BackendOpt.auto, "--backend"),
) -> None:
    """Receive series over DICOM C-STORE (or a watch folder), infer, and send the SEG back."""
    _inference_process()
    from edge_ich.serve import ServeOptions, serve_forever

    serve_forever(
        ServeOptions(
            port=port,
            host=host,
            ae_title=ae_title,
            allow_ae=allow_ae,
            spool=spool,
            out=out,
            send_to=send_to,
            quiet_seconds=quiet_seconds,
            watch=watch,
            model=model,
            backend=backend.value,
        )
    )


@app.command()
def doctor(
    backend: BackendOpt | None = typer.Option(
        None, "--backend", help="Exit 1 unless this backend can run here (auto: ONNX Runtime at least)."
    ),
    json_out: bool = typer.Option(False, "--json", help="Print the report as JSON."),
    engines: Path | None = typer.Option(
        None, "--engines", help="Folder of models/engines to check (default: the bundled engines/)."
    ),
) -> None:
    """What this machine has for each backend, which engines would load here, and how to install the rest."""
    from edge_ich.doctor import doctor_and_print

    doctor_and_print(backend.value if backend else None, json_out=json_out, engines_dir=engines)


@app.command()
def version() -> None:
    """Print the edge-ich version."""
    from edge_ich import __version__

    typer.echo(__version__)


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the Typer app, turning EdgeIchError into one line and exit 1."""
    try:
        app(args=argv, standalone_mode=False)
    except NotAssessable as exc:  # a verdict, not a failure: one line, the report says more
        msg = " ".join(str(exc).split())
        where = f" (report: {exc.report_path})" if exc.report_path is not None else ""
        print(f"edge-ich: {msg}{where}", file=sys.stderr)
        return 1
    except EdgeIchError as exc:
        msg = " ".join(str(exc).split()) or type(exc).__name__
        print(f"edge-ich: error: {msg}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("edge-ich: interrupted", file=sys.stderr)
        return 130
    except typer.Exit as exc:
        return int(getattr(exc, "exit_code", 0) or 0)
    except typer.Abort:
        print("edge-ich: aborted", file=sys.stderr)
        return 1
    except Exception as exc:
        # usage and parameter errors (click's, or typer's own copy of click): bad input too, so
        # one line and exit 1 like every other input error; `--help` names the options
        fmt = getattr(exc, "format_message", None)
        if callable(fmt) and isinstance(getattr(exc, "exit_code", None), int):
            if type(exc).__name__ == "NoArgsIsHelpError":  # help was printed: nothing went wrong
                return 0
            cmd = getattr(getattr(exc, "ctx", None), "command_path", "edge-ich")
            print(f"edge-ich: error: {' '.join(str(fmt()).split())} (see '{cmd} --help')", file=sys.stderr)
            return 1
        raise
    return 0


def entry() -> None:
    """The console script: `main`, then leave without the interpreter's teardown.

    Every output is written, fsynced and renamed before `main` returns, and stdout/stderr are
    flushed here; what teardown would add (freeing every module, joining idle pool threads,
    a last garbage collection) costs a cold run up to a second and changes nothing on disk.
    """
    code = main()
    import logging
    import os

    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # closed pipe: nothing more can be said anyway
            code = code or 1
    os._exit(code)


if __name__ == "__main__":  # pragma: no cover
    entry()

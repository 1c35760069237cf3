"""`edge-ich build-engine`: precision ONNX -> accuracy gate -> TensorRT engine + manifest.

Steps 1-2 run on any machine (CPU, ONNX Runtime). Step 3 needs TensorRT and a GPU; without
them the precision ONNX, its card and an `onnx-only` manifest are written, and the command
that finishes the build on the target is printed. A precision ONNX given as MODEL (its card
says fp16/int8) skips steps 1-2: that is how a build is finished on the target.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import importlib.util
import shlex
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edge_ich.backends.manifest import EngineManifest, MachineInfo, load_manifest, manifest_path_for
from edge_ich.builder.options import BuildOptions, BuildResult
from edge_ich.builder.precision import CalibMethod, Precision, Quantizer
from edge_ich.card import ModelCard, card_path_for, load_card, sha256_file
from edge_ich.errors import InputError, MissingDependency

FP16_CPU_NOTE = "FP16 is not gated on the CPU: float16 convolutions there are ~200x slower and not a fair check; it is gated on the GPU engine"


def _stem(path: Path) -> str:
    return Path(path).name.split(".")[0]


def _q(p: Path | str) -> str:
    return shlex.quote(str(p))


def finish_command(onnx: Path, opts: BuildOptions, precision: Precision) -> str:
    """The command that builds (or rebuilds) the engine from the precision ONNX on the target."""
    parts = [
        "edge-ich",
        "build-engine",
        _q(onnx),
        "--precision",
        precision.value,
        "--out",
        _q(opts.out),
        "--workspace",
        str(opts.workspace_mb),
        "--batch",
        str(opts.batch),
    ]
    if opts.dla_core is not None:
        parts += ["--dla-core", str(opts.dla_core)]
    if opts.timing_cache:
        parts += ["--timing-cache", _q(opts.timing_cache)]
    return " ".join(parts)


def _trt_ready() -> tuple[MachineInfo | None, str]:
    """(MachineInfo, "") when TensorRT and a usable CUDA GPU are both present, else (None, why not).

    TensorRT and a GPU with CUDA bindings that do not fit the driver (cuda-python 13.x on JetPack 6)
    is refused with what to install, rather than quietly ending as "onnx-only".
    """
    if importlib.util.find_spec("tensorrt") is None:
        return None, "TensorRT is not installed here"
    info = MachineInfo.probe()
    if info.tensorrt is None:
        return None, "the tensorrt module does not import here"
    if not info.has_gpu:
        return None, "no CUDA GPU here"
    if info.cuda_problem:
        raise MissingDependency(
            f"TensorRT {info.tensorrt} and a GPU are here, but the CUDA Python bindings cannot be used: {info.cuda_problem}"
        )
    return info, ""


def _fp32_caller(model: Path, card: ModelCard, threads: int | None) -> Callable[[Any], Any]:
    """Bleed/no-bleed call per slice from the FP32 model (strata where no truth exists)."""
    from edge_ich.backends.onnxrt import OnnxRuntimeBackend
    from edge_ich.builder.gate import _probabilities

    be = OnnxRuntimeBackend(model, card, threads=threads)

    def call(batch: Any) -> Any:
        prob = _probabilities(be.infer(batch), card)
        return (prob >= card.threshold).reshape(len(batch), -1).any(axis=1)

    return call


def _make_precision(
    opts: BuildOptions,
    card: ModelCard,
    precision: Precision,
    quantizer: Quantizer,
    method: CalibMethod,
    dst: Path,
    lines: list[str],
) -> tuple[dict[str, Any], dict[str, Any] | None, Any]:
    """Write the precision ONNX at `dst` and gate it on the CPU; return (recipe, gate report dict, held-out set)."""
    from edge_ich.builder import gate as g

    split = None
    if opts.calib is not None and precision is not Precision.FP32:
        from edge_ich.builder.calib import read_folder, split_slices

        series, notes = read_folder(Path(opts.calib))
        split = split_slices(
            series,
            card,
            n_calib=opts.calib_slices,
            n_heldout=opts.heldout_slices,
            seed=opts.seed,
            fp32_calls=None
            if all(s.labels is not None for s in series)
            else _fp32_caller(opts.model, card, opts.threads),
        )
        lines.extend(f"calib: {n}" for n in notes + split.notes)
        lines.append(
            f"calib: {len(split.calib)} calibration slices ({int(split.calib.positive.sum())} bleed), "
            f"{len(split.heldout)} held-out ({int(split.heldout.positive.sum())} bleed), strata by {split.truth_source}"
        )
    if precision is Precision.FP32:
        shutil.copyfile(opts.model, dst)
        return {"quantizer": None, "note": "fp32 is the reference; no conversion, no gate"}, None, None
    if precision is Precision.FP16:
        from edge_ich.builder.precision import make_fp16

        recipe = make_fp16(Path(opts.model), dst)
        if split is None:
            lines.append("gate: fp16 not measured (no --calib given; the GPU engine gate needs held-out slices)")
            return recipe, None, None
        report = g.run_gate(
            opts.model,
            None,
            card,
            split.heldout,
            precision.value,
            opts.max_dice_drop,
            opts.max_sens_drop,
            opts.threads,
            measure_note=FP16_CPU_NOTE,
        )
        lines.extend(report.lines())
        return recipe, report.to_dict(), split.heldout
    if split is None:
        raise InputError(
            "--precision int8 needs --calib DIR (DICOM series, e.g. a phantom folder) to calibrate and gate on"
        )
    from edge_ich.builder.precision import inspect_qdq, make_int8

    recipe = make_int8(Path(opts.model), dst, card.input_name, split.calib.inputs, quantizer=quantizer, method=method)
    summary = inspect_qdq(dst)
    recipe |= {
        "calibration_set_sha256": split.calib.digest(),
        "heldout_slices": len(split.heldout),
        "strata": split.truth_source,
        "qdq": summary.to_dict(),
    }
    lines.append(
        f"int8: {summary.n_quantize} QuantizeLinear / {summary.n_dequantize} DequantizeLinear, "
        f"{len(summary.per_channel_weights)} per-channel weight scales, symmetric={summary.symmetric}, "
        f"FP32 layers: {', '.join(summary.fp32_weighted_nodes)}"
    )
    report = g.run_gate(
        opts.model, dst, card, split.heldout, precision.value, opts.max_dice_drop, opts.max_sens_drop, opts.threads
    )
    lines.extend(report.lines())
    g.enforce(report)
    return recipe, report.to_dict(), split.heldout


class _Lines(list):
    """Lines of the build log, echoed as they come (so a refused build still shows its gate numbers)."""

    def __init__(self, echo: Callable[[str], None] | None) -> None:
        super().__init__()
        self.echo = echo

    def append(self, line: str) -> None:
        super().append(line)
        if self.echo:
            self.echo(line)

    def extend(self, lines: Any) -> None:
        for line in lines:
            self.append(line)


def build_engine(opts: BuildOptions, echo: Callable[[str], None] | None = None) -> BuildResult:
    """Run the whole build; raise GateRefused (nothing written) when the precision model fails the gate."""
    precision, quantizer, method = opts.validate()
    model = Path(opts.model)
    card = load_card(model)
    out = Path(opts.out)
    lines = _Lines(echo)
    prior: EngineManifest | None = None
    if card.precision != Precision.FP32.value:
        if card.precision != precision.value:
            raise InputError(
                f"{model.name} is already a precision ONNX ({card.precision}); ask for --precision {card.precision} "
                "or start from the FP32 model"
            )
        if manifest_path_for(model).is_file():
            prior = load_manifest(model)
        lines.append(
            f"{model.name} is a {card.precision} precision ONNX: building its engine (conversion and gate were done before)"
        )
    name = _stem(model) if prior is not None or card.precision != "fp32" else f"{_stem(model)}_{precision.value}"
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        from edge_ich.errors import OutputError

        raise OutputError(f"cannot create the output folder {out}: {exc.strerror or exc}") from None
    final_onnx = out / f"{name}.onnx"
    with tempfile.TemporaryDirectory(prefix=f".{name}.", dir=out) as td:
        tmp = Path(td)
        tmp_onnx = tmp / f"{name}.onnx"
        gate_report: dict[str, Any] | None = None
        held = None
        if card.precision == "fp32":
            recipe, gate_report, held = _make_precision(opts, card, precision, quantizer, method, tmp_onnx, lines)
        else:
            shutil.copyfile(model, tmp_onnx)
            recipe = dict(prior.recipe) if prior else {"note": "precision ONNX given directly; no manifest beside it"}
        new_card = dataclasses.replace(
            card,
            model_file=final_onnx.name,
            model_sha256=sha256_file(tmp_onnx),
            precision=precision.value,
            evaluation={**card.evaluation, **({"precision_gate": _gate_summary(gate_report)} if gate_report else {})},
        )
        src_file, src_sha = (
            (prior.source_model_file, prior.source_model_sha256) if prior else (model.name, card.model_sha256)
        )
        validation = prior.validation if prior else (gate_report or {"note": "not gated"})
        manifest = EngineManifest(
            model_name=card.name,
            precision=precision.value,
            source_model_file=src_file,
            source_model_sha256=src_sha,
            onnx_file=final_onnx.name,
            onnx_sha256=new_card.model_sha256,
            preprocessing_sha256=card.preprocessing_hash(),
            io={
                "input": {
                    "name": card.input_name,
                    "shape": ["N", card.in_channels, *card.input_size],
                    "dtype": "float32",
                },
                "output": {"name": card.output_name, "shape": ["N", 1, *card.input_size], "dtype": "float32"},
            },
            recipe=recipe,
            validation=validation,
            rebuild_command=finish_command(final_onnx, opts, precision),
            workspace_mb=opts.workspace_mb,
            optimization_level=opts.optimization_level,
            dla_core=opts.dla_core,
            created_utc=_dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            edge_ich_version=_version(),
        )
        from edge_ich.builder.trt import BuildSpec

        spec = BuildSpec(
            card.input_name,
            card.in_channels,
            card.input_size[0],
            card.input_size[1],
            opt_batch=opts.batch,
            workspace_mb=opts.workspace_mb,
            optimization_level=opts.optimization_level,
            dla_core=opts.dla_core,
            timing_cache=Path(opts.timing_cache) if opts.timing_cache else None,
        )
        manifest.profile = spec.profile_dict()
        machine, not_ready = _trt_ready() if opts.tensorrt else (None, "not asked to (no TensorRT call)")
        plan_final = out / f"{name}.plan"
        tmp_plan = None
        if machine is not None:
            tmp_plan = _build_on_gpu(
                tmp_onnx, tmp, name, spec, manifest, machine, new_card, card, held, opts, precision, lines
            )
        new_card.save(tmp / card_path_for(final_onnx).name)
        manifest.save(tmp / manifest_path_for(final_onnx).name)
        # Everything passed: move into place (the manifest last, so it never describes missing files).
        if tmp_onnx.resolve() != final_onnx.resolve():
            tmp_onnx.replace(final_onnx)
        (tmp / card_path_for(final_onnx).name).replace(card_path_for(final_onnx))
        if tmp_plan is not None:
            tmp_plan.replace(plan_final)
        (tmp / manifest_path_for(final_onnx).name).replace(manifest_path_for(final_onnx))
    result = BuildResult(
        final_onnx,
        card_path_for(final_onnx),
        manifest_path_for(final_onnx),
        plan_final if tmp_plan else None,
        lines,
        gate_report,
    )
    lines.append(f"wrote {final_onnx} (+ {result.card.name}, {result.manifest.name})")
    if tmp_plan is None:
        lines.append(f"TensorRT engine not built: {not_ready}; wrote the precision ONNX and its manifest")
        lines.append(f"finish on the target: {manifest.rebuild_command}")
        lines.append(f"or with trtexec:      {spec.trtexec_line(final_onnx, plan_final)}")
    else:
        lines.append(
            f"wrote {plan_final} (TensorRT {manifest.tensorrt_version}, {manifest.gpu_name}, sm {manifest.compute_capability})"
        )
    return result


def _build_on_gpu(
    onnx: Path,
    tmp: Path,
    name: str,
    spec: Any,
    manifest: EngineManifest,
    machine: MachineInfo,
    new_card: ModelCard,
    card: ModelCard,
    held: Any,
    opts: BuildOptions,
    precision: Precision,
    lines: list[str],
) -> Path:
    """Build the plan in the temp folder, fill the manifest, and gate the engine itself when held-out slices exist."""
    from edge_ich.builder.trt import build_plan
    from edge_ich.outputs.atomic import write_bytes_atomic

    data, info = build_plan(onnx, spec)
    plan = tmp / f"{name}.plan"
    write_bytes_atomic(plan, data)
    manifest.status, manifest.engine_file, manifest.engine_sha256 = "engine", plan.name, sha256_file(plan)
    manifest.tensorrt_version, manifest.strongly_typed = info["tensorrt_version"], info["strongly_typed"]
    manifest.build_seconds, manifest.io = info["build_seconds"], {**manifest.io, "engine": info["io"]}
    manifest.cuda_runtime, manifest.cuda_driver = machine.cuda_runtime, machine.cuda_driver
    manifest.gpu_name, manifest.compute_capability = machine.gpu_name, machine.compute_capability
    if held is not None:
        from edge_ich.builder.gate import gate_engine

        manifest.save(manifest_path_for(plan))
        new_card.save(card_path_for(plan))
        manifest.validation = {
            **manifest.validation,
            "engine_gate": gate_engine(
                plan, opts.model, card, new_card, held, precision.value, opts.max_dice_drop, opts.max_sens_drop, lines
            ),
        }
    return plan


def _gate_summary(report: dict[str, Any]) -> dict[str, Any]:
    keys = (
        "reference",
        "n_heldout",
        "n_bleed_slices",
        "dice_drop",
        "sens_drop",
        "max_dice_drop",
        "measured",
        "passed",
        "note",
    )
    out = {k: report.get(k) for k in keys}
    cand = report.get("candidate") or {}
    out["dice_vs_truth"], out["dice_vs_fp32"] = cand.get("dice_vs_truth"), cand.get("dice_vs_fp32")
    return out


def _version() -> str:
    from edge_ich import __version__

    return str(__version__)


def build_and_print(opts: BuildOptions) -> BuildResult:
    """CLI entry: build and print what happened, line by line."""
    import typer

    return build_engine(opts, echo=typer.echo)

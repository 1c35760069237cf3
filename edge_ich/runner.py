"""`edge-ich run`: one series in, the answer out (report, mask, DICOM SEG, key images).

Every output is written into a staging folder inside `--out` and moved into place only when
all of them succeeded, so a failure leaves the previous results (or nothing), never a half set.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edge_ich import __version__
from edge_ich.analysis.masks import slice_counts
from edge_ich.backends import open_backend
from edge_ich.backends.base import Backend
from edge_ich.card import ModelCard, bundled_model_path, load_card
from edge_ich.errors import InputError, ModelError, OutputError
from edge_ich.pipeline import Component, Segmentation, StageTimes, postprocess, segment
from edge_ich.sources.volume import SliceSource

REPORT_SCHEMA_VERSION = "1.0"
KEY_IMAGES = 3


@dataclass
class RunOptions:
    """What `edge-ich run` was asked to do."""

    series: Path | None = None
    volume: Path | None = None
    model: Path | None = None
    out: Path = Path("edge-ich-out")
    backend: str = "auto"
    series_uid: str | None = None
    threads: int | None = None
    batch: int = 4
    write_seg: bool = True
    key_images: int = KEY_IMAGES


@dataclass
class LoadedModel:
    """A model file, its verified card and an open backend."""

    path: Path
    card: ModelCard
    backend: Backend
    load_s: dict[str, float] = field(default_factory=dict)

    def close(self) -> None:
        self.backend.close()


@dataclass
class RunResult:
    report: dict[str, Any]
    timings: StageTimes
    mask: np.ndarray
    out: Path


def resolve_model_path(model: Path | None) -> Path:
    """The asked model, or the bundled one; a clear error when there is neither."""
    if model is not None:
        return Path(model)
    found = bundled_model_path()
    if found is None:
        raise ModelError("no model given and no bundled model found (engines/ich_segmenter.onnx); pass --model")
    return found


def load_model(model: Path | None, backend: str = "auto", threads: int | None = None) -> LoadedModel:
    """Verify the card (hash included) and open the backend; time both. Sets the process's BLAS
    pool to one thread (`edge_ich.threads.limit_blas`): the backend's threads are the budget."""
    from edge_ich.threads import limit_blas

    limit_blas()
    path = resolve_model_path(model)
    t0 = time.perf_counter()
    card_model = path
    if path.suffix == ".plan":  # an engine carries the card of the ONNX it was built from
        from edge_ich.builder.manifest import card_for_plan

        card = card_for_plan(path)
    else:
        card = load_card(card_model)
    t1 = time.perf_counter()
    be = open_backend(backend, path, card, threads=threads)
    t2 = time.perf_counter()
    return LoadedModel(path=path, card=card, backend=be, load_s={"card_s": t1 - t0, "session_s": t2 - t1})


def open_source(opts: RunOptions) -> SliceSource:
    """The DICOM series or NIfTI volume the options name (exactly one of them)."""
    if (opts.series is None) == (opts.volume is None):
        raise InputError("give exactly one of --series DIR or --volume FILE")
    if opts.series is not None:
        series = Path(opts.series)
        if not series.exists():
            raise InputError("--series folder not found")
        if not series.is_dir():
            raise InputError("--series must be a folder, not a file")
        from edge_ich.sources.dicom.source import open_series

        return open_series(series, opts.series_uid)
    volume = Path(opts.volume)  # type: ignore[arg-type]
    if not volume.is_file():
        raise InputError("--volume file not found")
    from edge_ich.sources.nifti import open_volume

    return open_volume(volume)


def check_out_dir(out: Path) -> None:
    """Fail early, before any work, when `out` cannot hold our outputs."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise OutputError("--out exists and is not a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".edge-ich-probe-", dir=out)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise OutputError(f"cannot write to --out: {exc.strerror or type(exc).__name__}") from None


def _stats_ms(values: list[float]) -> dict[str, float]:
    """Per-stage timing for report.json, with the same median and nearest-rank p95 as `edge-ich bench`."""
    from edge_ich.analysis.stats import median, percentile

    if not values:
        return {"total_s": 0.0, "mean_ms": 0.0, "p50_ms": 0.0, "p95_ms": 0.0}
    ms = sorted(v * 1000.0 for v in values)
    return {
        "total_s": float(sum(values)),
        "mean_ms": sum(ms) / len(ms),
        "p50_ms": median(ms),
        "p95_ms": percentile(ms, 95),
    }


def build_report(
    source: SliceSource,
    model: LoadedModel,
    seg: Segmentation,
    kept: np.ndarray,
    comps: list[Component],
    outputs: dict[str, Any],
    load_s: dict[str, float],
) -> dict[str, Any]:
    """The report.json content (schema edge_ich/schemas/report.schema.json)."""
    geo = source.geometry
    n = geo.shape[0]
    area_mm2 = slice_counts(kept) * geo.spacing[1] * geo.spacing[2]
    sop = getattr(source, "sop_instance_uids", None)
    step_mm = float(np.linalg.norm(geo.affine_lps[:3, 2]))
    slices = []
    for i in range(n):
        row: dict[str, Any] = {
            "index": i,
            "offset_mm": round(step_mm * i, 3),
            "max_probability": round(float(seg.slice_prob[i]), 4),
            "lesion_area_mm2": round(float(area_mm2[i]), 2),
            "positive": bool(area_mm2[i] > 0),
        }
        if sop:
            row["sop_instance_uid"] = sop[i]
        slices.append(row)
    positive = [i for i in range(n) if area_mm2[i] > 0]
    total_ml = float(sum(c.volume_ml for c in comps))
    card = model.card
    return {
        "schema": "edge-ich/report",
        "schema_version": REPORT_SCHEMA_VERSION,
        "edge_ich_version": __version__,
        "created_utc": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "intended_use": "research use only; not a medical device",
        "input": {
            **source.summary(),
            "kind": source.kind,
            "shape": list(geo.shape),
            "spacing_mm": [round(float(s), 4) for s in geo.spacing],
            "geometry_warnings": list(geo.warnings),
            "skipped": [{"path": s.path, "reason": s.reason} for s in source.skipped],
        },
        "model": {
            "name": card.name,
            "card_id": card.card_id,
            "sha256": card.model_sha256,
            "precision": card.precision,
            "threshold": card.threshold,
            "min_component_mm3": card.min_component_mm3,
            "input_size": list(card.input_size),
            "context": card.context,
            "windows": [w.name for w in card.windows],
        },
        "backend": {
            "name": model.backend.info.name,
            "device": model.backend.info.device,
            "precision": model.backend.info.precision,
            "details": dict(model.backend.info.details),
        },
        "finding": {
            "hemorrhage": bool(comps),
            "total_volume_ml": round(total_ml, 3),
            "n_components": len(comps),
            "positive_slices": positive,
            "max_slice_probability": round(float(seg.slice_prob.max()) if n else 0.0, 4),
        },
        "components": [
            {
                "id": c.id,
                "volume_ml": round(c.volume_ml, 3),
                "voxels": c.voxels,
                "slices": list(c.slices),
                "centroid_voxel": [round(v, 2) for v in c.centroid_voxel],
                "centroid_lps_mm": [round(v, 2) for v in c.centroid_lps_mm],
            }
            for c in comps
        ],
        "slices": slices,
        "timings": {
            "load": {k: round(v, 4) for k, v in load_s.items()},
            "first_infer_s": round(seg.timings.first_infer_s or 0.0, 4),
            "segment_wall_s": round(seg.timings.wall_s, 4),
            "stages": {s: _stats_ms(v) for s, v in seg.timings.per_slice.items()},
        },
        "outputs": outputs,
    }


def _key_slices(kept: np.ndarray, count: int) -> list[int]:
    area = slice_counts(kept)
    order = [int(i) for i in np.argsort(-area, kind="stable") if area[i] > 0]
    return sorted(order[:count])


def write_outputs(
    stage: Path,
    source: SliceSource,
    model: LoadedModel,
    kept: np.ndarray,
    opts: RunOptions,
    phases: dict[str, float] | None = None,
) -> dict[str, Any]:
    """Write mask, SEG and key images into the staging folder; return their names (seconds per writer into `phases`).

    The key images are drawn on a second thread while the NIfTI and the SEG are written (PNG and
    gzip compression run outside the GIL); `phases["key_images"]` is the wait for them afterwards.
    """
    from concurrent.futures import ThreadPoolExecutor

    from edge_ich.outputs.nifti import write_mask_nifti

    phases = {} if phases is None else phases
    t0 = time.perf_counter()
    outputs: dict[str, Any] = {"report": "report.json"}
    keys = _key_slices(kept, opts.key_images)
    with ThreadPoolExecutor(1, thread_name_prefix="edge-ich-key-images") as pool:
        if keys:
            from edge_ich.outputs.keyimages import write_key_images

            drawn = pool.submit(write_key_images, stage / "key_images", source, kept, keys)
        write_mask_nifti(stage / "mask.nii.gz", kept, source)
        outputs["mask"] = "mask.nii.gz"
        phases["mask_nifti"] = (t1 := time.perf_counter()) - t0
        if opts.write_seg and source.kind == "dicom":
            from edge_ich.outputs.seg import write_seg

            # the SEG writer never edits its source headers (tests/outputs/test_seg.py checks it): no copies
            headers = [source.header(i, copy_=False) for i in range(source.geometry.shape[0])]  # type: ignore[attr-defined]
            write_seg(
                stage / "seg.dcm",
                kept,
                headers,
                algorithm_name=model.card.name,
                algorithm_version=model.card.model_sha256[:12],
            )
            outputs["seg"] = "seg.dcm"
        phases["seg"] = (t2 := time.perf_counter()) - t1
        outputs["key_images"] = [f"key_images/{p.name}" for p in drawn.result()] if keys else []
    phases["key_images"] = time.perf_counter() - t2
    return outputs


def publish_staged(stage: Path, out: Path) -> None:
    """Move every staged file into `out` (same filesystem: each move is a rename).

    Key images of an earlier run into the same folder are removed so the folder holds one answer.
    """
    fresh = stage / "key_images"
    old = out / "key_images"
    if old.is_dir():
        keep = {p.name for p in fresh.glob("*.png")} if fresh.is_dir() else set()
        for p in old.glob("key_*.png"):
            if p.name not in keep:
                p.unlink(missing_ok=True)
    for src in sorted(stage.rglob("*")):
        if src.is_file():
            dst = out / src.relative_to(stage)
            dst.parent.mkdir(parents=True, exist_ok=True)
            os.replace(src, dst)


def stage_outputs(
    out: Path, source: SliceSource, model: LoadedModel, seg: Segmentation, opts: RunOptions
) -> tuple[Path, dict[str, Any], np.ndarray]:
    """Postprocess, then write every output but the report into a new staging folder inside `out`.

    Returns (staging folder, report, kept mask); nothing is visible in `out` until
    `finish_staged`. On failure the staging folder is removed and the error passes on.
    """
    n = source.geometry.shape[0]
    t0 = time.perf_counter()
    kept, comps = postprocess(
        seg.mask, source.geometry.spacing, source.geometry.affine_lps, model.card.min_component_mm3
    )
    seg.timings.spread("postprocess", time.perf_counter() - t0)
    seg.timings.phases["components"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    stage = Path(tempfile.mkdtemp(prefix=".edge-ich-staging-", dir=out))
    try:
        outputs = write_outputs(stage, source, model, kept, opts, seg.timings.phases)
        seg.timings.add("write", time.perf_counter() - t0, n)
        report = build_report(source, model, seg, kept, comps, outputs, model.load_s)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    return stage, report, kept


def finish_staged(stage: Path, out: Path, report: dict[str, Any]) -> None:
    """Write report.json into the staging folder and publish the whole set into `out`."""
    from edge_ich.outputs.atomic import write_text_atomic

    write_text_atomic(stage / "report.json", json.dumps(report, indent=2) + "\n")
    publish_staged(stage, out)


def run(
    opts: RunOptions,
    *,
    model: LoadedModel | None = None,
    source: SliceSource | None = None,
    progress: bool | None = None,
) -> RunResult:
    """Segment one series and write all outputs under `opts.out`; return the report."""
    t_run = time.perf_counter()
    out = Path(opts.out)
    check_out_dir(out)
    if source is None:
        source = open_source(opts)
    t_open = time.perf_counter()
    own_model = model is None
    if model is None:
        model = load_model(opts.model, opts.backend, opts.threads)
    t_load = time.perf_counter()
    try:
        if tuple(source.geometry.shape[1:]) and min(source.geometry.shape[1:]) < 16:
            raise InputError(
                f"slices of {source.geometry.shape[1]}x{source.geometry.shape[2]} pixels are too small to segment"
            )
        show = sys.stderr.isatty() if progress is None else progress
        with _progress(show, source.geometry.shape[0]) as cb:
            seg = segment(source, model.backend, batch=opts.batch, progress=cb)
        stage, report, kept = stage_outputs(out, source, model, seg, opts)
        try:
            if seg.timings.last_read_at is not None:
                report["timings"]["last_slice_to_result_s"] = round(time.perf_counter() - seg.timings.last_read_at, 4)
            phases = {"discover": t_open - t_run, "model_load": t_load - t_open, "segment": seg.timings.wall_s}
            phases.update(seg.timings.phases, total=time.perf_counter() - t_run)
            report["timings"]["phases_s"] = {k: round(v, 4) for k, v in phases.items()}
            finish_staged(stage, out, report)
        finally:
            shutil.rmtree(stage, ignore_errors=True)
    finally:
        if own_model:
            model.close()
    return RunResult(report=report, timings=seg.timings, mask=kept, out=out)


@contextlib.contextmanager
def _progress(show: bool, total: int):  # type: ignore[no-untyped-def]
    """A rich progress bar on a TTY, nothing otherwise; yields the callback for segment()."""
    if not show:
        yield None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        transient=True,
    ) as bar:
        task = bar.add_task("segmenting slices", total=total)
        yield lambda done, n: bar.update(task, completed=done)


def summary_line(report: dict[str, Any]) -> str:
    """One line for the clinician: the call, volume, slices, and where the outputs are."""
    f = report["finding"]
    n = report["input"]["shape"][0]
    tail = f"[{report['model']['card_id']}, {report['backend']['name']} {report['backend']['device']}, {report['timings']['segment_wall_s']:.2f} s]"
    if f["hemorrhage"]:
        pos = f["positive_slices"]
        return (
            f"HEMORRHAGE SUSPECTED: {f['total_volume_ml']:.1f} mL in {f['n_components']} region(s), "
            f"slices {pos[0] + 1}-{pos[-1] + 1} of {n}; max slice probability {f['max_slice_probability']:.2f} {tail}"
        )
    return f"No hemorrhage found on {n} slices; max slice probability {f['max_slice_probability']:.2f} {tail}"


def run_and_print(opts: RunOptions, json_out: bool = False) -> dict[str, Any]:
    """CLI wrapper: run, then print the summary line (or the report JSON)."""
    result = run(opts)
    if json_out:
        print(json.dumps(result.report, indent=2))
    else:
        print(f"{summary_line(result.report)} -> {result.out}")
        warns = result.report["input"]["geometry_warnings"]
        if warns:
            print(f"edge-ich: {len(warns)} geometry warning(s), see report.json", file=sys.stderr)
    return result.report

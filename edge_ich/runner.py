"""`edge-ich run`: one series in, the answer out (report, mask, DICOM SEG, key images).

Every output is written into a staging folder inside `--out` and moved into place only when
all of them succeeded, so a failure leaves the previous results (or nothing), never a half set.
"""

from __future__ import annotations

import contextlib
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

from edge_ich.analysis.masks import slice_counts, take_slices
from edge_ich.assess import Assessment, Warn, require_assessable
from edge_ich.backends import open_backend
from edge_ich.backends.base import Backend
from edge_ich.card import ModelCard, bundled_model_path, load_card
from edge_ich.errors import InputError, ModelError, NotAssessable, OutputError
from edge_ich.outputs.report import REPORT_SCHEMA_VERSION, build_report, not_assessable_report, summary_line
from edge_ich.pipeline import Segmentation, StageTimes, find_components, segment
from edge_ich.sources.volume import SliceSource

__all__ = ["REPORT_SCHEMA_VERSION", "RunOptions", "RunResult", "run", "run_and_print", "summary_line"]

KEY_IMAGES = 3
#: More blank (constant) slices than this fraction: the series is not assessable.
MAX_BLANK_FRACTION = 0.25


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
    pool to one thread (`edge_ich.host.threads.limit_blas`): the backend's threads are the budget."""
    from edge_ich.host.threads import limit_blas

    limit_blas()
    path = resolve_model_path(model)
    t0 = time.perf_counter()
    card_model = path
    if path.suffix == ".plan":  # an engine carries the card of the ONNX it was built from
        from edge_ich.backends.manifest import card_for_plan

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

    The key images and the NIfTI are written on two worker threads while this one writes the SEG (PNG
    and gzip compression run outside the GIL); `phases` holds the SEG's time and the waits for the others.
    """
    from concurrent.futures import ThreadPoolExecutor

    from edge_ich.outputs.nifti import write_mask_nifti

    phases = {} if phases is None else phases
    t0 = time.perf_counter()
    outputs: dict[str, Any] = {"report": "report.json"}
    keys = _key_slices(kept, opts.key_images)
    with ThreadPoolExecutor(2, thread_name_prefix="edge-ich-writer") as pool:
        if keys:
            from edge_ich.outputs.keyimages import write_key_images

            drawn = pool.submit(write_key_images, stage / "key_images", source, kept, keys)
        nifti = pool.submit(write_mask_nifti, stage / "mask.nii.gz", kept, source)
        outputs["mask"] = "mask.nii.gz"  # (failures surface at result() below)
        if opts.write_seg and source.kind == "dicom":
            from edge_ich.outputs.seg import write_seg

            # the SEG writer never edits its source headers (tests/outputs/test_seg.py checks it): no copies.
            # Only imaged slices are referenced: a gap's grid positions have no source instance.
            gaps = set(source.geometry.missing)
            present = [i for i in range(source.geometry.shape[0]) if i not in gaps]
            headers = [source.header(i, copy_=False) for i in present]  # type: ignore[attr-defined]
            write_seg(
                stage / "seg.dcm",
                take_slices(kept, present) if len(present) != kept.shape[0] else kept,
                headers,
                algorithm_name=model.card.name,
                algorithm_version=model.card.model_sha256[:12],
            )
            outputs["seg"] = "seg.dcm"
        phases["seg"] = (t1 := time.perf_counter()) - t0
        nifti.result()
        phases["mask_nifti"] = (t2 := time.perf_counter()) - t1
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


def unassessed_slices(source: SliceSource, seg: Segmentation) -> list[int]:
    """Grid positions without an answer: not imaged (gaps) or blank (one constant value)."""
    return sorted(set(source.geometry.missing) | set(seg.constant))


def stage_outputs(
    out: Path,
    source: SliceSource,
    model: LoadedModel,
    seg: Segmentation,
    opts: RunOptions,
    assessment: Assessment | None = None,
    notices: list[Warn] | None = None,
) -> tuple[Path, dict[str, Any], np.ndarray]:
    """Postprocess, then write every output but the report into a new staging folder inside `out`.

    `assessment`: the gate's verdict from before inference (assessed here when not given, as the
    receiver does; NotAssessable when the series fails). Positions without an answer (gaps, blank
    slices) are cleared from the mask. Returns (staging folder, report, kept mask); nothing is
    visible in `out` until `finish_staged`. On failure the staging folder is removed.
    """
    if assessment is None:
        assessment = require_assessable(source, model.card)
    n = source.geometry.shape[0]
    blank = [i for i in seg.constant if i not in set(source.geometry.missing)]
    if len(blank) > MAX_BLANK_FRACTION * n:
        from edge_ich.assess import source_facts

        raise NotAssessable(
            f"{len(blank)} of {n} slices hold one constant value (no image); at most {MAX_BLANK_FRACTION:.0%} may",
            source_facts(source),
            [c.to_dict() for c in assessment.checks],
        )
    warnings = list(assessment.warnings)
    if blank:
        warnings.append(
            Warn(
                "blank_slices",
                f"{len(blank)} slice(s) hold one constant value (no image) and are not assessed: "
                "volumes are a lower bound",
                f"{len(blank)} blank slice(s)",
            )
        )
    unassessed = unassessed_slices(source, seg)
    for i in unassessed:
        seg.mask[i] = 0
        seg.slice_prob[i] = 0.0
    t0 = time.perf_counter()
    rows_cols = (source.geometry.shape[1], source.geometry.shape[2])
    kept, comps, small = find_components(
        seg.mask,
        source.geometry.spacing,
        source.geometry.affine_lps,
        model.card.min_component_mm3,
        prob_of=lambda z, box: seg.native_prob(z, rows_cols, box),
    )
    seg.timings.spread("postprocess", time.perf_counter() - t0)
    seg.timings.phases["components"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    stage = Path(tempfile.mkdtemp(prefix=".edge-ich-staging-", dir=out))
    try:
        outputs = write_outputs(stage, source, model, kept, opts, seg.timings.phases)
        seg.timings.add("write", time.perf_counter() - t0, n)
        verdict = Assessment(True, None, list(assessment.checks), warnings + list(notices or []))
        report = build_report(source, model, seg, kept, comps, small, outputs, verdict, unassessed)
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
    """Gate, segment one series and write all outputs under `opts.out`; return the report.

    A series the gate refuses gets a report.json saying `assessable: false` and why (and the
    answer files of an earlier run into the same folder are removed, so nothing positive stays
    beside it); NotAssessable then passes on. Library and log warnings go into the report.
    """
    from edge_ich.assess.notices import collect

    t_run = time.perf_counter()
    out = Path(opts.out)
    check_out_dir(out)
    own_model = model is None
    with collect() as notices:
        try:
            if source is None:
                source = open_source(opts)
            t_open = time.perf_counter()
            if model is None:
                model = load_model(opts.model, opts.backend, opts.threads)
            t_load = time.perf_counter()
            assessment = require_assessable(source, model.card)
        except NotAssessable as exc:
            card = model.card if model is not None else _card_or_none(opts.model)
            if own_model and model is not None:
                model.close()
            write_not_assessable(out, exc, card, notices.take())
            raise
        try:
            show = sys.stderr.isatty() if progress is None else progress
            with _progress(show, source.geometry.shape[0]) as cb:
                seg = segment(source, model.backend, batch=opts.batch, progress=cb)
            try:
                stage, report, kept = stage_outputs(out, source, model, seg, opts, assessment, notices.take())
            except NotAssessable as exc:
                write_not_assessable(out, exc, model.card, notices.take())
                raise
            try:
                if seg.timings.last_read_at is not None:
                    report["timings"]["last_slice_to_result_s"] = round(
                        time.perf_counter() - seg.timings.last_read_at, 4
                    )
                phases = {"discover": t_open - t_run, "model_load": t_load - t_open, "segment": seg.timings.wall_s}
                phases.update(seg.timings.phases, total=time.perf_counter() - t_run)
                report["timings"]["phases_s"] = {k: round(v, 4) for k, v in phases.items()}
                finish_staged(stage, out, report)
            finally:
                shutil.rmtree(stage, ignore_errors=True)
        finally:
            if own_model and model is not None:
                model.close()
    return RunResult(report=report, timings=seg.timings, mask=kept, out=out)


def _card_or_none(model: Path | None) -> ModelCard | None:
    """The card of the model that would have run (for a not-assessable report); None if there is none."""
    try:
        path = resolve_model_path(model)
        return load_card(path, verify_hash=False) if path.suffix != ".plan" else None
    except ModelError:
        return None


ANSWER_FILES = ("mask.nii.gz", "seg.dcm")


def write_not_assessable(out: Path, exc: NotAssessable, card: ModelCard | None, notices: list[Warn]) -> Path:
    """Write report.json (atomically) for a refused series; remove an earlier run's answer files beside it."""
    from edge_ich.outputs.atomic import write_text_atomic

    doc = not_assessable_report(exc.reason, exc.facts, exc.checks, card, [w.to_dict() for w in notices])
    path = Path(out) / "report.json"
    write_text_atomic(path, json.dumps(doc, indent=2) + "\n")
    for name in ANSWER_FILES:
        (Path(out) / name).unlink(missing_ok=True)
    keys = Path(out) / "key_images"
    if keys.is_dir():
        for p in keys.glob("key_*.png"):
            p.unlink(missing_ok=True)
    exc.report_path = path
    return path


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


def run_and_print(opts: RunOptions, json_out: bool = False) -> dict[str, Any]:
    """CLI wrapper: run, then print the summary line (or the report JSON)."""
    result = run(opts)
    if json_out:
        print(json.dumps(result.report, indent=2))
    else:
        print(f"{summary_line(result.report)} -> {result.out}")
    return result.report

"""`edge-ich bench`: the whole point-of-care path, measured per stage, cold apart from warm.

One model is loaded once (timed: card check, session or engine creation). The series is then
run through `edge_ich.runner.run` again and again, exactly as `edge-ich run` would run it, with
every output written: the first pass is the cold start (first inference included), the next
passes until `warmup_s` are discarded, and the passes after that are measured.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import shlex
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge_ich.analysis.stats import Stats, summarize, timing_warnings
from edge_ich.bench import envinfo
from edge_ich.errors import InputError

BENCH_SCHEMA_VERSION = "1.0"
#: Measure this long when neither --duration nor --iterations is given ...
DEFAULT_DURATION_S = 10.0
#: ... but never fewer passes than this.
MIN_PASSES = 2
#: The phantom series `--phantom` streams (the same one every time: seed 0, 40 slices).
PHANTOM_SLICES = 40
PHANTOM_SEED = 0


@dataclass
class BenchOptions:
    """What `edge-ich bench` was asked to measure."""

    model: Path | None = None
    series: Path | None = None
    phantom: bool = False
    backend: str = "auto"
    batch: int = 4
    warmup_s: float = 2.0
    duration_s: float | None = None
    iterations: int | None = None
    threads: int | None = None
    out: Path = Path("edge-ich-bench")
    progress: bool | None = None  # None: a progress bar when stderr is a TTY
    write_seg: bool = True


def equivalent_command(opts: BenchOptions) -> str:
    """The `edge-ich bench` line that asks for exactly these options (for the report)."""
    parts = ["edge-ich", "bench"]
    if opts.model is not None:
        parts += ["--model", str(opts.model)]
    parts += ["--phantom"] if opts.phantom else ["--series", str(opts.series)]
    parts += ["--backend", opts.backend, "--batch", str(opts.batch), "--warmup", f"{opts.warmup_s:g}"]
    if opts.iterations is not None:
        parts += ["--iterations", str(opts.iterations)]
    elif opts.duration_s is not None:
        parts += ["--duration", f"{opts.duration_s:g}"]
    if opts.threads is not None:
        parts += ["--threads", str(opts.threads)]
    parts += ["--out", str(opts.out)]
    return " ".join(shlex.quote(p) for p in parts)


def fold_per_slice(values: list[float], n: int) -> list[float]:
    """One sample per slice: a stage recorded k times per slice (k passes of n) is summed per slice.

    The runner records each stage once per slice (component labelling is spread over the
    slices' postprocess entries); this keeps per-slice statistics right if a stage is ever
    recorded in several passes.
    """
    if n <= 0 or not values or len(values) == n or len(values) % n:
        return list(values)
    k = len(values) // n
    return [sum(values[j * n + i] for j in range(k)) for i in range(n)]


@contextlib.contextmanager
def phantom_series(seed: int = PHANTOM_SEED, slices: int = PHANTOM_SLICES) -> Iterator[Path]:
    """A generated phantom DICOM series in a temporary folder, removed afterwards.

    Generated in a child process, so the phantom's working memory does not count in the
    benchmark's peak RSS.
    """
    import importlib.util
    import subprocess

    if importlib.util.find_spec("edge_ich.phantom.writers") is None:
        raise InputError("--phantom needs edge_ich.phantom.writers, which is not installed")
    code = (
        "import sys; from pathlib import Path; from edge_ich.phantom.writers import write_dataset; "
        "write_dataset(Path(sys.argv[1]), cases=1, seed=int(sys.argv[2]), layout='dicom', difficulty='standard', "
        "slices=int(sys.argv[3]), thickness=None, compress=False)"
    )
    with tempfile.TemporaryDirectory(prefix="edge-ich-bench-phantom-") as tmp:
        res = subprocess.run(
            [sys.executable, "-c", code, tmp, str(seed), str(slices)], capture_output=True, text=True, check=False
        )
        if res.returncode != 0:
            last = (res.stderr.strip().splitlines() or ["no message"])[-1]
            raise InputError(f"could not generate the phantom series: {last[:200]}")
        found = sorted(Path(tmp).glob("case_*/dicom"))
        yield found[0] if found else Path(tmp)


@contextlib.contextmanager
def _pass_bar(show: bool, total: float, label: str) -> Iterator[Any]:
    """A rich bar counting passes (or seconds) on a TTY; a no-op callable otherwise."""
    if not show:
        yield lambda done: None
        return
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed:.0f}/{task.total:.0f}"),
        TimeElapsedColumn(),
        transient=True,
    ) as bar:
        task = bar.add_task(label, total=total)
        yield lambda done: bar.update(task, completed=done)


def _stats_ms(values: list[float]) -> Stats:
    return summarize(values).scaled(1000.0)


def run_bench(opts: BenchOptions) -> dict[str, Any]:
    """Measure; write bench.json, bench.md and the plots under `opts.out`; return the bench.json content."""
    if opts.series is not None and opts.phantom:
        raise InputError("give either --series DIR or --phantom, not both")
    if opts.series is None and not opts.phantom:
        raise InputError("give --series DIR (a DICOM series to stream) or --phantom (generate one)")
    from edge_ich.runner import check_out_dir

    out = Path(opts.out)
    check_out_dir(out)
    if opts.series is not None:
        return _bench_series(Path(opts.series), opts, {"kind": "series"})
    with phantom_series() as series_dir:
        return _bench_series(
            series_dir,
            opts,
            {
                "kind": "phantom",
                "seed": PHANTOM_SEED,
                "slices": PHANTOM_SLICES,
                "difficulty": "standard",
                "layout": "dicom",
            },
        )


@dataclass
class Samples:
    """Everything measured over the steady-state passes (seconds)."""

    n_slices: int
    per_stage: dict[str, list[float]] = field(default_factory=dict)
    series: list[float] = field(default_factory=list)
    discover: list[float] = field(default_factory=list)
    segment_wall: list[float] = field(default_factory=list)
    last_to_result: list[float] = field(default_factory=list)
    slice_sum: list[float] = field(default_factory=list)
    gpu_peak_mb: float | None = None
    wall_s: float = 0.0

    def add_pass(self, discover_s: float, series_s: float, res: Any) -> None:
        """Record one pass of `runner.run` (its RunResult) and our own clock around it."""
        self.discover.append(discover_s)
        self.series.append(series_s)
        self.segment_wall.append(res.timings.wall_s)
        lt = res.report.get("timings", {}).get("last_slice_to_result_s")
        if lt is not None:
            self.last_to_result.append(float(lt))
        folded = {st: fold_per_slice(v, self.n_slices) for st, v in res.timings.per_slice.items()}
        for st, v in folded.items():
            self.per_stage.setdefault(st, []).extend(v)
        full = [v for v in folded.values() if len(v) == self.n_slices]
        self.slice_sum.extend(sum(col) for col in zip(*full))
        if (g := envinfo.gpu_memory_used_mb()) is not None:
            self.gpu_peak_mb = max(self.gpu_peak_mb or 0.0, g)


def _measure(opts: BenchOptions, run_pass: Any, n_slices: int, gpu_mem0: float | None) -> Samples:
    """Steady-state passes until --iterations or --duration (at least MIN_PASSES for a duration)."""
    duration = _duration(opts)
    show = sys.stderr.isatty() if opts.progress is None else opts.progress
    samples = Samples(n_slices=n_slices, gpu_peak_mb=gpu_mem0)
    t_m = time.perf_counter()
    total = float(opts.iterations) if opts.iterations is not None else float(duration or 0)
    with _pass_bar(show, total, "benchmark passes" if opts.iterations is not None else "benchmark seconds") as tick:
        while True:
            samples.add_pass(*run_pass())
            elapsed = time.perf_counter() - t_m
            tick(len(samples.series) if opts.iterations is not None else min(elapsed, total))
            if opts.iterations is not None:
                if len(samples.series) >= opts.iterations:
                    break
            elif elapsed >= (duration or 0) and len(samples.series) >= MIN_PASSES:
                break
    samples.wall_s = time.perf_counter() - t_m
    return samples


def _duration(opts: BenchOptions) -> float | None:
    if opts.iterations is not None:
        return None
    return opts.duration_s if opts.duration_s is not None else DEFAULT_DURATION_S


def _bench_series(series_dir: Path, opts: BenchOptions, input_info: dict[str, Any]) -> dict[str, Any]:
    from edge_ich.runner import RunOptions, load_model, open_source, run

    pre = envinfo.busy_snapshot(0.5)
    gpu_mem0 = envinfo.gpu_memory_used_mb()
    t_load = time.perf_counter()
    lm = load_model(opts.model, opts.backend, opts.threads)
    load_total = time.perf_counter() - t_load
    with tempfile.TemporaryDirectory(prefix="edge-ich-bench-run-") as tmp:
        ropts = RunOptions(
            series=series_dir,
            model=lm.path,
            out=Path(tmp) / "out",
            backend=opts.backend,
            threads=opts.threads,
            batch=opts.batch,
            write_seg=opts.write_seg,
        )

        def run_pass() -> tuple[float, float, Any]:
            p0 = time.perf_counter()
            src = open_source(ropts)
            p1 = time.perf_counter()
            res = run(ropts, model=lm, source=src, progress=False)
            return p1 - p0, time.perf_counter() - p0, res

        try:
            # cold: the first pass, straight after loading
            first_discover, first_series, first = run_pass()
            n_slices, rows, cols = first.mask.shape
            cold = {
                "card_s": lm.load_s.get("card_s"),
                "session_s": lm.load_s.get("session_s"),
                "load_total_s": load_total,
                "first_inference_s": first.timings.first_infer_s,
                "first_series_s": first_series,
                "first_discover_s": first_discover,
                "to_first_result_s": load_total + first_series,
            }
            # warm-up: discarded
            t_w = time.perf_counter()
            warm_passes = 0
            while time.perf_counter() - t_w < opts.warmup_s:
                run_pass()
                warm_passes += 1
            acct = envinfo.CpuAccount().start()
            samples = _measure(opts, run_pass, n_slices, gpu_mem0)
            load = acct.stop(threads_used=_threads(lm))
        finally:
            lm.close()
    doc = _document(
        opts,
        lm,
        samples,
        cold,
        warm_passes,
        {**input_info, "slices": n_slices, "rows": rows, "cols": cols},
        pre,
        load,
        gpu_mem0,
        first.report.get("finding", {}),
    )
    from edge_ich.bench.report import write_all

    per_stage_ms = {
        st: [v * 1000.0 for v in vals]
        for st, vals in samples.per_stage.items()
        if st in doc["steady_state"]["stages_ms"]
    }
    doc["outputs"] = write_all(doc, per_stage_ms=per_stage_ms, out=Path(opts.out))
    return doc


def _document(
    opts: BenchOptions,
    lm: Any,
    sm: Samples,
    cold: dict[str, Any],
    warm_passes: int,
    input_info: dict[str, Any],
    pre: dict[str, Any],
    load: dict[str, Any],
    gpu_mem0: float | None,
    finding: dict[str, Any],
) -> dict[str, Any]:
    """The bench.json content (schema edge_ich/schemas/bench.schema.json) from what was measured."""
    from edge_ich.card import bundled_model_path

    # a CPU backend has no device copies: its h2d/d2h stages are all zero and are left out
    stages_s = {st: summarize(v) for st, v in sm.per_stage.items() if v and any(x > 0.0 for x in v)}
    busy_msg = load["message"] or (pre["message"] if pre.get("busy") else None)
    warns = timing_warnings(summarize(sm.series), stages_s, busy=busy_msg, throttled=_throttle_note())
    bundled = bundled_model_path()
    n = sm.n_slices
    return {
        "schema": "edge-ich/bench",
        "schema_version": BENCH_SCHEMA_VERSION,
        "created_utc": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "command": equivalent_command(opts),
        "model": {
            "file": lm.path.name,
            "card_id": lm.card.card_id,
            "sha256": lm.card.model_sha256,
            "precision": lm.card.precision,
            "input_size": list(lm.card.input_size),
            "context": lm.card.context,
            "in_channels": lm.card.in_channels,
            "parameters": lm.card.parameters,
            "flops_per_slice": lm.card.flops_per_slice,
            "bundled": bundled is not None and bundled.resolve() == lm.path.resolve(),
        },
        "input": input_info,
        "backend": {
            "name": lm.backend.info.name,
            "device": lm.backend.info.device,
            "precision": lm.backend.info.precision,
            "details": dict(lm.backend.info.details),
        },
        "settings": {
            "batch": opts.batch,
            "warmup_s": opts.warmup_s,
            "duration_s": _duration(opts),
            "iterations": opts.iterations,
            "threads": opts.threads,
            "write_seg": opts.write_seg,
        },
        "cold_start": cold,
        "steady_state": {
            "passes": len(sm.series),
            "warmup_passes": warm_passes,
            "measured_wall_s": sm.wall_s,
            "slices_per_series": n,
            "stages_ms": {st: s.scaled(1000.0).to_dict() for st, s in stages_s.items()},
            "slice_sum_ms": _stats_ms(sm.slice_sum).to_dict() if sm.slice_sum else None,
            "slice_amortized_ms": _stats_ms([v / n for v in sm.series]).to_dict(),
            "series_ms": _stats_ms(sm.series).to_dict(),
            "discover_ms": _stats_ms(sm.discover).to_dict(),
            "segment_wall_ms": _stats_ms(sm.segment_wall).to_dict(),
            "last_slice_to_result_ms": _stats_ms(sm.last_to_result).to_dict() if sm.last_to_result else None,
            "throughput": {
                "slices_per_s": n * len(sm.series) / sum(sm.series),
                "series_per_s": len(sm.series) / sum(sm.series),
            },
            "series_samples_ms": [v * 1000.0 for v in sm.series],
        },
        "memory": {
            "peak_rss_mb": envinfo.peak_rss_mb(),
            "gpu_used_mb_before": gpu_mem0,
            "gpu_used_mb_peak": sm.gpu_peak_mb,
        },
        "machine_load": {"before": pre, "during": load},
        "environment": envinfo.environment(threads_used=_threads(lm)),
        "finding": {
            "hemorrhage": bool(finding.get("hemorrhage", False)),
            "total_volume_ml": float(finding.get("total_volume_ml", 0.0)),
        },
        "warnings": [w.to_dict() for w in warns],
        "outputs": {},
    }


def _threads(lm: Any) -> int | None:
    t = getattr(lm.backend, "threads", None)
    if t is None:
        d = lm.backend.info.details.get("threads")
        t = int(d) if d and str(d).isdigit() else None
    return t


def _throttle_note() -> str | None:
    """On a Jetson, a hot module (>= 85 C on any zone) throttles its clocks: say so."""
    temps = envinfo.thermal_zones()
    hot = {k: v for k, v in temps.items() if v >= 85.0}
    if hot and envinfo.is_jetson():
        name, t = max(hot.items(), key=lambda kv: kv[1])
        return f"{name} at {t:.0f} C: the module may be throttling its clocks"
    return None

"""Latency statistics and trtexec-like warnings, computed from plain lists of seconds.

Percentiles use the nearest-rank definition (the smallest sample with at least p% of the
samples at or below it), as trtexec does, so a reported p99 is always a time that was really
measured. The median is the ordinary median (mean of the two middle samples for an even
count). The coefficient of variation is the population standard deviation over the mean.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

#: trtexec flags timings as unstable above this coefficient of variation.
CV_UNSTABLE = 0.025
#: Fewer samples than this make the tail percentiles meaningless; say so.
MIN_SAMPLES = 20
#: Transfers (h2d + d2h) above this fraction of compute: the run is transfer-bound.
TRANSFER_RATIO = 1.0
#: Host feeding time per slice above this multiple of compute per slice: enqueue-bound.
ENQUEUE_RATIO = 1.0


class WarningCode(str, enum.Enum):
    """The closed set of warnings a benchmark report can carry."""

    UNSTABLE = "unstable"
    TRANSFER_BOUND = "transfer-bound"
    ENQUEUE_BOUND = "enqueue-bound"
    BUSY_MACHINE = "busy-machine"
    FEW_SAMPLES = "few-samples"
    THROTTLED = "throttled"


@dataclass(frozen=True)
class BenchWarning:
    """One warning: a code from the closed set and a sentence that says what and why."""

    code: WarningCode
    message: str

    def to_dict(self) -> dict[str, str]:
        return {"code": self.code.value, "message": self.message}


@dataclass(frozen=True)
class Stats:
    """Summary of one series of samples (seconds, or any unit: the code does not care)."""

    n: int
    min: float
    mean: float
    median: float
    p90: float
    p95: float
    p99: float
    max: float
    std: float
    cv: float
    total: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def scaled(self, factor: float) -> Stats:
        """The same summary in another unit (e.g. factor 1000 for seconds -> ms); n and cv unchanged."""
        d = self.to_dict()
        for k in ("min", "mean", "median", "p90", "p95", "p99", "max", "std", "total"):
            d[k] = d[k] * factor
        return Stats(**d)


def percentile(sorted_values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile of already sorted values; p in [0, 100]."""
    if not sorted_values:
        raise ValueError("percentile of an empty series")
    if not 0.0 <= p <= 100.0:
        raise ValueError(f"percentile {p} outside [0, 100]")
    n = len(sorted_values)
    rank = max(1, math.ceil(p / 100.0 * n - 1e-9))
    return float(sorted_values[min(rank, n) - 1])


def median(sorted_values: Sequence[float]) -> float:
    """Ordinary median of already sorted values."""
    n = len(sorted_values)
    if n == 0:
        raise ValueError("median of an empty series")
    mid = n // 2
    if n % 2:
        return float(sorted_values[mid])
    return (float(sorted_values[mid - 1]) + float(sorted_values[mid])) / 2.0


def summarize(samples: Sequence[float]) -> Stats:
    """min, mean, median, p90, p95, p99, max, std, CV and total of a non-empty series."""
    values = sorted(float(v) for v in samples)
    if not values:
        raise ValueError("cannot summarize an empty series")
    if any(math.isnan(v) or math.isinf(v) for v in values):
        raise ValueError("samples contain NaN or infinity")
    n = len(values)
    total = math.fsum(values)
    mean = total / n
    var = math.fsum((v - mean) ** 2 for v in values) / n
    std = math.sqrt(var)
    # A constant series has CV 0 even when rounding leaves a tiny std.
    cv = 0.0 if mean == 0.0 or std <= abs(mean) * 1e-12 else std / abs(mean)
    return Stats(
        n=n,
        min=values[0],
        mean=mean,
        median=median(values),
        p90=percentile(values, 90),
        p95=percentile(values, 95),
        p99=percentile(values, 99),
        max=values[-1],
        std=std,
        cv=cv,
        total=total,
    )


def summarize_stages(per_stage: Mapping[str, Sequence[float]]) -> dict[str, Stats]:
    """Summarize every non-empty stage series; stages with no samples are left out."""
    return {name: summarize(vals) for name, vals in per_stage.items() if len(vals) > 0}


def timing_warnings(
    e2e: Stats | None,
    stages: Mapping[str, Stats],
    *,
    busy: str | None = None,
    throttled: str | None = None,
    cv_limit: float = CV_UNSTABLE,
) -> list[BenchWarning]:
    """Warnings in the manner of trtexec, from summaries the benchmark already computed.

    - unstable: the CV of the end-to-end series time or of compute exceeds `cv_limit`;
    - transfer-bound: host<->device copies (h2d + d2h) take longer than compute;
    - enqueue-bound: feeding a slice (read + preprocess, the host side) takes longer than
      computing it, so the accelerator waits for input;
    - few-samples: too few samples for the tail percentiles to mean anything;
    - busy-machine / throttled: passed in by the caller from the environment checks.
    """
    out: list[BenchWarning] = []
    for label, st in (("end-to-end series time", e2e), ("compute time", stages.get("compute"))):
        if st is not None and st.n >= 2 and st.cv > cv_limit:
            out.append(
                BenchWarning(
                    WarningCode.UNSTABLE,
                    f"{label} varies: CV {st.cv * 100:.1f}% > {cv_limit * 100:.1f}%; results may not be reproducible "
                    "(close other programs, lock clocks, run longer)",
                )
            )
    compute = stages.get("compute")
    if compute is not None and compute.mean > 0:
        xfer = sum(stages[s].mean for s in ("h2d", "d2h") if s in stages)
        if xfer > TRANSFER_RATIO * compute.mean:
            out.append(
                BenchWarning(
                    WarningCode.TRANSFER_BOUND,
                    f"transfers take {xfer * 1e3:.3f} ms per slice against {compute.mean * 1e3:.3f} ms compute: "
                    "the run is transfer-bound (pinned or mapped memory, fewer copies)",
                )
            )
        feed = sum(stages[s].mean for s in ("read", "preprocess") if s in stages)
        if feed > ENQUEUE_RATIO * compute.mean:
            out.append(
                BenchWarning(
                    WarningCode.ENQUEUE_BOUND,
                    f"reading and preprocessing take {feed * 1e3:.3f} ms per slice against {compute.mean * 1e3:.3f} ms "
                    "compute: the run is enqueue-bound, the backend waits for input",
                )
            )
    counts = [st.n for st in ((e2e,) if e2e is not None else ())] + ([compute.n] if compute is not None else [])
    if counts and min(counts) < MIN_SAMPLES:
        out.append(
            BenchWarning(
                WarningCode.FEW_SAMPLES,
                f"only {min(counts)} samples: p95/p99 are close to the maximum; measure longer for stable tails",
            )
        )
    if busy:
        out.append(BenchWarning(WarningCode.BUSY_MACHINE, busy))
    if throttled:
        out.append(BenchWarning(WarningCode.THROTTLED, throttled))
    return out

"""The benchmark's statistics and warnings on known inputs (no timing is asserted anywhere)."""

from __future__ import annotations

import math

import pytest

from edge_ich.analysis.stats import (
    CV_UNSTABLE,
    Stats,
    WarningCode,
    median,
    percentile,
    summarize,
    summarize_stages,
    timing_warnings,
)
from edge_ich.bench.core import fold_per_slice
from edge_ich.bench.envinfo import CpuAccount, parse_tegrastats


def test_percentiles_of_1_to_100_are_nearest_rank() -> None:
    s = summarize(list(range(1, 101)))
    assert (s.n, s.min, s.max) == (100, 1.0, 100.0)
    assert s.mean == 50.5 and s.median == 50.5
    assert (s.p90, s.p95, s.p99) == (90.0, 95.0, 99.0)
    assert s.total == 5050.0
    assert s.std == pytest.approx(math.sqrt((100**2 - 1) / 12))  # population std of 1..N
    assert s.cv == pytest.approx(s.std / 50.5)


def test_order_does_not_matter_and_percentiles_are_measured_values() -> None:
    data = [7.0, 1.0, 3.0, 9.0, 5.0]
    s = summarize(data)
    assert s.median == 5.0 and s.p90 == 9.0 and s.p95 == 9.0 and s.min == 1.0
    for p in (0, 10, 33, 50, 75, 99, 100):
        assert percentile(sorted(data), p) in data
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.0  # nearest rank, not interpolated
    assert median([1.0, 2.0, 3.0, 4.0]) == 2.5
    assert percentile(list(range(1, 11)), 0) == 1 and percentile(list(range(1, 11)), 100) == 10


def test_constant_series_has_zero_cv() -> None:
    s = summarize([0.0123] * 57)
    assert s.cv == 0.0 and s.std == pytest.approx(0.0, abs=1e-15)
    assert s.min == s.max == s.p99 == s.median == 0.0123


def test_single_sample_and_bad_inputs() -> None:
    s = summarize([4.2])
    assert (s.min, s.median, s.p99, s.max, s.cv) == (4.2, 4.2, 4.2, 4.2, 0.0)
    with pytest.raises(ValueError):
        summarize([])
    with pytest.raises(ValueError):
        summarize([1.0, float("nan")])
    with pytest.raises(ValueError):
        percentile([1.0], 101)


def test_scaled_converts_units_but_keeps_cv() -> None:
    s = summarize([0.001, 0.002, 0.003])
    ms = s.scaled(1000.0)
    assert ms.mean == pytest.approx(2.0) and ms.max == pytest.approx(3.0) and ms.total == pytest.approx(6.0)
    assert ms.cv == s.cv and ms.n == 3


def _codes(ws) -> set[WarningCode]:  # type: ignore[no-untyped-def]
    return {w.code for w in ws}


def test_unstable_warning_follows_cv_threshold() -> None:
    steady = summarize([100.0] * 30)
    assert WarningCode.UNSTABLE not in _codes(timing_warnings(steady, {"compute": steady}))
    noisy = summarize([100.0, 110.0] * 15)  # CV 4.8%
    assert noisy.cv > CV_UNSTABLE
    ws = timing_warnings(noisy, {"compute": steady})
    assert WarningCode.UNSTABLE in _codes(ws)
    assert "end-to-end" in next(w.message for w in ws if w.code is WarningCode.UNSTABLE)
    just_below = summarize([100.0, 104.9] * 15)  # CV 2.39%
    assert WarningCode.UNSTABLE not in _codes(timing_warnings(just_below, {"compute": steady}))


def test_transfer_and_enqueue_bound_from_constructed_stages() -> None:
    e2e = summarize([50.0] * 30)
    compute = summarize([1.0] * 30)
    cheap = summarize([0.1] * 30)
    dear = summarize([0.8] * 30)
    balanced = {"compute": compute, "h2d": cheap, "d2h": cheap, "read": cheap, "preprocess": cheap}
    assert not _codes(timing_warnings(e2e, balanced)) & {WarningCode.TRANSFER_BOUND, WarningCode.ENQUEUE_BOUND}
    xfer = dict(balanced, h2d=dear, d2h=dear)  # 1.6 > 1.0
    assert WarningCode.TRANSFER_BOUND in _codes(timing_warnings(e2e, xfer))
    feed = dict(balanced, read=dear, preprocess=dear)
    codes = _codes(timing_warnings(e2e, feed))
    assert WarningCode.ENQUEUE_BOUND in codes and WarningCode.TRANSFER_BOUND not in codes


def test_few_samples_busy_and_throttled_are_reported() -> None:
    few = summarize([1.0, 1.0, 1.0])
    ws = timing_warnings(few, {"compute": few}, busy="other processes used 1.5 of 2 CPUs", throttled="gpu at 90 C")
    codes = _codes(ws)
    assert {WarningCode.FEW_SAMPLES, WarningCode.BUSY_MACHINE, WarningCode.THROTTLED} <= codes
    assert all(w.to_dict()["message"] for w in ws)
    assert timing_warnings(summarize([1.0] * 25), {"compute": summarize([1.0] * 25)}) == []


def test_summarize_stages_skips_empty_stages() -> None:
    out = summarize_stages({"read": [1.0, 2.0], "h2d": [], "compute": [3.0]})
    assert set(out) == {"read", "compute"}
    assert isinstance(out["read"], Stats) and out["read"].mean == 1.5


def test_fold_per_slice_sums_repeated_records() -> None:
    assert fold_per_slice([1.0, 2.0, 3.0], 3) == [1.0, 2.0, 3.0]
    # two records per slice (per-batch part, then the share of a series-level step)
    assert fold_per_slice([1.0, 2.0, 3.0, 10.0, 10.0, 10.0], 3) == [11.0, 12.0, 13.0]
    assert fold_per_slice([1.0, 2.0], 3) == [1.0, 2.0]  # not a multiple: left alone
    assert fold_per_slice([], 3) == []


def test_parse_tegrastats_line() -> None:
    line = (
        "11-29-2026 20:01:02 RAM 2712/7620MB (lfb 4x4MB) SWAP 0/3810MB (cached 0MB) CPU [3%@1510,2%@1510,off,off,"
        "1%@1510,0%@1510] EMC_FREQ 0% GR3D_FREQ 47% cpu@48.5C soc2@46.1C soc0@47.2C gpu@47.9C tj@48.5C "
        "soc1@46.3C VDD_IN 5463mW/5463mW VDD_CPU_GPU_CV 1027mW/1027mW VDD_SOC 1579mW/1579mW"
    )
    info = parse_tegrastats(line)
    assert info["temperature_c"]["gpu"] == 47.9 and info["temperature_c"]["tj"] == 48.5
    assert info["power_mw"] == {"VDD_IN": 5463, "VDD_CPU_GPU_CV": 1027, "VDD_SOC": 1579}
    assert info["gpu_load_percent"] == 47
    assert (info["ram_used_mb"], info["ram_total_mb"]) == (2712, 7620)


def test_cpu_account_sees_our_own_work() -> None:
    acct = CpuAccount().start()
    x = 0
    for i in range(300_000):
        x += i * i
    res = acct.stop(threads_used=1)
    assert x > 0
    assert res["own_cores"] > 0.0 and res["others_cores"] >= 0.0
    assert res["busy"] == (res["message"] is not None)
    assert res["threads_used"] == 1 and res["cpus"] >= 1


def test_report_json_stage_timings_use_the_same_percentiles_as_bench() -> None:
    from edge_ich.outputs.report import _stats_ms

    seconds = [i / 1000.0 for i in range(20, 0, -1)]  # 1..20 ms, unsorted
    s = _stats_ms(seconds)
    assert s["p50_ms"] == 10.5 and s["p95_ms"] == 19.0  # nearest rank: a time that was measured
    assert abs(s["mean_ms"] - 10.5) < 1e-9 and abs(s["total_s"] - 0.21) < 1e-12
    assert _stats_ms([]) == {"total_s": 0.0, "mean_ms": 0.0, "p50_ms": 0.0, "p95_ms": 0.0}

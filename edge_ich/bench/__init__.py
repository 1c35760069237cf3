"""`edge-ich bench`: latency of the whole point-of-care path, with trtexec-grade statistics.

`run_bench(BenchOptions(...))` measures and writes bench.json, bench.md and PNG plots;
`bench_and_print` is the CLI wrapper. Statistics live in `stats`, the environment block in
`envinfo`, the files in `report`.
"""

from __future__ import annotations

import sys
from typing import Any

from edge_ich.bench.core import BENCH_SCHEMA_VERSION, BenchOptions, equivalent_command, run_bench


def bench_and_print(opts: BenchOptions) -> dict[str, Any]:
    """CLI wrapper: measure, write the reports, print one summary line and the warnings."""
    from edge_ich.bench.report import summary_line

    doc = run_bench(opts)
    print(f"{summary_line(doc)} -> {opts.out}")
    for w in doc["warnings"]:
        print(f"edge-ich bench: warning [{w['code']}]: {w['message']}", file=sys.stderr)
    return doc


__all__ = ["BENCH_SCHEMA_VERSION", "BenchOptions", "bench_and_print", "equivalent_command", "run_bench"]

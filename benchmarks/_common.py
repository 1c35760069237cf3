"""Shared helpers of the benchmark scripts: model choice, timing loop, report writing.

Benchmarks are scripts that write reports (JSON + Markdown + PNG) under benchmarks/reports/;
they are never tests and nothing in the test suite asserts a time.
"""

from __future__ import annotations

import json
import shlex
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # scripts run as `python benchmarks/x.py` from the repo root
    sys.path.insert(0, str(ROOT))

from edge_ich.analysis.stats import Stats, summarize  # noqa: E402
from edge_ich.bench import envinfo  # noqa: E402
from edge_ich.outputs.atomic import write_text_atomic  # noqa: E402

REPORTS = ROOT / "benchmarks" / "reports"


def command_line() -> str:
    """The command that is running now, as someone would retype it from the repo root."""
    script = Path(sys.argv[0])
    try:
        script = script.resolve().relative_to(ROOT)
    except ValueError:
        pass
    return " ".join(["python", shlex.quote(str(script)), *(shlex.quote(a) for a in sys.argv[1:])])


def default_model() -> tuple[Path, str]:
    """The bundled model, or the tiny test model when none is bundled yet (and a note saying so)."""
    from edge_ich.card import bundled_model_path

    found = bundled_model_path()
    if found is not None:
        return found, "the bundled model (engines/ich_segmenter.onnx)"
    import tempfile

    from tests.tinymodel import build_tiny_model

    tiny = build_tiny_model(Path(tempfile.mkdtemp(prefix="edge-ich-tiny-")))
    return tiny, "the tiny TEST model (two convolutions, 64x64): no bundled model existed when this ran"


def time_calls_with_result(
    fn: Callable[[], Any],
    *,
    warmup: int = 2,
    min_iters: int = 5,
    max_iters: int = 50,
    budget_s: float = 3.0,
    shorten_slow: bool = False,
) -> tuple[Stats, Any]:
    """Seconds per call of `fn` after `warmup` calls: at least min_iters, then until budget_s or max_iters.

    With shorten_slow, a path whose first call alone takes more than a third of the budget is
    kept short (one warm-up, three timed calls) so a slow path cannot stretch the run. Returns the statistics
    and the last call's return value.
    """
    for i in range(warmup):
        t0 = time.perf_counter()
        fn()
        if shorten_slow and i == 0 and time.perf_counter() - t0 > budget_s / 3:
            min_iters, max_iters = min(min_iters, 3), min(max_iters, 3)
            break
    samples: list[float] = []
    last: Any = None
    t_end = time.perf_counter() + budget_s
    while len(samples) < min_iters or (len(samples) < max_iters and time.perf_counter() < t_end):
        t0 = time.perf_counter()
        last = fn()
        samples.append(time.perf_counter() - t0)
    return summarize(samples), last


def time_calls(
    fn: Callable[[], Any], *, warmup: int = 2, min_iters: int = 5, max_iters: int = 50, budget_s: float = 3.0
) -> Stats:
    """As time_calls_with_result, statistics only."""
    return time_calls_with_result(fn, warmup=warmup, min_iters=min_iters, max_iters=max_iters, budget_s=budget_s)[0]


def write_report(name: str, doc: dict[str, Any], md_lines: list[str]) -> Path:
    """Write reports/<name>/<name>.json and .md (atomically); return the folder."""
    out = REPORTS / name
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / f"{name}.json", json.dumps(doc, indent=2, default=_jsonable) + "\n")
    write_text_atomic(out / f"{name}.md", "\n".join(md_lines) + "\n")
    return out


def _jsonable(o: Any) -> Any:
    if isinstance(o, Path):
        return str(o)
    if hasattr(o, "to_dict"):
        return o.to_dict()
    if hasattr(o, "item"):
        return o.item()
    raise TypeError(f"not JSON serializable: {type(o).__name__}")


def env_block(threads: int | None) -> dict[str, Any]:
    return envinfo.environment(threads_used=threads)


def env_lines(env: dict[str, Any], load: dict[str, Any]) -> list[str]:
    """Markdown lines describing the machine and how busy it was."""
    cpu = env["cpu"]
    v = env["versions"]
    lines = [
        "## Machine",
        "",
        f"- CPU: {cpu['model']} ({cpu['arch']}), {cpu['physical_cores']} cores / {cpu['logical_cpus']} threads, "
        f"{cpu['usable_cpus']} usable, threads used {env.get('threads_used')}; flags: {', '.join(cpu['flags']) or '-'}",
        "- Versions: " + ", ".join(f"{k} {val}" for k, val in v.items() if val),
        f"- GPUs: {', '.join(g['name'] for g in env['gpus']) or 'none'}",
        f"- Shared machine: other processes used {load['others_cores']:.2f} of {load['cpus']} CPUs on average during "
        f"the run (busy-machine check: {'BUSY' if load['busy'] else 'quiet'}). The development machine is shared by "
        "several people working at once, so absolute times here are pessimistic and noisy; ratios measured in "
        "the same run are the more trustworthy numbers.",
    ]
    return lines


def ms(s: Stats) -> dict[str, float]:
    """A Stats in milliseconds as a plain dict."""
    return s.scaled(1000.0).to_dict()

"""The check: our TensorRT code against the real bindings of every TensorRT version we support.

For each version: the names the code uses (`uses.py`) are looked up in the real, imported
bindings (`probe.py`): each must exist (or be guarded by `hasattr`) and must not carry TensorRT's
`[DEPRECATED]` mark; and mypy must pass over the TensorRT modules with `trt` typed by that
version's stubs. A name guarded by `hasattr` must exist in at least one version.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tools.check_trt.bindings import Bindings, BindingsError, prepare
from tools.check_trt.uses import Use, module_uses, run_mypy, trt_modules

#: JetPack 6's TensorRT, and the newest 11.x (JetPack 7.2.2+ carries 11.4.1; its bindings wheel is 11.4.0.106).
VERSIONS = ("10.3.0", "11.4.0.106")


@dataclass
class VersionReport:
    version: str
    uses: list[Use]
    verdicts: dict[str, dict[str, Any]]
    mypy_errors: list[str]
    problems: list[str] = field(default_factory=list)
    absent_guarded: list[str] = field(default_factory=list)
    note: str = ""


def _probe(b: Bindings, pairs: list[tuple[str, str]]) -> dict[str, dict[str, Any]]:
    code = (Path(__file__).with_name("probe.py")).read_text()
    out = b.python(code + "\n", stdin=json.dumps(pairs))  # runs as __main__ beside the bindings
    if out.returncode != 0:
        tail = " | ".join(out.stderr.strip().splitlines()[-3:])
        raise BindingsError(f"probing TensorRT {b.version} failed: {tail}")
    data = json.loads(out.stdout)
    if data["version"] != b.version:
        raise BindingsError(f"probed TensorRT {data['version']}, expected {b.version}")
    names: dict[str, dict[str, Any]] = data["names"]
    return names


def check_version(root: Path, b: Bindings, files: list[Path]) -> VersionReport:
    """One version: mypy with its stubs, every used name looked up in its bindings."""
    trt11 = int(b.version.split(".")[0]) >= 11
    res = run_mypy(root, files, b.stubs, trt11)
    uses, guarded = list(res.uses), set()
    for f in files:
        more, g = module_uses(root, f)
        uses += more
        guarded |= g
    pairs = sorted({(u.owner, u.name) for u in uses})
    verdicts = _probe(b, pairs)
    rep = VersionReport(b.version, sorted(set(uses)), verdicts, res.errors)
    if res.tensorrt_stub is None or not str(Path(res.tensorrt_stub).resolve()).startswith(str(b.stubs.resolve())):
        rep.problems.append(
            f"mypy did not read tensorrt from the generated stubs ({res.tensorrt_stub}): trt would be Any"
        )
    if not res.uses:
        rep.problems.append("mypy resolved no TensorRT member in the TensorRT modules: are they typed?")
    first: dict[str, Use] = {}
    for u in rep.uses:
        first.setdefault(u.qualname, u)
    for qual, u in sorted(first.items()):
        v = verdicts[qual]
        where = f"{u.path}:{u.line}"
        if not v["exists"]:
            if u.name in guarded:
                rep.absent_guarded.append(qual)
            else:
                rep.problems.append(f"{where} {qual}: not in TensorRT {b.version} (removed or renamed)")
        elif v["deprecated"]:
            rep.problems.append(f"{where} {qual}: deprecated in TensorRT {b.version}: {v['deprecated']}")
    rep.problems += [f"mypy: {e}" for e in res.errors]
    repairs = json.loads((b.stubs / "repairs.json").read_text())
    symbols = (b.lib / "symbols.txt").read_text().split()
    libs = sorted(p.name for p in b.lib.glob("*.so*"))
    rep.note = (
        f"bindings wheel {(b.root / 'ready').read_text().strip()}; stand-in {', '.join(libs)} "
        f"({len(symbols)} symbols); stubs: {repairs['fixed']} signatures repaired, "
        f"{len(repairs['loosened'])} loosened, protocols added: {', '.join(repairs['added']) or 'none'}"
    )
    return rep


def run_check(
    root: Path,
    cache: Path,
    versions: tuple[str, ...] = VERSIONS,
    echo: Callable[[str], None] = print,
    verbose: bool = False,
) -> bool:
    """Check the code under `root` against each version; print a report; True when every version passes."""
    root = Path(root).resolve()
    files = trt_modules(root)
    echo(f"check-trt: {len(files)} TensorRT modules: {', '.join(str(f.relative_to(root)) for f in files)}")
    reports = []
    for version in versions:
        rep = check_version(root, prepare(version, cache), files)
        reports.append(rep)
        names = sorted({u.qualname for u in rep.uses})
        echo(f"TensorRT {version}: {rep.note}")
        echo(
            f"  mypy over {len(files)} modules with trt typed: "
            + (f"{len(rep.mypy_errors)} errors" if rep.mypy_errors else "no errors")
        )
        echo(
            f"  {len(names)} TensorRT names used at {len(rep.uses)} places: "
            + (
                f"{len(rep.problems) - len(rep.mypy_errors)} problems"
                if rep.problems
                else "all present, none deprecated"
            )
            + (f"; absent here, guarded by hasattr: {', '.join(rep.absent_guarded)}" if rep.absent_guarded else "")
        )
        if verbose:
            for q in names:
                v = rep.verdicts[q]
                state = "missing" if not v["exists"] else ("DEPRECATED" if v["deprecated"] else "ok")
                echo(f"    {q:60s} {v['kind']:11s} {state}")
        for p in rep.problems:
            echo(f"  FAIL {p}")
    never = sorted(set.intersection(*[set(r.absent_guarded) for r in reports])) if reports else []
    for q in never:
        echo(f"  FAIL {q}: guarded by hasattr but present in none of TensorRT {', '.join(versions)}")
    failed = [r.version for r in reports if r.problems]
    if failed or never:
        echo(f"check-trt: FAIL on TensorRT {', '.join(failed) or ', '.join(versions)}")
        return False
    echo(f"check-trt: PASS on TensorRT {' and '.join(versions)}")
    return True

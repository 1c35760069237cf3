"""The house stays in rooms: no import circles, imports run one way, small files, a short top level.

The import graph is read from the source with `ast` (every `import`, also those inside functions),
so a lazy import that closes a circle fails here even though Python would tolerate it at run time.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("edge_ich", "training")

#: Rooms of the runtime from the bottom up; a module may import its own room and rooms below it.
LAYERS: dict[str, int] = {
    "host": 0,  # the process: thread budget (before numpy loads), install commands; imports nothing of ours
    "errors": 1,
    "edge_ich": 2,  # the package itself: its version, and the error root re-exported
    "preprocess": 3,  # the one definition of windows and resizing (block means and maxima too)
    "sources": 3,
    "analysis": 4,  # masks, components, metrics from HU alone: may use preprocess's block reductions
    "assess": 5,  # may this series be answered at all (assessability), and the warnings it carries
    "outputs": 6,
    "card": 7,
    "backends": 8,
    "pipeline": 9,
    "builder": 9,
    "runner": 10,
    "bench": 11,
    "serve": 11,
    "phantom": 11,
    "doctor": 11,
    "cli": 12,
    "__main__": 13,
}


def _modules() -> dict[str, Path]:
    mods: dict[str, Path] = {}
    for pkg in PACKAGES:
        for f in (REPO / pkg).rglob("*.py"):
            parts = list(f.relative_to(REPO).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            mods[".".join(parts)] = f
    return mods


def _resolve(name: str, mods: dict[str, Path]) -> str | None:
    while name and name not in mods:
        name = name.rpartition(".")[0]
    return name or None


def import_graph() -> dict[str, set[str]]:
    """module -> the project modules it imports (explicitly; a parent package's __init__ is not implied)."""
    mods = _modules()
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for mod, path in mods.items():
        is_pkg = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = mod.split(".") if is_pkg else mod.split(".")[:-1]
                    base = base[: len(base) - (node.level - 1)]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                names = [f"{target}.{a.name}" if f"{target}.{a.name}" in mods else target for a in node.names]
            for name in names:
                dep = _resolve(name, mods)
                if dep is not None and dep != mod:
                    graph[mod].add(dep)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(graph[w]))))
                elif w in on_stack:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    found.append(sorted(comp))
    return found


def room(module: str) -> str:
    parts = module.split(".")
    return parts[0] if parts[0] != "edge_ich" or len(parts) == 1 else parts[1]


def test_cycle_finder_finds_a_planted_circle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert cycles(graph) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_circles() -> None:
    assert cycles(import_graph()) == []


def test_imports_run_one_way() -> None:
    bad = []
    for mod, deps in import_graph().items():
        if not mod.startswith("edge_ich"):
            continue
        src = room(mod)
        assert src in LAYERS, f"new room {src}: give it a layer in LAYERS"
        for dep in deps:
            dst = room(dep)
            if dep.startswith("training"):
                bad.append(f"{mod} -> {dep} (the runtime never imports training)")
            elif dst != src and LAYERS[dst] >= LAYERS[src]:
                bad.append(f"{mod} -> {dep} ({src} may not import {dst})")
    assert bad == []


@pytest.mark.parametrize("pkg", ["edge_ich"])
def test_runtime_never_imports_torch(pkg: str) -> None:
    offenders = []
    for f in (REPO / pkg).rglob("*.py"):
        for node in ast.walk(ast.parse(f.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and not node.level:
                names = [node.module or ""]
            if any(n == "torch" or n.startswith("torch.") for n in names):
                offenders.append(str(f.relative_to(REPO)))
    assert offenders == []


def test_top_level_reads_like_a_table_of_contents() -> None:
    top = sorted(p.name for p in (REPO / "edge_ich").glob("*.py"))
    assert len(top) <= 9, top


def test_no_source_file_over_450_lines() -> None:
    long = []
    for folder in ("edge_ich", "training", "tests", "benchmarks"):
        for f in (REPO / folder).rglob("*.py"):
            if "reports" in f.parts:
                continue
            n = len(f.read_text().splitlines())
            if n > 450:
                long.append(f"{f.relative_to(REPO)}: {n}")
    assert long == []


def test_no_package_called_build() -> None:
    """Linters, packaging tools and code browsers treat a `build/` folder as generated output and skip it."""
    assert [p for p in (REPO / "edge_ich").rglob("build") if p.is_dir()] == []

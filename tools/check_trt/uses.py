"""Which TensorRT names our code uses, read from the code itself, and mypy over it with real stubs.

The TensorRT modules are the files under `edge_ich/` that import `tensorrt` (found with `ast`, so
a new one joins by itself). mypy type-checks them against the stubs of one TensorRT version: with
`trt` typed, a removed method or attribute on a builder, config, engine or context is an error.
A mypy plugin records every TensorRT member mypy resolves while checking (methods called,
attributes and properties read or set, enum values, constructors), where it was used; `ast` adds
the module-level names (`trt.X`). Code that runs on one major version only branches on
`version.is_trt11`; mypy is told that constant's value for the version checked, so each branch
is checked (and its names collected) only for the version it runs on.
"""

from __future__ import annotations

import ast
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: The name mypy treats as a constant per version (`TrtVersion.is_trt11` in edge_ich/backends/manifest.py).
VERSION_CONSTANT = "is_trt11"
_PREFIXES = ("tensorrt_bindings.tensorrt.", "tensorrt_bindings.", "tensorrt.")


@dataclass(frozen=True, order=True)
class Use:
    """One TensorRT name used at one place: `owner` is "" for the module, else a class path ("IBuilderConfig")."""

    owner: str
    name: str
    path: str
    line: int

    @property
    def qualname(self) -> str:
        return f"{self.owner}.{self.name}" if self.owner else self.name


def _imports_tensorrt(tree: ast.AST) -> bool:
    for node in ast.walk(tree):
        if isinstance(node, ast.Import) and any(a.name.split(".")[0] == "tensorrt" for a in node.names):
            return True
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "tensorrt":
            return True
    return False


def trt_modules(root: Path) -> list[Path]:
    """Every file under root/edge_ich that imports tensorrt (at any scope, TYPE_CHECKING included)."""
    out = []
    for path in sorted((Path(root) / "edge_ich").rglob("*.py")):
        if _imports_tensorrt(ast.parse(path.read_text(), str(path))):
            out.append(path)
    return out


def module_uses(root: Path, path: Path) -> tuple[list[Use], set[str]]:
    """`trt.X` for every alias bound to the tensorrt module, plus the names probed with hasattr/getattr."""
    tree = ast.parse(path.read_text(), str(path))
    rel = str(path.relative_to(root))
    aliases = set()
    uses: list[Use] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            aliases |= {a.asname or a.name for a in node.names if a.name == "tensorrt"}
        elif isinstance(node, ast.ImportFrom) and node.module == "tensorrt":
            uses += [Use("", a.name, rel, node.lineno) for a in node.names if a.name != "*"]
    guarded: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases:
            uses.append(Use("", node.attr, rel, node.lineno))
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in ("hasattr", "getattr")
            and len(node.args) >= 2
            and isinstance(node.args[1], ast.Constant)
            and isinstance(node.args[1].value, str)
        ):
            guarded.add(node.args[1].value)
    return uses, guarded


def split_fullname(fullname: str) -> tuple[str, str] | None:
    """'tensorrt_bindings.tensorrt.IBuilderConfig.set_flag' -> ('IBuilderConfig', 'set_flag'); None if not TensorRT's."""
    for prefix in _PREFIXES:
        if fullname.startswith(prefix):
            rest = fullname[len(prefix) :]
            owner, _, name = rest.rpartition(".")
            return owner, name
    return None


@dataclass
class MypyResult:
    errors: list[str]
    uses: list[Use]
    tensorrt_stub: str | None  # the file mypy read for `import tensorrt` (None: it found none)


def run_mypy(root: Path, files: list[Path], stubs: Path, trt11: bool) -> MypyResult:
    """mypy with the project's configuration over `files`, `tensorrt` from `stubs`; errors in `files` only."""
    from mypy import build
    from mypy.main import process_options
    from mypy.plugin import Plugin

    root = Path(root).resolve()
    wanted = {str(Path(f).resolve()) for f in files}
    found: list[Use] = []

    def recorder(fullname: str) -> Callable[[Any], Any] | None:
        parts = split_fullname(fullname)
        if parts is None or parts[1].startswith("__"):
            return None
        owner, name = parts

        def hook(ctx: Any) -> Any:
            path = str(Path(ctx.api.path).resolve())
            if path in wanted:
                found.append(Use(owner, name, str(Path(path).relative_to(root)), ctx.context.line))
            return getattr(ctx, "default_return_type", None) or getattr(ctx, "default_attr_type", None)

        return hook

    class Recorder(Plugin):
        def get_function_hook(self, fullname: str) -> Callable[[Any], Any] | None:
            return recorder(fullname)

        def get_method_hook(self, fullname: str) -> Callable[[Any], Any] | None:
            return recorder(fullname)

        def get_attribute_hook(self, fullname: str) -> Callable[[Any], Any] | None:
            return recorder(fullname)

        def get_class_attribute_hook(self, fullname: str) -> Callable[[Any], Any] | None:
            return recorder(fullname)

    sources, options = process_options(["--config-file", str(root / "pyproject.toml"), *sorted(wanted)])
    options.mypy_path = [str(Path(stubs).resolve()), *options.mypy_path]
    options.incremental = False  # every run checks every file (the plugin sees each use)
    options.cache_dir = os.devnull  # and writes no cache: the project's own mypy runs see no stubs
    options.always_true = [*options.always_true, VERSION_CONSTANT] if trt11 else options.always_true
    options.always_false = options.always_false if trt11 else [*options.always_false, VERSION_CONSTANT]
    try:
        res = build.build(sources, options, extra_plugins=[Recorder(options)])
    except Exception as exc:  # mypy's CompileError: a blocking error (syntax) in our files or the stubs
        messages = getattr(exc, "messages", None) or [str(exc)]
        return MypyResult([m for m in messages if "error:" in m], found, None)
    errors = []
    for line in res.errors:
        head = line.split(":", 1)[0]
        if " error: " in line and str((Path.cwd() / head).resolve()) in wanted:
            rel = str(Path(head).resolve().relative_to(root))
            errors.append(rel + line[len(head) :])
    state = res.graph.get("tensorrt")
    return MypyResult(errors, sorted(set(found)), state.path if state is not None else None)

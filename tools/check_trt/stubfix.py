"""Make pybind11-stubgen's TensorRT stubs parse: the bindings' signatures are not always valid Python.

Two faults keep them from parsing in 10.3 and 11.4: parameters named after keywords (`in`) and
parameters without a default after ones with a default (C++ lets the binding declare that). Each
such `def` line is rewritten (`in` -> `in_`, `= ...` added); a line that still does not parse gets a
loose `(*args: Any, **kwargs: Any) -> Any` signature, and is counted so the report can say so.
A third fault parses but poisons types: the module defines `bool` (the DataType alias `trt.bool`),
so every `-> bool` in it would name that value; those become `builtins.bool`.
"""

from __future__ import annotations

import ast
import keyword
import re
from dataclasses import dataclass, field

_DEF = re.compile(r"^(?P<indent>\s*)def (?P<name>\w+)\((?P<params>.*)\)(?P<ret>\s*->\s*.+)?:\s*$")


@dataclass
class Repairs:
    """How many `def` lines were rewritten, and which ones lost their types."""

    fixed: int = 0
    loosened: list[str] = field(default_factory=list)


def _split_params(params: str) -> list[str]:
    """Split a parameter list on top-level commas (annotations hold brackets with commas)."""
    out: list[str] = []
    cur: list[str] = []
    depth = 0
    for ch in params:
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        if ch == "," and depth == 0:
            out.append("".join(cur).strip())
            cur = []
        else:
            cur.append(ch)
    if "".join(cur).strip():
        out.append("".join(cur).strip())
    return out


def _fix_params(params: str) -> str:
    fixed, seen_default, star = [], False, False
    for p in _split_params(params):
        if p.startswith("*"):
            star = True  # after * / *args, parameters are keyword-only: no default needed
            fixed.append(p)
            continue
        m = re.match(r"(\w+)(.*)", p, re.S)
        if not m:
            fixed.append(p)
            continue
        name, rest = m.groups()
        if keyword.iskeyword(name):
            name += "_"
        has_default = "=" in re.sub(r"\[.*?\]", "", rest)
        if has_default:
            seen_default = True
        elif seen_default and not star:
            rest += " = ..."
        fixed.append(name + rest)
    return ", ".join(fixed)


def _parses(line: str) -> bool:
    try:
        ast.parse(line.strip() + "\n    ...\n")
    except SyntaxError:
        return False
    return True


_SHADOWED = ("bool",)  # builtins the TensorRT module redefines as DataType values


def unshadow(text: str) -> str:
    """`bool` in annotations means the builtin, not the module's `bool: DataType` value."""
    for name in _SHADOWED:
        if not re.search(rf"^{name}\s*:", text, re.M):
            continue
        pat = re.compile(rf"(?<![\w.'\"]){name}(?![\w'\"])")
        out = []
        for line in text.splitlines():
            out.append(line if re.match(rf"{name}\s*:", line) else pat.sub(f"builtins.{name}", line))
        text = "\n".join(out)
        text = re.sub(r"^(from __future__ import annotations\n)", r"\1import builtins\n", text, count=1, flags=re.M)
    return text


def repair(text: str, max_rounds: int = 2000) -> tuple[str, Repairs]:
    """Rewrite the `def` lines that keep `text` from parsing; returns the text and what was done."""
    lines = unshadow(text).splitlines()
    rep = Repairs()
    for _ in range(max_rounds):
        try:
            ast.parse("\n".join(lines))
            return "\n".join(lines) + "\n", rep
        except SyntaxError as exc:
            i = (exc.lineno or 1) - 1
        m = _DEF.match(lines[i]) if 0 <= i < len(lines) else None
        if m is None:
            raise ValueError(
                f"stub line {i + 1} does not parse and is not a def: {lines[i][:120] if 0 <= i < len(lines) else ''}"
            )
        new = f"{m['indent']}def {m['name']}({_fix_params(m['params'])}){m['ret'] or ''}:"
        if _parses(new) and new != lines[i]:
            rep.fixed += 1
        else:
            new = f"{m['indent']}def {m['name']}(*args: typing.Any, **kwargs: typing.Any) -> typing.Any:"
            rep.loosened.append(m["name"])
        lines[i] = new
    raise ValueError(f"stubs still do not parse after {max_rounds} repairs")


def _ret(fn: ast.FunctionDef) -> str | None:
    return ast.unparse(fn.returns) if fn.returns is not None else None


def supplement(text: str) -> tuple[str, list[str]]:
    """Protocols the bindings implement but pybind11 signatures cannot show; returns the text and what was added.

    - Python iterates any class with `__len__` and an int `__getitem__` (the sequence protocol, e.g.
      `Dims`): such a class gets the `__iter__` mypy needs to see that.
    - A class whose docstring says it exposes Python's buffer protocol (`IHostMemory`) gets
      `__buffer__`, so `bytes(host_memory)` type-checks as it runs.
    """
    tree = ast.parse(text)
    lines = text.splitlines()
    inserts: list[tuple[int, str]] = []
    added: list[str] = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.ClassDef):
            continue
        defs = {f.name: f for f in node.body if isinstance(f, ast.FunctionDef)}
        indent = " " * (node.col_offset + 4)
        getitems = [
            f
            for f in node.body
            if isinstance(f, ast.FunctionDef)
            and f.name == "__getitem__"
            and len(f.args.args) == 2
            and f.args.args[1].annotation is not None
            and ast.unparse(f.args.args[1].annotation) in ("int", "typing.SupportsInt")
        ]
        if "__len__" in defs and getitems and "__iter__" not in defs and _ret(getitems[0]):
            inserts.append((node.lineno, f"{indent}def __iter__(self) -> typing.Iterator[{_ret(getitems[0])}]: ..."))
            added.append(f"{node.name}.__iter__")
        doc = ast.get_docstring(node) or ""
        if "buffer protocol" in doc and "__buffer__" not in defs:
            inserts.append((node.lineno, f"{indent}def __buffer__(self, flags: int, /) -> memoryview: ..."))
            added.append(f"{node.name}.__buffer__")
    for lineno, line in sorted(inserts, reverse=True):
        end = lineno  # after the `class ...:` line (its header may span lines)
        while not lines[end - 1].rstrip().endswith(":"):
            end += 1
        lines.insert(end, line)
    return "\n".join(lines) + "\n", added

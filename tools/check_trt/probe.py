"""Runs inside a Python that imports one real TensorRT bindings wheel: which names exist, which are deprecated.

Standard library only (it runs beside the bindings, not beside edge-ich). Reads a JSON list of
`[owner, name]` pairs on stdin, where owner is "" for the module itself or a dotted path inside it
("IBuilderConfig", "ILogger.Severity"); writes `{"version": ..., "names": {"owner.name": {...}}}`.
A name is deprecated when its docstring, or its entry in the owner's docstring (`:ivar name:` for
properties, the `Members:` list for enum values), carries TensorRT's `[DEPRECATED]` mark.
"""

from __future__ import annotations

import json
import re
import sys
from typing import Any

MARK = "[DEPRECATED]"


def _head(doc: str) -> str:
    """A class docstring up to its attribute / member / argument lists (those describe other names)."""
    cut = re.search(r"^\s*(:ivar|:arg|Members:)", doc, re.M)
    return doc[: cut.start()] if cut else doc


def _entry(doc: str, name: str) -> str:
    """The text that documents `name` in its owner's docstring (`:ivar name:` or `  name : ...`), else ""."""
    lines = doc.splitlines()
    pat = re.compile(rf"^(\s*)(?::ivar {re.escape(name)}:|{re.escape(name)} :)")
    for i, line in enumerate(lines):
        m = pat.match(line)
        if not m:
            continue
        indent, out = len(m.group(1)), [line]
        for nxt in lines[i + 1 :]:  # continuation lines are indented deeper (or blank inside the entry)
            if nxt.strip() and len(nxt) - len(nxt.lstrip()) <= indent:
                break
            out.append(nxt)
        return "\n".join(out)
    return ""


def _lookup(mod: Any, dotted: str) -> Any:
    obj = mod
    for part in [p for p in dotted.split(".") if p]:
        obj = getattr(obj, part)
    return obj


def describe(mod: Any, owner: str, name: str) -> dict[str, Any]:
    """{"exists": bool, "deprecated": the text after the mark or None, "kind": str} for one name."""
    try:
        parent = _lookup(mod, owner)
    except AttributeError:
        return {"exists": False, "deprecated": None, "kind": "owner missing"}
    if not hasattr(parent, name):
        return {"exists": False, "deprecated": None, "kind": "missing"}
    obj = getattr(parent, name)
    raw: Any = None
    doc_owner = ""  # the docstring of the class that defines `name` (inherited names: a base class)
    if isinstance(parent, type):
        for cls in parent.__mro__:
            if name in cls.__dict__:
                raw, doc_owner = cls.__dict__[name], cls.__doc__ or ""
                break
    if isinstance(obj, type):
        kind, text = "class", _head(obj.__doc__ or "")
    elif isinstance(parent, type) and isinstance(obj, parent):
        kind, text = "enum value", _entry(doc_owner, name)
    elif isinstance(raw, property):
        kind, text = "property", _entry(doc_owner, name) + "\n" + (raw.__doc__ or "")
    elif callable(obj):
        kind, text = "function", obj.__doc__ or ""
    else:
        kind, text = "value", _entry(doc_owner, name)
    dep = None
    if MARK in text:
        after = " ".join(text.split(MARK, 1)[1].split())
        dep = after[:160] or "deprecated"
    return {"exists": True, "deprecated": dep, "kind": kind}


def main() -> int:
    import tensorrt

    pairs = json.load(sys.stdin)
    out = {f"{o}.{n}" if o else n: describe(tensorrt, o, n) for o, n in pairs}
    json.dump({"version": str(tensorrt.__version__), "names": out}, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())

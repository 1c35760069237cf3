"""Library warnings and our own log warnings during a run go into report.json, not raw to stderr.

pydicom, highdicom and numpy speak through `warnings`; our writers and highdicom log through
`logging`. Both are collected while a run lasts, reduced to safe text (quoted values, which may be patient data, are
replaced) and handed to the report as `Warn(code="library")`. Process-wide state: use from one
run at a time (the CLI), not from the receiver's worker threads.
"""

from __future__ import annotations

import contextlib
import logging
import re
import warnings
from collections.abc import Iterator

from edge_ich.sources.findings import Warn

_QUOTED = re.compile(r"""(b?'[^']*'|b?"[^"]*")""")
MAX_NOTICES = 20


def safe_text(text: str, limit: int = 200) -> str:
    """One line, quoted values replaced by '...', at most `limit` characters."""
    line = " ".join(_QUOTED.sub("'...'", str(text)).split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


class _Collector(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)
        self.records: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(f"{record.name}: {record.getMessage()}")


class Notices:
    """What was collected so far; `take()` turns it into report warnings (deduplicated, safe text)."""

    def __init__(self, caught: list[warnings.WarningMessage], handler: _Collector) -> None:
        self._caught = caught
        self._handler = handler

    def take(self) -> list[Warn]:
        texts = [f"{w.category.__name__} from {_origin(w.filename)}: {w.message}" for w in self._caught]
        texts += self._handler.records
        seen: dict[str, int] = {}
        for t in texts:
            key = safe_text(t)
            seen[key] = seen.get(key, 0) + 1
        return [
            Warn("library", key + (f" ({count} times)" if count > 1 else ""), "reader notices")
            for key, count in list(seen.items())[:MAX_NOTICES]
        ]


@contextlib.contextmanager
def collect() -> Iterator[Notices]:
    """Collect warnings and edge_ich log warnings (nothing reaches stderr) while the block runs."""
    handler = _Collector()
    ours = logging.getLogger("edge_ich")
    old_propagate = ours.propagate
    ours.addHandler(handler)
    ours.propagate = False
    # libraries without a handler of their own (highdicom) would reach logging's last resort, which
    # prints to stderr (highdicom quotes the patient's name there): the root collects them instead
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield Notices(caught, handler)
    finally:
        ours.removeHandler(handler)
        root.removeHandler(handler)
        ours.propagate = old_propagate


def _origin(filename: str) -> str:
    """The package a warning came from (pydicom, highdicom, ...), not a path."""
    parts = re.split(r"[\\/]", filename)
    for marker in ("site-packages", "dist-packages"):
        if marker in parts:
            i = parts.index(marker)
            return parts[i + 1] if i + 1 < len(parts) else "unknown"
    return parts[-2] if len(parts) > 1 else "unknown"

"""The watch folder: files dropped into a folder are spooled like received instances."""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger("edge_ich.serve")


def watch_folder(
    root: Path,
    quiet_seconds: float,
    stop: threading.Event,
    seq: itertools.count[int],
    load_file: Callable[..., str | None],
    on_assoc_end: Callable[[int, bool], None],
) -> None:
    """Poll the watch folder until `stop`; files unchanged for the quiet period are spooled, then removed."""
    root.mkdir(parents=True, exist_ok=True)
    rejected = root / ".rejected"
    seen: dict[Path, tuple[int, int, float]] = {}
    period = min(1.0, max(0.05, quiet_seconds / 4))
    while not stop.wait(period):
        now = time.time()
        current: dict[Path, tuple[int, int, float]] = {}
        for p in root.rglob("*"):
            if any(part.startswith(".") for part in p.relative_to(root).parts) or not p.is_file():
                continue
            try:
                stt = p.stat()
            except OSError:
                continue
            sig = (stt.st_size, stt.st_mtime_ns)
            old = seen.get(p)
            current[p] = (sig[0], sig[1], old[2] if old and old[:2] == sig else now)
        seen = current
        key = -(next(seq) + 1)  # one pseudo-association per poll: no series completes mid-poll
        for p, (_, mtime_ns, since) in list(seen.items()):
            if now - since < quiet_seconds or now - mtime_ns / 1e9 < quiet_seconds:
                continue
            age = max(0.0, now - mtime_ns / 1e9)
            try:
                why = load_file(p, key, time.perf_counter() - age, data=p.read_bytes())
            except OSError as exc:
                why = f"cannot be spooled: {exc.strerror or exc}"
            if why is None:
                p.unlink(missing_ok=True)
            else:
                rejected.mkdir(exist_ok=True)
                p.replace(rejected / p.name)
                log.warning("watch folder: a file moved to .rejected/ (%s)", why)  # file names may identify a patient
            seen.pop(p, None)
        on_assoc_end(key, False)

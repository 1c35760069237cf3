"""What `edge-ich serve` is asked to do (ServeOptions) and the small helpers around it."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge_ich.errors import InputError

log = logging.getLogger("edge_ich.serve")


@dataclass
class ServeOptions:
    """What `edge-ich serve` was asked to do (the CLI fills the first eleven)."""

    port: int = 11112
    host: str = "127.0.0.1"
    ae_title: str = "EDGE-ICH"
    allow_ae: str | None = None
    spool: Path = Path("edge-ich-spool")
    out: Path = Path("edge-ich-out")
    send_to: str | None = None
    quiet_seconds: float = 5.0
    # after the release of the one association that carried a series, wait this long for another one
    # carrying more of it before the answer is published (staging runs meanwhile)
    release_grace_s: float = 0.5
    watch: Path | None = None
    model: Path | None = None
    backend: str = "auto"
    threads: int | None = None
    batch: int = 4
    finish_workers: int = 2
    max_associations: int = 16
    max_pdu: int = 262_144
    max_instance_mb: float = 256.0
    keep_done_s: float = 600.0
    retry_base_s: float = 1.0
    retry_cap_s: float = 300.0

    def allowed_aes(self) -> list[str] | None:
        if not self.allow_ae:
            return None
        aes = [a.strip() for a in self.allow_ae.split(",") if a.strip()]
        bad = [a for a in aes if len(a) > 16 or "\\" in a]
        if bad or not aes:
            raise InputError("--allow-ae takes comma-separated AE titles of at most 16 characters")
        return aes

    def validate(self) -> None:
        if not 0 < len(self.ae_title.strip()) <= 16 or "\\" in self.ae_title:
            raise InputError("--ae-title must be 1 to 16 characters")
        if self.quiet_seconds < 0:
            raise InputError("--quiet-seconds must not be negative")
        self.allowed_aes()
        if self.send_to:
            from edge_ich.serve.net import Destination

            Destination.parse(self.send_to)


def write_serve_record(path: Path, record: dict[str, Any]) -> None:
    """serve.json beside the outputs: how the series arrived and how long the answer took."""
    from edge_ich.outputs.atomic import write_text_atomic

    write_text_atomic(path, json.dumps(record, indent=2) + "\n")


def wait_for_port(host: str, port: int, timeout_s: float = 30.0) -> bool:
    """True once something accepts TCP connections on host:port (for scripts and tests)."""
    import socket

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.1)
    return False


__all__ = ["ServeOptions", "wait_for_port", "write_serve_record"]

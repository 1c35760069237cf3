"""`edge-ich serve`: the point-of-care receiver.

Series arrive over DICOM C-STORE (or are dropped into a watch folder). Each instance is spooled
and fsynced before success is answered; slices are inferred as they arrive; a series is complete
once no association that sent to it is open and no instance came for `quiet_seconds`. Then the
outputs of `edge-ich run` are written to OUT/<SeriesInstanceUID>/ and, with `send_to`, the SEG is
sent back by C-STORE (retried with backoff, kept in the spool until delivered). A restart picks
up whatever the spool holds. One log line per series; UIDs are hashed, patient data never logged.
"""

from __future__ import annotations

import json
import logging
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge_ich.errors import EdgeIchError, InputError

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
            from edge_ich.dicom.net import Destination

            Destination.parse(self.send_to)


def setup_logging() -> None:
    """One plain line per event on stderr (no patient data ever reaches these messages)."""
    root = logging.getLogger("edge_ich")
    if not root.handlers:
        h = logging.StreamHandler(sys.stderr)
        h.setFormatter(logging.Formatter("%(asctime)s edge-ich serve: %(message)s"))
        root.addHandler(h)
    root.setLevel(logging.INFO)
    root.propagate = False
    # pydicom's value warnings quote the offending value, which may be a patient's name: keep them out
    import warnings

    warnings.filterwarnings("ignore", module=r"pydicom(\..*)?$")
    logging.getLogger("pydicom").setLevel(logging.CRITICAL)


def serve_forever(opts: ServeOptions) -> None:
    """Run the receiver until SIGTERM or SIGINT, then shut down gracefully."""
    from edge_ich.serve_server import Server

    opts.validate()
    setup_logging()
    server = Server(opts)
    stop = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        log.info("signal %d: shutting down (in-flight work finishes or stays in the spool)", signum)
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        server.start()
        while not stop.wait(0.5):
            if server.failed is not None:
                raise server.failed
    finally:
        server.stop()
        for s, h in previous.items():
            signal.signal(s, h)
    log.info("stopped")


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


__all__ = ["EdgeIchError", "ServeOptions", "serve_forever", "wait_for_port"]

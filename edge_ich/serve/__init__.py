"""`edge-ich serve`: the point-of-care receiver.

Series arrive over DICOM C-STORE (or are dropped into a watch folder). Each instance is spooled
and fsynced before success is answered; slices are inferred as they arrive; a series is complete
once no association that sent to it is open and no instance came for `quiet_seconds`. Then the
outputs of `edge-ich run` are written to OUT/<SeriesInstanceUID>/ and, with `send_to`, the SEG is
sent back by C-STORE (retried with backoff, kept in the spool until delivered). A restart picks
up whatever the spool holds. One log line per series; UIDs are hashed, patient data never logged.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from typing import Any

from edge_ich.serve.options import ServeOptions

log = logging.getLogger("edge_ich.serve")


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
    from edge_ich.serve.server import Server

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


__all__ = ["ServeOptions", "serve_forever", "setup_logging"]

"""Helpers for the receiver tests: dcmtk lookup, free ports, a server subprocess, waits.

Loopback only; every wait is bounded. dcmtk is looked up outside the virtual environment on
purpose: pynetdicom installs its own `storescu`/`echoscu` apps into .venv/bin.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
HOST = "127.0.0.1"


def dcmtk(tool: str) -> str | None:
    """Path of a dcmtk (or dicom3tools) program, never pynetdicom's namesake in the venv."""
    venv_bin = Path(sys.executable).resolve().parent
    for d in ("/usr/bin", "/usr/local/bin", "/opt/homebrew/bin"):
        p = Path(d) / tool
        if p.is_file() and os.access(p, os.X_OK) and p.resolve().parent != venv_bin:
            return str(p)
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout_s: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((HOST, port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.1)
    return False


class ServerProc:
    """`python -m edge_ich serve ...` in a subprocess, its stderr captured to a file."""

    def __init__(
        self,
        tmp: Path,
        model: Path,
        *,
        spool: Path | None = None,
        out: Path | None = None,
        quiet: float = 0.3,
        extra: list[str] | None = None,
        port: int | None = None,
        name: str = "server",
    ) -> None:
        self.port = port or free_port()
        self.spool = spool or tmp / "spool"
        self.out = out or tmp / "out"
        self.log_path = tmp / f"{name}.log"
        self.args = [
            sys.executable,
            "-m",
            "edge_ich",
            "serve",
            "--port",
            str(self.port),
            "--spool",
            str(self.spool),
            "--out",
            str(self.out),
            "--model",
            str(model),
            "--quiet-seconds",
            str(quiet),
            *(extra or []),
        ]
        self.proc: subprocess.Popen | None = None

    def start(self) -> ServerProc:
        env = dict(os.environ, OMP_NUM_THREADS="1")
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.args, cwd=REPO, stdout=self._log, stderr=subprocess.STDOUT, env=env)
        if not wait_port(self.port):
            self.stop()
            raise RuntimeError(f"server did not start:\n{self.log()}")
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def kill(self) -> None:
        """SIGKILL: the crash case."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=30)
        self._log.close()

    def stop(self, timeout_s: float = 60.0) -> int | None:
        """SIGTERM and wait: the graceful case; returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=30)
        self._log.close()
        return self.proc.returncode

    def __enter__(self) -> ServerProc:
        # `with ServerProc(...).start() as s:` is started already: starting again would leak a server
        return self if self.proc is not None else self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def wait_for(pred, timeout_s: float = 60.0, step: float = 0.1):  # type: ignore[no-untyped-def]
    """Poll pred() until it returns something truthy or the time runs out (then return the last value)."""
    deadline = time.monotonic() + timeout_s
    value = pred()
    while not value and time.monotonic() < deadline:
        time.sleep(step)
        value = pred()
    return value


def wait_result(out: Path, series_uid: str, slices: int | None = None, timeout_s: float = 90.0) -> dict | None:
    """The series' serve.json once written (and with `slices` slices when given)."""
    path = Path(out) / series_uid / "serve.json"

    def ready() -> dict | None:
        try:
            rec = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        return rec if slices is None or rec.get("slices") == slices else None

    return wait_for(ready, timeout_s)


def storescu(
    port: int, files: list[Path], *args: str, aec: str = "EDGE-ICH", timeout_s: float = 120.0
) -> subprocess.CompletedProcess:
    exe = dcmtk("storescu")
    assert exe is not None
    return subprocess.run(
        [exe, "-aec", aec, *args, HOST, str(port), *map(str, files)], capture_output=True, text=True, timeout=timeout_s
    )


def echoscu(port: int, *args: str, aec: str = "EDGE-ICH") -> subprocess.CompletedProcess:
    exe = dcmtk("echoscu")
    assert exe is not None
    return subprocess.run([exe, "-aec", aec, *args, HOST, str(port)], capture_output=True, text=True, timeout=60)

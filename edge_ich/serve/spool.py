"""The receiver's spool: every accepted instance lies here, fsynced, until its series is done.

Layout under the spool root:
    series/<SeriesInstanceUID>/<SOPInstanceUID>.dcm   received instances (DICOM file format)
    done/<SeriesInstanceUID>/                          instances of answered series, kept a while so a
                                                       late slice re-answers the whole series
    failed/<SeriesInstanceUID>/                        series that could not be processed (kept)
    outbox/<name>.dcm + <name>.json                    SEGs waiting for delivery, with attempt state

UIDs name files only after `is_valid_uid` accepted them, so a hostile UID cannot walk out of
the spool. Writes go through a temp file, fsync and rename, then the folder is fsynced, so a
success status is only returned for an instance that survives a power cut.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from edge_ich.errors import OutputError
from edge_ich.outputs.atomic import atomic_path, write_text_atomic

_UID_RE = re.compile(r"^[0-9]+(\.[0-9]+)*$")
MAX_UID_LEN = 64
INSTANCE_SUFFIX = ".dcm"


def is_valid_uid(uid: object) -> bool:
    """A DICOM UID: digits and dots only, no empty component, at most 64 characters."""
    return isinstance(uid, str) and 0 < len(uid) <= MAX_UID_LEN and _UID_RE.match(uid) is not None


def uid_hash(uid: str) -> str:
    """Short stable hash of a UID for log lines (UIDs can be linked to a patient)."""
    return hashlib.sha256(uid.encode()).hexdigest()[:12]


def fsync_dir(path: Path) -> None:
    """Make a rename or a new entry in `path` durable."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover - some filesystems refuse fsync on folders
        pass
    finally:
        os.close(fd)


@dataclass
class OutboxEntry:
    """One SEG waiting to be sent, with its retry state (kept beside it as JSON)."""

    name: str
    path: Path
    attempts: int = 0
    next_try: float = 0.0
    last_error: str = ""

    def state_path(self) -> Path:
        return self.path.with_suffix(".json")

    def save(self) -> None:
        d = {"attempts": self.attempts, "next_try": self.next_try, "last_error": self.last_error}
        write_text_atomic(self.state_path(), json.dumps(d) + "\n")


class Spool:
    """The on-disk spool; safe to share between threads (each call touches its own files)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.series_root = self.root / "series"
        self.outbox_root = self.root / "outbox"
        self.done_root = self.root / "done"
        self.failed_root = self.root / "failed"
        try:
            for d in (self.series_root, self.outbox_root, self.done_root, self.failed_root):
                d.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"cannot create the spool at {self.root}: {exc.strerror or exc}") from None
        self._clean_temp_files()

    def _clean_temp_files(self) -> None:
        """Remove temp files a killed process left behind (never complete instances)."""
        for tmp in list(self.series_root.glob("*/.*.tmp")) + list(self.outbox_root.glob(".*.tmp")):
            try:
                tmp.unlink()
            except OSError:
                pass

    def series_dir(self, series_uid: str) -> Path:
        if not is_valid_uid(series_uid):
            raise ValueError("invalid SeriesInstanceUID")
        return self.series_root / series_uid

    def instance_path(self, series_uid: str, sop_uid: str) -> Path:
        if not is_valid_uid(sop_uid):
            raise ValueError("invalid SOPInstanceUID")
        return self.series_dir(series_uid) / f"{sop_uid}{INSTANCE_SUFFIX}"

    def store_instance(self, series_uid: str, sop_uid: str, data: bytes) -> tuple[Path, bool]:
        """Write one instance durably; returns (path, False) when it was already spooled."""
        final = self.instance_path(series_uid, sop_uid)
        if final.exists():
            return final, False
        folder = final.parent
        if not folder.is_dir():
            folder.mkdir(parents=True, exist_ok=True)
            fsync_dir(self.series_root)
        with atomic_path(final) as tmp:
            tmp.write_bytes(data)
        fsync_dir(folder)
        return final, True

    def pending_series(self) -> dict[str, list[Path]]:
        """Series left in the spool (by a restart or a failed completion) -> their instance files."""
        out: dict[str, list[Path]] = {}
        for d in sorted(self.series_root.iterdir()):
            if d.is_dir() and is_valid_uid(d.name):
                files = sorted(p for p in d.glob(f"*{INSTANCE_SUFFIX}") if not p.name.startswith("."))
                if files:
                    out[d.name] = files
        return out

    def series_files(self, series_uid: str) -> list[Path]:
        d = self.series_dir(series_uid)
        return sorted(p for p in d.glob(f"*{INSTANCE_SUFFIX}") if not p.name.startswith(".")) if d.is_dir() else []

    def done_files(self, series_uid: str) -> list[Path]:
        """Instances of an earlier answer to this series still kept in done/."""
        d = self.done_root / self.series_dir(series_uid).name
        return sorted(p for p in d.glob(f"*{INSTANCE_SUFFIX}") if not p.name.startswith(".")) if d.is_dir() else []

    def _move(self, series_uid: str, files: list[Path], dest_root: Path) -> Path:
        """Move the given instances of a series into dest_root/<uid>/ (renames, same filesystem)."""
        src = self.series_dir(series_uid)
        dest = dest_root / src.name
        dest.mkdir(parents=True, exist_ok=True)
        for p in files:
            if p.parent == src and p.exists():
                os.replace(p, dest / p.name)
        os.utime(dest)
        fsync_dir(dest)
        try:
            src.rmdir()  # only when nothing arrived meanwhile
        except OSError:
            pass
        fsync_dir(self.series_root)
        return dest

    def mark_done(self, series_uid: str, files: list[Path]) -> Path:
        return self._move(series_uid, files, self.done_root)

    def mark_failed(self, series_uid: str, files: list[Path]) -> Path:
        return self._move(series_uid, files, self.failed_root)

    def prune_done(self, keep_s: float) -> int:
        """Forget answered series older than keep_s seconds; returns how many were removed."""
        now = time.time()
        removed = 0
        for d in self.done_root.iterdir():
            try:
                if d.is_dir() and now - d.stat().st_mtime > keep_s:
                    shutil.rmtree(d, ignore_errors=True)
                    removed += 1
            except OSError:
                continue
        return removed

    # -- outbox -------------------------------------------------------------------------
    def enqueue_outgoing(self, name: str, src: Path) -> OutboxEntry:
        """Copy a file to send into the outbox (durably) and return its entry."""
        if not re.match(r"^[A-Za-z0-9._-]{1,100}$", name) or name.startswith("."):
            raise ValueError("invalid outbox name")
        final = self.outbox_root / f"{name}.dcm"
        with atomic_path(final) as tmp:
            shutil.copyfile(src, tmp)
        entry = OutboxEntry(name=name, path=final)
        entry.save()
        fsync_dir(self.outbox_root)
        return entry

    def outbox(self) -> list[OutboxEntry]:
        """Every SEG not yet delivered, with its saved attempt state."""
        entries = []
        for p in sorted(self.outbox_root.glob("*.dcm")):
            if p.name.startswith("."):
                continue
            e = OutboxEntry(name=p.stem, path=p)
            try:
                d = json.loads(e.state_path().read_text())
                e.attempts, e.next_try, e.last_error = int(d["attempts"]), float(d["next_try"]), str(d["last_error"])
            except (OSError, ValueError, KeyError, TypeError):
                pass
            entries.append(e)
        return entries

    def delivered(self, entry: OutboxEntry) -> None:
        entry.path.unlink(missing_ok=True)
        entry.state_path().unlink(missing_ok=True)
        fsync_dir(self.outbox_root)

    def failed_attempt(self, entry: OutboxEntry, error: str, base_s: float = 1.0, cap_s: float = 300.0) -> None:
        """Record a failed send and push the next try out exponentially (base * 2^n, capped)."""
        entry.attempts += 1
        entry.last_error = error[:200]
        entry.next_try = time.time() + min(cap_s, base_s * 2 ** (entry.attempts - 1))
        entry.save()

"""DICOM networking on pynetdicom: the C-STORE/C-ECHO receiver and the SEG sender.

The receiver validates each instance before a UID names a file, writes it to the spool and
fsyncs it, and only then answers success. Refusals use the standard statuses:
- calling AE not allowed: association rejected (permanent, service user, calling AE not recognised);
- a SOP class we do not handle (MR, ...): its presentation context is rejected (abstract syntax not supported);
- a dataset that cannot be decoded: 0xC210; one whose content does not fit (wrong modality, SOP class
  or instance UID mismatch, invalid UID, no pixels): 0xA900; too large or spool full: 0xA700.
pynetdicom is imported inside the functions (it is a heavy import).
"""

from __future__ import annotations

import enum
import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge_ich.errors import EdgeIchError, InputError, require
from edge_ich.serve.spool import OutboxEntry, Spool, is_valid_uid, uid_hash

log = logging.getLogger("edge_ich.serve")

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
ENHANCED_CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2.1"
SEGMENTATION_STORAGE = "1.2.840.10008.5.1.4.1.1.66.4"
VERIFICATION = "1.2.840.10008.1.1"
STORAGE_CLASSES = (CT_IMAGE_STORAGE, ENHANCED_CT_IMAGE_STORAGE)

#: Transfer syntaxes the receiver accepts, when pydicom can decode them here.
ACCEPTED_TRANSFER_SYNTAXES = (
    "1.2.840.10008.1.2.1",  # Explicit VR Little Endian
    "1.2.840.10008.1.2",  # Implicit VR Little Endian
    "1.2.840.10008.1.2.1.99",  # Deflated Explicit VR Little Endian
    "1.2.840.10008.1.2.4.90",  # JPEG 2000 lossless
    "1.2.840.10008.1.2.4.91",  # JPEG 2000
    "1.2.840.10008.1.2.4.80",  # JPEG-LS lossless
    "1.2.840.10008.1.2.4.81",  # JPEG-LS near-lossless
    "1.2.840.10008.1.2.4.70",  # JPEG lossless, first-order prediction
    "1.2.840.10008.1.2.4.57",  # JPEG lossless
    "1.2.840.10008.1.2.4.51",  # JPEG extended (12 bit)
    "1.2.840.10008.1.2.5",  # RLE lossless
    "1.2.840.10008.1.2.4.201",  # HTJ2K lossless
    "1.2.840.10008.1.2.4.202",  # HTJ2K lossless RPCL
    "1.2.840.10008.1.2.4.203",  # HTJ2K
)


class StoreStatus(enum.IntEnum):
    """C-STORE response statuses the receiver answers with (PS3.4 B.2.3 and pynetdicom's C2xx)."""

    SUCCESS = 0x0000
    SOP_CLASS_NOT_SUPPORTED = 0x0122
    OUT_OF_RESOURCES = 0xA700
    DATASET_MISMATCH = 0xA900
    CANNOT_DECODE = 0xC210


def is_success(status: int) -> bool:
    """Success or warning: the peer kept the instance."""
    return status == 0x0000 or status == 0x0001 or 0xB000 <= status <= 0xBFFF


def decodable_transfer_syntaxes() -> list[str]:
    """The accepted transfer syntaxes whose pixel decoders are installed."""
    from pydicom.pixels.decoders.base import get_decoder
    from pydicom.uid import UID

    out = []
    for ts in ACCEPTED_TRANSFER_SYNTAXES:
        try:
            if get_decoder(UID(ts)).is_available:
                out.append(ts)
        except (NotImplementedError, ValueError):
            continue
    return out


@dataclass(frozen=True)
class Destination:
    """Where SEGs go: AE title, host and port (from `AE@HOST:PORT`)."""

    ae_title: str
    host: str
    port: int

    @classmethod
    def parse(cls, text: str) -> Destination:
        m = re.fullmatch(r"([^@\s\\]{1,16})@([A-Za-z0-9.\-:\[\]]+):([0-9]{1,5})", text.strip())
        if not m or not 0 < int(m.group(3)) < 65536:
            raise InputError(f"--send-to must look like AE@HOST:PORT (got {text!r})")
        return cls(m.group(1), m.group(2).strip("[]"), int(m.group(3)))

    def __str__(self) -> str:
        return f"{self.ae_title}@{self.host}:{self.port}"


@dataclass
class ReceivedInstance:
    """An instance that is safely in the spool (what the receiver hands to the series logic)."""

    series_uid: str
    sop_uid: str
    sop_class_uid: str
    path: Path
    assoc_key: int | None
    received: float  # time.monotonic() when it was spooled
    dataset: Any = None  # the decoded pydicom Dataset (header; pixels not decoded)
    prepared: Any = None  # what the `decode` hook returned (the prepared slice), if any
    duplicate: bool = False


@dataclass
class ScpConfig:
    """Receiver settings; the limits are deliberately finite."""

    ae_title: str = "EDGE-ICH"
    host: str = "127.0.0.1"
    port: int = 11112
    allow_ae: list[str] | None = None
    max_pdu: int = 262_144
    max_associations: int = 16
    max_instance_bytes: int = 256 * 1024 * 1024
    network_timeout_s: float = 60.0
    dimse_timeout_s: float = 30.0
    acse_timeout_s: float = 30.0
    accept_transfer_syntaxes: list[str] = field(default_factory=list)


def check_instance(ds: Any, req_class: str, req_instance: str) -> str | None:
    """Why an instance does not fit what we receive, or None when it does (never patient data)."""
    sop_class = str(ds.get("SOPClassUID", ""))
    sop_uid = str(ds.get("SOPInstanceUID", ""))
    series = str(ds.get("SeriesInstanceUID", ""))
    if sop_class != str(req_class):
        return "SOP Class UID in the dataset differs from the request"
    if sop_class not in STORAGE_CLASSES:
        return "SOP class is not CT"
    if not is_valid_uid(sop_uid) or not is_valid_uid(series):
        return "invalid SOP Instance or Series Instance UID"
    if sop_uid != str(req_instance):
        return "SOP Instance UID in the dataset differs from the request"
    if str(ds.get("Modality", "")).upper() != "CT":
        return "Modality is not CT"
    from edge_ich.sources.dicom import elements

    bad = elements.first_critical_problem(ds)  # presence, multiplicity, range: one place for every reader
    if bad is not None:
        return str(bad)
    if "PixelData" not in ds or not elements.first(ds, "Rows") or not elements.first(ds, "Columns"):
        return "no pixel data"
    if sop_class == CT_IMAGE_STORAGE and any(
        elements.values(ds, k) is None for k in ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing")
    ):
        return "no image plane (position, orientation, spacing)"
    return None


class StoreSCP:
    """C-STORE (CT, enhanced CT) and C-ECHO receiver that spools before it answers."""

    def __init__(
        self,
        config: ScpConfig,
        spool: Spool,
        on_instance: Callable[[ReceivedInstance], None],
        on_assoc_end: Callable[[int, bool], None] | None = None,
        decode: Callable[[Any], Any] | None = None,
    ) -> None:
        self.config = config
        self.decode = decode
        self.spool = spool
        self.on_instance = on_instance
        self.on_assoc_end = on_assoc_end
        self._server: Any = None
        self._ae: Any = None
        self.counts: dict[str, int] = {"stored": 0, "duplicate": 0, "refused": 0}
        self._lock = threading.Lock()
        self._released: set[int] = set()  # associations the peer released (A-RELEASE), until closed

    def _count(self, key: str) -> None:
        with self._lock:
            self.counts[key] = self.counts.get(key, 0) + 1

    def make_ae(self) -> Any:
        pynetdicom = require("pynetdicom")
        from pynetdicom import _config as pnd_config

        pnd_config.LOG_HANDLER_LEVEL = "none"
        logging.getLogger("pynetdicom").setLevel(logging.WARNING)
        cfg = self.config
        ae = pynetdicom.AE(ae_title=cfg.ae_title)
        ae.maximum_pdu_size = cfg.max_pdu
        ae.maximum_associations = cfg.max_associations
        ae.network_timeout = cfg.network_timeout_s
        ae.dimse_timeout = cfg.dimse_timeout_s
        ae.acse_timeout = cfg.acse_timeout_s
        if cfg.allow_ae:
            ae.require_calling_aet = list(cfg.allow_ae)
        syntaxes = cfg.accept_transfer_syntaxes or decodable_transfer_syntaxes()
        for sop in STORAGE_CLASSES:
            ae.add_supported_context(sop, syntaxes)
        ae.add_supported_context(VERIFICATION)
        return ae

    def start(self) -> None:
        """Bind and serve in background threads (raises EdgeIchError if the port is taken)."""
        from pynetdicom import evt

        self._ae = self.make_ae()
        handlers = [
            (evt.EVT_C_STORE, self._handle_store),
            (evt.EVT_C_ECHO, lambda event: 0x0000),
            (evt.EVT_RELEASED, self._handle_released),
            (evt.EVT_CONN_CLOSE, self._handle_close),
            (evt.EVT_REJECTED, self._handle_rejected),
        ]
        try:
            self._server = self._ae.start_server(
                (self.config.host, self.config.port), block=False, evt_handlers=handlers
            )
        except OSError as exc:
            raise EdgeIchError(
                f"cannot listen on {self.config.host}:{self.config.port}: {exc.strerror or exc}"
            ) from None

    @property
    def port(self) -> int:
        return int(self._server.server_address[1]) if self._server is not None else self.config.port

    def active_associations(self) -> int:
        return len(self._server.active_associations) if self._server is not None else 0

    def stop(self, grace_s: float = 5.0) -> None:
        """Stop accepting; give open associations `grace_s` to finish, then close them."""
        if self._server is None:
            return
        deadline = time.monotonic() + grace_s
        # only associations that were established carry work (a bare TCP probe waits out its ARTIM timer)
        while any(a.is_established for a in self._server.active_associations) and time.monotonic() < deadline:
            time.sleep(0.05)
        self._server.shutdown()
        self._server = None

    def _handle_rejected(self, event: Any) -> None:
        log.warning("association from %s refused (calling AE not allowed)", event.assoc.requestor.address)

    def _handle_released(self, event: Any) -> None:
        with self._lock:
            self._released.add(id(event.assoc))

    def _handle_close(self, event: Any) -> None:
        """The connection closed: tell the server, and whether the peer released the association
        first (its completion signal) rather than aborting it or dropping the connection."""
        key = id(event.assoc)
        with self._lock:
            released = key in self._released or bool(getattr(event.assoc, "is_released", False))
            self._released.discard(key)
        if self.on_assoc_end is not None:
            self.on_assoc_end(key, released)

    def _refuse(self, status: StoreStatus, why: str) -> int:
        self._count("refused")
        log.warning("instance refused (0x%04X): %s", int(status), why)
        return int(status)

    def _handle_store(self, event: Any) -> int:
        req = event.request
        if str(req.AffectedSOPClassUID) not in STORAGE_CLASSES:
            return self._refuse(StoreStatus.SOP_CLASS_NOT_SUPPORTED, "SOP class not supported")
        try:
            data = event.encoded_dataset(include_meta=True)
        except Exception:  # the peer's bytes cannot be framed as a file
            return self._refuse(StoreStatus.CANNOT_DECODE, "dataset cannot be read")
        if len(data) > self.config.max_instance_bytes:
            return self._refuse(StoreStatus.OUT_OF_RESOURCES, f"instance of {len(data)} bytes exceeds the limit")
        try:
            ds = event.dataset
            ds.file_meta = event.file_meta
            why = check_instance(ds, req.AffectedSOPClassUID, req.AffectedSOPInstanceUID)
        except Exception:  # pydicom raises many kinds on a malformed stream
            return self._refuse(StoreStatus.CANNOT_DECODE, "dataset cannot be decoded")
        if why is not None:
            return self._refuse(StoreStatus.DATASET_MISMATCH, why)
        try:
            prepared = self.decode(ds) if self.decode is not None else None
        except EdgeIchError as exc:
            return self._refuse(StoreStatus.CANNOT_DECODE, str(exc))
        series, sop = str(ds.SeriesInstanceUID), str(ds.SOPInstanceUID)
        try:
            path, new = self.spool.store_instance(series, sop, data)
        except OSError as exc:
            return self._refuse(StoreStatus.OUT_OF_RESOURCES, f"spool write failed: {exc.strerror or exc}")
        self._count("stored" if new else "duplicate")
        self.on_instance(
            ReceivedInstance(
                series,
                sop,
                str(ds.SOPClassUID),
                path,
                id(event.assoc),
                time.monotonic(),
                dataset=ds,
                prepared=prepared,
                duplicate=not new,
            )
        )
        return int(StoreStatus.SUCCESS)


class SendFailed(EdgeIchError):
    """The peer could not be reached, refused the association, or did not answer."""


def send_instance(path: Path, dest: Destination, calling_ae: str = "EDGE-ICH", timeout_s: float = 30.0) -> int:
    """C-STORE one DICOM file to `dest`; return the response status (raises SendFailed without one)."""
    pynetdicom = require("pynetdicom")
    from pydicom import dcmread
    from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

    ds = dcmread(path)
    ts = str(ds.file_meta.TransferSyntaxUID)
    ae = pynetdicom.AE(ae_title=calling_ae)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = timeout_s
    ae.connection_timeout = timeout_s
    syntaxes = list(dict.fromkeys([ts, str(ExplicitVRLittleEndian), str(ImplicitVRLittleEndian)]))
    ae.add_requested_context(str(ds.SOPClassUID), syntaxes)
    assoc = ae.associate(dest.host, dest.port, ae_title=dest.ae_title)
    if not assoc.is_established:
        raise SendFailed(f"no association with {dest} (refused, aborted or unreachable)")
    try:
        status = assoc.send_c_store(ds)
    except (ValueError, RuntimeError) as exc:
        assoc.abort()
        raise SendFailed(f"{dest} accepted no context for the SEG: {exc}") from None
    if assoc.is_established:
        assoc.release()
    if not status or "Status" not in status:
        raise SendFailed(f"{dest} gave no C-STORE response (timeout or abort)")
    return int(status.Status)


class OutboxSender:
    """Delivers the outbox to one destination, retrying with exponential backoff until it is taken."""

    def __init__(
        self,
        spool: Spool,
        dest: Destination,
        calling_ae: str = "EDGE-ICH",
        base_s: float = 1.0,
        cap_s: float = 300.0,
        timeout_s: float = 30.0,
    ) -> None:
        self.spool, self.dest, self.calling_ae = spool, dest, calling_ae
        self.base_s, self.cap_s, self.timeout_s = base_s, cap_s, timeout_s
        self._wake = threading.Event()
        self.delivered = 0

    def wake(self) -> None:
        self._wake.set()

    def attempt(self, entry: OutboxEntry) -> bool:
        """One try at one entry; records the outcome in the spool."""
        try:
            status = send_instance(entry.path, self.dest, self.calling_ae, self.timeout_s)
            ok, why = is_success(status), f"status 0x{status:04X}"
        except SendFailed as exc:
            ok, why = False, str(exc)
        except (OSError, ValueError) as exc:
            ok, why = False, f"{type(exc).__name__}: {exc}"
        if ok:
            self.spool.delivered(entry)
            self.delivered += 1
            log.info("SEG of series %s delivered to %s", uid_hash(entry.name), self.dest)
            return True
        self.spool.failed_attempt(entry, why, self.base_s, self.cap_s)
        log.warning(
            "SEG of series %s not delivered to %s (attempt %d, %s); retrying later",
            uid_hash(entry.name),
            self.dest,
            entry.attempts,
            why,
        )
        return False

    def run(self, stop: threading.Event) -> None:
        """Loop until `stop`: send what is due, sleep until the next due time or a wake-up."""
        while not stop.is_set():
            self._wake.clear()
            now = time.time()
            wait = self.cap_s
            for entry in self.spool.outbox():
                if stop.is_set():
                    return
                if entry.next_try <= now:
                    if not self.attempt(entry):
                        wait = min(wait, max(0.05, entry.next_try - time.time()))
                else:
                    wait = min(wait, entry.next_try - now)
            self._wake.wait(timeout=max(0.05, wait))

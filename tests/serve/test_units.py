"""Receiver pieces in-process: UID checks, the durable spool, streaming inference that equals the
batch pipeline whatever the arrival order, and the SEG sender's retry until a peer takes it.
"""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from edge_ich.errors import InputError
from edge_ich.serve.net import Destination, OutboxSender, check_instance
from edge_ich.serve.spool import Spool, is_valid_uid
from tests.dicomkit import make_series


@pytest.mark.parametrize(
    "uid,ok",
    [
        ("1.2.840.10008.5.1.4.1.1.2", True),
        ("1", True),
        ("", False),
        ("../../etc/passwd", False),
        ("1.2..3", False),
        ("1.2.3.", False),
        ("1.2/3", False),
        ("1" * 65, False),
        ("1.2.3\x00", False),
        (None, False),
    ],
)
def test_uid_validation(uid, ok) -> None:
    assert is_valid_uid(uid) is ok


def test_spool_durable_dedup_and_traversal(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "sp")
    path, new = spool.store_instance("1.2.3", "1.2.3.4", b"abc")
    assert new and path.read_bytes() == b"abc" and path.parent.name == "1.2.3"
    again, new2 = spool.store_instance("1.2.3", "1.2.3.4", b"other")
    assert again == path and not new2 and path.read_bytes() == b"abc"
    with pytest.raises(ValueError):
        spool.store_instance("1.2.3", "../../x", b"evil")
    with pytest.raises(ValueError):
        spool.store_instance("../..", "1.2", b"evil")
    assert not list(tmp_path.rglob("x")) and not list(tmp_path.rglob("evil"))
    # a temp file left by a killed process is removed on the next start; complete instances stay
    (path.parent / ".1.2.3.5.dcm.abc.tmp").write_bytes(b"half")
    spool = Spool(tmp_path / "sp")
    assert spool.pending_series() == {"1.2.3": [path]}
    spool.mark_done("1.2.3", [path])
    assert spool.pending_series() == {} and [p.name for p in spool.done_files("1.2.3")] == ["1.2.3.4.dcm"]
    assert spool.prune_done(keep_s=3600) == 0 and spool.prune_done(keep_s=-1) == 1
    assert spool.done_files("1.2.3") == []


def test_outbox_backoff_grows(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "sp")
    f = tmp_path / "seg.dcm"
    f.write_bytes(b"x")
    entry = spool.enqueue_outgoing("1.2.3", f)
    waits = []
    for _ in range(4):
        before = time.time()
        spool.failed_attempt(entry, "down", base_s=1.0, cap_s=5.0)
        waits.append(round(entry.next_try - before))
    assert waits == [1, 2, 4, 5]
    (reloaded,) = spool.outbox()
    assert reloaded.attempts == 4 and reloaded.last_error == "down"


def test_destination_parse() -> None:
    d = Destination.parse("PACS@127.0.0.1:104")
    assert (d.ae_title, d.host, d.port) == ("PACS", "127.0.0.1", 104)
    for bad in ("PACS127.0.0.1:104", "PACS@host", "@h:1", "PACS@h:0", "WAYTOOLONGAETITLE17@h:1"):
        with pytest.raises(InputError):
            Destination.parse(bad)


def test_check_instance_reasons(tmp_path: Path) -> None:
    import pydicom

    ds = pydicom.dcmread(make_series(tmp_path, n=1, size=64)[0])
    assert check_instance(ds, ds.SOPClassUID, ds.SOPInstanceUID) is None
    assert check_instance(ds, ds.SOPClassUID, "1.2.3") is not None  # request and dataset disagree
    ds.Modality = "MR"
    assert "Modality" in check_instance(ds, ds.SOPClassUID, ds.SOPInstanceUID)
    ds.Modality = "CT"
    ds.ImageOrientationPatient = "1"  # single-valued: named, no traceback in the receiving thread
    assert "invalid ImageOrientationPatient" in check_instance(ds, ds.SOPClassUID, ds.SOPInstanceUID)
    del ds.ImageOrientationPatient
    assert "image plane" in check_instance(ds, ds.SOPClassUID, ds.SOPInstanceUID)


def _stream(files: list[Path], backend, order: list[int], batch: int = 4, thickness: str | None = None):  # type: ignore[no-untyped-def]
    """Feed slices in `order` as the receiver does, inferring whatever is ready after each arrival."""
    import pydicom

    from edge_ich.serve.series import SeriesState, SliceRec, StreamingInferer, expected_spacing, slice_position
    from edge_ich.sources.dicom.pixels import hu_from_dataset

    inf = StreamingInferer(backend, batch)
    st = SeriesState("1.2.3", time.perf_counter(), time.perf_counter())
    k = backend.card.context
    for i in order:
        ds = pydicom.dcmread(files[i])
        if thickness is not None:
            ds.SliceThickness = thickness
        pos, _ = slice_position(ds)
        st.expected_spacing = expected_spacing(ds)
        st.add(
            SliceRec(
                str(ds.SOPInstanceUID),
                files[i],
                pos,
                (int(ds.Rows), int(ds.Columns)),
                prepared=inf.prepare(hu_from_dataset(ds)),
            )
        )
        while work := [(st, r, c) for r, c in st.ready(k)][:batch]:
            inf.run_ready(work)
    return inf, st


@pytest.mark.parametrize("arrival", ["in_order", "shuffled", "reversed"])
def test_streaming_equals_batch_pipeline(tmp_path: Path, tiny_model: Path, arrival: str) -> None:
    from edge_ich.pipeline import segment
    from edge_ich.runner import load_model
    from edge_ich.sources.dicom.source import series_from_files

    files = make_series(tmp_path / "s", n=12, size=64, seed=5)  # returned in anatomical order
    order = list(range(12))
    if arrival == "shuffled":
        random.Random(3).shuffle(order)
    elif arrival == "reversed":
        order.reverse()
    model = load_model(tiny_model, "onnxrt", threads=1)
    try:
        src = series_from_files(files)
        ref = segment(src, model.backend, batch=4)
        inf, st = _stream(files, model.backend, order)
        seg, rerun = inf.complete(st, src, list(src.sop_instance_uids))
    finally:
        model.close()
    assert ref.mask.any()  # the tiny model finds something, so equality is not trivially zeros
    np.testing.assert_array_equal(seg.mask, ref.mask)
    np.testing.assert_allclose(seg.slice_prob, ref.slice_prob, rtol=1e-6)
    assert st.streamed >= 1
    if arrival != "shuffled":  # neighbours arrive next to each other: only the two clamped end slices wait
        assert rerun == 2 and st.streamed == 10


def test_gapped_series_still_streams(tmp_path: Path, tiny_model: Path) -> None:
    """1 mm slices every 5 mm: neighbours 5 mm apart are still adjacent, so slices are inferred on arrival."""
    from edge_ich.runner import load_model

    files = make_series(tmp_path / "s", n=8, size=64, seed=6, spacing=5.0)
    model = load_model(tiny_model, "onnxrt", threads=1)
    try:
        _, st = _stream(files, model.backend, list(range(8)), thickness="1.0")
    finally:
        model.close()
    assert st.streamed == 6


@pytest.mark.network
def test_sender_retries_until_peer_takes_it(tmp_path: Path) -> None:
    from pynetdicom import AE, evt

    from tests.serve.helpers import HOST, free_port

    spool = Spool(tmp_path / "sp")
    seg_file = make_series(tmp_path / "s", n=1, size=64)[0]
    spool.enqueue_outgoing("1.2.3", seg_file)
    port = free_port()
    sender = OutboxSender(spool, Destination("PACS", HOST, port), base_s=0.05, cap_s=0.2, timeout_s=5)
    stop = threading.Event()
    t = threading.Thread(target=sender.run, args=(stop,), daemon=True)
    t.start()
    try:
        deadline = time.monotonic() + 30
        while not spool.outbox()[0].attempts and time.monotonic() < deadline:  # nobody listens yet: it fails
            time.sleep(0.05)
        assert spool.outbox()[0].attempts >= 1 and spool.outbox()[0].last_error
        got: list[str] = []
        pacs = AE(ae_title="PACS")
        pacs.add_supported_context("1.2.840.10008.5.1.4.1.1.2")

        def on_store(event):  # type: ignore[no-untyped-def]
            got.append(str(event.dataset.SOPInstanceUID))
            return 0x0000

        server = pacs.start_server((HOST, port), block=False, evt_handlers=[(evt.EVT_C_STORE, on_store)])
        try:
            while spool.outbox() and time.monotonic() < deadline:
                time.sleep(0.05)
        finally:
            server.shutdown()
    finally:
        stop.set()
        sender.wake()
        t.join(timeout=30)
    assert spool.outbox() == [] and len(got) == 1 and sender.delivered == 1

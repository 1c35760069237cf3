"""`edge-ich serve` against dcmtk over loopback: echo, store (uncompressed and JPEG 2000), SEG sent
to a dcmtk storescp and validated by dciodvfy, refusals, small concurrent load, watch folder,
kill -9 mid-series and restart. The server runs as a subprocess with the tiny model.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
import warnings
from pathlib import Path

import pytest

from tests.dicomkit import PATIENT_ID, PATIENT_NAME, make_series
from tests.serve.helpers import HOST, ServerProc, dcmtk, echoscu, free_port, storescu, wait_for, wait_port, wait_result

pytestmark = [
    pytest.mark.network,
    pytest.mark.skipif(
        not all(dcmtk(t) for t in ("storescu", "echoscu", "storescp", "dciodvfy")), reason="needs dcmtk and dicom3tools"
    ),
]

ALLOWED = "STORESCU,ECHOSCU,EDGE-TEST"


def series_uid_of(path: Path) -> str:
    import pydicom

    return str(pydicom.dcmread(path, stop_before_pixels=True).SeriesInstanceUID)


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory, tiny_model: Path):
    """A dcmtk storescp (the PACS) and our server sending SEGs to it, allowing three AE titles, watching a folder."""
    tmp = tmp_path_factory.mktemp("serve")
    pacs_dir = tmp / "pacs"
    pacs_dir.mkdir()
    pacs_port = free_port()
    pacs_log = open(tmp / "pacs.log", "wb")
    pacs = subprocess.Popen(
        [dcmtk("storescp"), "-aet", "PACS", "-od", str(pacs_dir), str(pacs_port)],
        stdout=pacs_log,
        stderr=subprocess.STDOUT,
    )
    assert wait_port(pacs_port)
    watch = tmp / "watch"
    server = ServerProc(
        tmp,
        tiny_model,
        quiet=0.3,
        extra=["--allow-ae", ALLOWED, "--send-to", f"PACS@{HOST}:{pacs_port}", "--watch", str(watch)],
    )
    server.start()
    yield {"tmp": tmp, "server": server, "pacs_dir": pacs_dir, "watch": watch, "model": tiny_model}
    rc = server.stop()
    pacs.terminate()
    pacs.wait(timeout=30)
    pacs_log.close()
    assert rc == 0, server.log()


def test_echo(env) -> None:
    r = echoscu(env["server"].port)
    assert r.returncode == 0, r.stdout + r.stderr


def test_store_series_outputs_and_seg_to_pacs(env) -> None:
    files = make_series(env["tmp"] / "s40", n=40, size=64, seed=1)
    uid = series_uid_of(files[0])
    r = storescu(env["server"].port, files)
    assert r.returncode == 0, r.stdout + r.stderr
    rec = wait_result(env["server"].out, uid, slices=40)
    assert rec is not None, env["server"].log()
    assert rec["received"] == 40 and rec["duplicates"] == 0
    assert rec["inferred_while_receiving"] + rec["inferred_at_completion"] >= 40
    out = env["server"].out / uid
    report = json.loads((out / "report.json").read_text())
    assert report["input"]["shape"][0] == 40
    assert (out / "seg.dcm").is_file() and (out / "mask.nii.gz").is_file()
    # the same answer as `edge-ich run` on the files that were sent
    from edge_ich.runner import RunOptions, run

    ref = run(
        RunOptions(series=files[0].parent, model=env["model"], out=env["tmp"] / "run40", backend="onnxrt"),
        progress=False,
    ).report
    assert report["finding"] == ref["finding"]
    assert [(s["sop_instance_uid"], s["max_probability"], s["lesion_area_mm2"]) for s in report["slices"]] == [
        (s["sop_instance_uid"], s["max_probability"], s["lesion_area_mm2"]) for s in ref["slices"]
    ]
    # the SEG reached the PACS and is a valid Segmentation IOD
    segs = wait_for(lambda: [p for p in env["pacs_dir"].iterdir() if p.name.startswith("SG")], timeout_s=60)
    assert segs, env["server"].log()
    import pydicom

    seg = pydicom.dcmread(segs[0])
    assert seg.SOPClassUID == "1.2.840.10008.5.1.4.1.1.66.4" and seg.NumberOfFrames >= 1
    v = subprocess.run([dcmtk("dciodvfy"), str(segs[0])], capture_output=True, text=True)
    assert v.returncode == 0, v.stdout + v.stderr
    # the outbox is empty once delivered; log: one line for the series, hashed UID, no patient data
    assert wait_for(
        lambda: not list((env["server"].spool / "outbox").glob("*.dcm")) and "40 slices" in env["server"].log(),
        timeout_s=30,
    )
    log = env["server"].log()
    assert "40 slices" in log and uid not in log
    assert PATIENT_NAME not in log and PATIENT_ID not in log


def test_duplicates_are_acknowledged_and_ignored(env) -> None:
    files = make_series(env["tmp"] / "dup", n=8, size=64, seed=3)
    uid = series_uid_of(files[0])
    r = storescu(env["server"].port, files + files[:5])  # five slices sent twice in one association
    assert r.returncode == 0, r.stdout + r.stderr
    rec = wait_result(env["server"].out, uid, slices=8)
    assert rec is not None, env["server"].log()
    assert (rec["received"], rec["duplicates"]) == (8, 5)


def test_store_jpeg2000_series(env) -> None:
    files = make_series(env["tmp"] / "j2k", n=40, size=64, seed=2, transfer_syntax="1.2.840.10008.1.2.4.90")
    uid = series_uid_of(files[0])
    r = storescu(env["server"].port, files, "-xv")
    assert r.returncode == 0, r.stdout + r.stderr
    rec = wait_result(env["server"].out, uid, slices=40)
    assert rec is not None, env["server"].log()
    report = json.loads((env["server"].out / uid / "report.json").read_text())
    assert "1.2.840.10008.1.2.4.90" in report["input"]["transfer_syntaxes"]


@pytest.mark.parametrize("syntax", ["1.2.840.10008.1.2.5", "1.2.840.10008.1.2.4.80"], ids=["rle", "jpeg-ls"])
def test_store_rle_and_jpeg_ls(env, tmp_path: Path, syntax: str) -> None:
    import pydicom
    from pynetdicom import AE

    files = make_series(tmp_path, n=6, size=64, seed=50, transfer_syntax=syntax)
    uid = series_uid_of(files[0])
    ae = AE(ae_title="EDGE-TEST")
    ae.add_requested_context("1.2.840.10008.5.1.4.1.1.2", syntax)
    assoc = ae.associate(HOST, env["server"].port, ae_title="EDGE-ICH")
    assert assoc.is_established and str(assoc.accepted_contexts[0].transfer_syntax[0]) == syntax
    assert [assoc.send_c_store(pydicom.dcmread(p)).Status for p in files] == [0] * 6
    assoc.release()
    rec = wait_result(env["server"].out, uid, slices=6)
    assert rec is not None, env["server"].log()
    report = json.loads((env["server"].out / uid / "report.json").read_text())
    assert report["input"]["transfer_syntaxes"] == [syntax]


def test_refusals_keep_serving(env, tmp_path: Path) -> None:
    import pydicom
    from pydicom.data import get_testdata_file
    from pydicom.uid import ExplicitVRLittleEndian
    from pynetdicom import AE, _config

    port = env["server"].port
    # 1. calling AE title not allowed: association rejected (permanent, service user, calling AE not recognised)
    r = echoscu(port, "-aet", "INTRUDER")
    assert r.returncode != 0
    intruder = AE(ae_title="INTRUDER")
    intruder.add_requested_context("1.2.840.10008.1.1")
    assoc = intruder.associate(HOST, port, ae_title="EDGE-ICH")
    assert assoc.is_rejected
    rj = assoc.acceptor.primitive
    assert (rj.result, rj.result_source, rj.diagnostic) == (0x01, 0x01, 0x03)

    # 2. an MR image: its presentation context is refused (abstract syntax not supported) ...
    ae = AE(ae_title="EDGE-TEST")
    ae.add_requested_context("1.2.840.10008.5.1.4.1.1.4", ExplicitVRLittleEndian)  # MR Image Storage
    ae.add_requested_context("1.2.840.10008.5.1.4.1.1.2", ExplicitVRLittleEndian)  # CT Image Storage
    assoc = ae.associate(HOST, port, ae_title="EDGE-ICH")
    assert assoc.is_established
    rejected = {str(c.abstract_syntax): c.result for c in assoc.rejected_contexts}
    assert rejected == {"1.2.840.10008.5.1.4.1.1.4": 0x03}
    with pytest.raises(ValueError):
        assoc.send_c_store(pydicom.dcmread(get_testdata_file("MR_small.dcm")))
    # ... and dcmtk's storescu cannot send it either
    r = storescu(port, [Path(get_testdata_file("MR_small.dcm"))])
    assert r.returncode != 0

    # 3. a CT-class dataset that says Modality MR: 0xA900
    mr_as_ct = make_series(tmp_path / "mrct", n=1, size=64, modality="MR")[0]
    assert assoc.send_c_store(pydicom.dcmread(mr_as_ct)).Status == 0xA900

    # 4. a path-traversal SOP Instance UID: 0xA900, and nothing is written outside the spool
    ds = pydicom.dcmread(make_series(tmp_path / "trav", n=1, size=64)[0])
    with warnings.catch_warnings():  # pydicom and pynetdicom rightly warn about the invalid UID
        warnings.simplefilter("ignore")
        ds.SOPInstanceUID = "../../../../escaped"
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        assert assoc.send_c_store(ds).Status == 0xA900
    assert not list(env["tmp"].parent.rglob("escaped*"))

    # 5. malformed datasets: a body that cannot be parsed, and one whose pixel data are cut short: 0xC210
    good = make_series(tmp_path / "bad", n=1, size=64)[0]
    meta_end = _file_meta_length(good)
    raw = good.read_bytes()
    garbage = tmp_path / "garbage.dcm"
    garbage.write_bytes(raw[:meta_end] + b"\x08\x00\x16\x00ZZ\x04\x00abcd" + b"\x01" * 64)
    truncated = tmp_path / "truncated.dcm"
    truncated.write_bytes(raw[: len(raw) - 4000])
    old = _config.STORE_SEND_CHUNKED_DATASET
    _config.STORE_SEND_CHUNKED_DATASET = True  # send the file's bytes as they are
    try:
        statuses = [assoc.send_c_store(p).Status for p in (garbage, truncated)]
    finally:
        _config.STORE_SEND_CHUNKED_DATASET = old
    assert statuses == [0xC210, 0xC210]
    assoc.release()

    # still serving
    assert env["server"].proc.poll() is None
    assert echoscu(port).returncode == 0
    assert "refused" in env["server"].log()


def test_enhanced_ct_is_received_and_its_series_set_aside(env) -> None:
    """Enhanced CT is accepted and spooled; the series reader does not read multi-frame CT, so it is set aside with a reason."""
    import pydicom
    from pydicom.data import get_testdata_file
    from pynetdicom import AE

    ds = pydicom.dcmread(get_testdata_file("eCT_Supplemental.dcm"))
    ae = AE(ae_title="EDGE-TEST")
    ae.add_requested_context("1.2.840.10008.5.1.4.1.1.2.1", str(ds.file_meta.TransferSyntaxUID))
    assoc = ae.associate(HOST, env["server"].port, ae_title="EDGE-ICH")
    assert assoc.is_established
    assert assoc.send_c_store(ds).Status == 0x0000
    assoc.release()
    failed = env["server"].spool / "failed" / str(ds.SeriesInstanceUID)

    # the files move to failed/ a moment before the log line is written: wait for both
    def set_aside() -> bool:
        return bool(list(failed.glob("*.dcm"))) and "not processed" in env["server"].log()

    assert wait_for(set_aside, timeout_s=60), env["server"].log()
    assert env["server"].proc.poll() is None


def _file_meta_length(path: Path) -> int:
    """Bytes of preamble + prefix + file meta group of a Part 10 file."""
    from pynetdicom.dsutils import split_dataset

    _, offset = split_dataset(path)
    return int(offset)


def test_concurrent_associations_lose_nothing(env) -> None:
    series = [make_series(env["tmp"] / f"load{i}", n=20, size=64, seed=10 + i) for i in range(3)]
    results: list[subprocess.CompletedProcess] = []
    threads = [threading.Thread(target=lambda f=f: results.append(storescu(env["server"].port, f))) for f in series]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=180)
    assert [r.returncode for r in results] == [0, 0, 0]
    for files in series:
        rec = wait_result(env["server"].out, series_uid_of(files[0]), slices=20)
        assert rec is not None and rec["received"] == 20, env["server"].log()


def test_watch_folder(env) -> None:
    src = make_series(env["tmp"] / "w", n=10, size=64, seed=20)
    uid = series_uid_of(src[0])
    drop = env["watch"] / "exam1"
    drop.mkdir(parents=True)
    for p in src:
        shutil.copy2(p, drop / p.name)
    (drop / "notes.txt").write_text("not DICOM")
    rec = wait_result(env["server"].out, uid, slices=10)
    assert rec is not None, env["server"].log()
    assert wait_for(lambda: not [p for p in drop.iterdir() if p.is_file()], timeout_s=30)
    assert (env["watch"] / ".rejected" / "notes.txt").is_file()


def test_killed_mid_series_then_restarted_completes(tmp_path: Path, tiny_model: Path) -> None:
    import pydicom
    from pynetdicom import AE

    files = make_series(tmp_path / "s", n=40, size=64, seed=30)
    uid = series_uid_of(files[0])
    datasets = [pydicom.dcmread(p) for p in files]
    server = ServerProc(tmp_path, tiny_model, quiet=0.5, name="first").start()
    ae = AE(ae_title="EDGE-TEST")
    ae.add_requested_context("1.2.840.10008.5.1.4.1.1.2", "1.2.840.10008.1.2.1")
    assoc = ae.associate(HOST, server.port, ae_title="EDGE-ICH")
    assert assoc.is_established
    for ds in datasets[:25]:
        assert assoc.send_c_store(ds).Status == 0x0000
    server.kill()  # mid-association, mid-series
    assoc.abort()
    assert len(list((server.spool / "series" / uid).glob("*.dcm"))) == 25  # every acknowledged slice survived

    again = ServerProc(tmp_path, tiny_model, quiet=0.5, port=server.port, name="second").start()
    try:
        assoc = ae.associate(HOST, again.port, ae_title="EDGE-ICH")
        assert assoc.is_established
        for ds in datasets[25:]:
            assert assoc.send_c_store(ds).Status == 0x0000
        assoc.release()
        rec = wait_result(again.out, uid, slices=40)
        assert rec is not None, again.log()
        assert rec["received"] == 40
        report = json.loads((again.out / uid / "report.json").read_text())
        assert sorted(s["sop_instance_uid"] for s in report["slices"]) == sorted(
            str(d.SOPInstanceUID) for d in datasets
        )
    finally:
        rc = again.stop()
    assert rc == 0 and "stopped" in again.log()


def test_sigterm_keeps_unfinished_series_for_the_next_start(tmp_path: Path, tiny_model: Path) -> None:
    files = make_series(tmp_path / "s", n=12, size=64, seed=40)
    uid = series_uid_of(files[0])
    first = ServerProc(tmp_path, tiny_model, quiet=60.0, name="first").start()  # too quiet to complete before SIGTERM
    for part in (files[:6], files[6:]):  # over two associations: the quiet period, not a release, completes it
        r = storescu(first.port, part)
        assert r.returncode == 0, r.stdout + r.stderr
    assert first.stop() == 0, first.log()
    assert len(list((first.spool / "series" / uid).glob("*.dcm"))) == 12
    assert not (first.out / uid / "serve.json").exists()
    second = ServerProc(tmp_path, tiny_model, quiet=0.3, name="second").start()
    try:
        rec = wait_result(second.out, uid, slices=12)
    finally:
        second.stop()
    assert rec is not None and rec["received"] == 12, second.log()
    assert "picked up 1 unfinished series" in second.log()


def test_release_of_the_association_completes_the_series(tmp_path: Path, tiny_model: Path) -> None:
    """One association carried the whole series and was released: the answer comes without the quiet
    period (60 s here); a series spread over two associations, or sent by an aborted one, waits for it."""
    whole = make_series(tmp_path / "whole", n=12, size=64, seed=50)
    split = make_series(tmp_path / "split", n=12, size=64, seed=51)
    aborted = make_series(tmp_path / "aborted", n=8, size=64, seed=52)
    with ServerProc(tmp_path, tiny_model, quiet=60.0, name="release").start() as server:
        t0 = time.monotonic()
        assert storescu(server.port, whole).returncode == 0
        rec = wait_result(server.out, series_uid_of(whole[0]), slices=12, timeout_s=45.0)
        assert rec is not None, server.log()
        assert time.monotonic() - t0 < 45.0 and rec["completed_by"] == "association release"
        assert rec["associations"] == 1 and rec["received"] == 12
        # the log line comes just after serve.json, the result's last file
        assert wait_for(lambda: "after the association release" in server.log(), timeout_s=10), server.log()
        for part in (split[:6], split[6:]):
            assert storescu(server.port, part).returncode == 0
        assert storescu(server.port, aborted, "--abort").returncode == 0
        time.sleep(3.0)  # ample for a release-completed answer: these two must still be waiting
        for files in (split, aborted):
            assert not (server.out / series_uid_of(files[0]) / "serve.json").exists(), server.log()

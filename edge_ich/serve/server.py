"""The running receiver: SCP, inference worker, series completion, SEG sender, watch folder.

Threads: pynetdicom's (one per association) validate, decode and spool instances and add them
to the series state; `infer` runs ready slices of every series in batches; `finish` completes
series once quiet and writes the outputs through the runner; `send` delivers SEGs; `watch`
polls the watch folder; `pickup` reloads the spool after a restart.
"""

from __future__ import annotations

import io
import itertools
import logging
import os
import shutil
import threading
import time
from pathlib import Path
from typing import Any

from edge_ich.errors import EdgeIchError
from edge_ich.serve.net import (
    CT_IMAGE_STORAGE,
    Destination,
    OutboxSender,
    ReceivedInstance,
    ScpConfig,
    StoreSCP,
    check_instance,
)
from edge_ich.serve.options import ServeOptions, write_serve_record
from edge_ich.serve.series import SeriesState, SliceRec, StreamingInferer, expected_spacing, slice_position
from edge_ich.serve.spool import Spool, uid_hash
from edge_ich.serve.staging import Staged, serve_record, stage_series
from edge_ich.serve.watch import watch_folder

log = logging.getLogger("edge_ich.serve")


class Server:
    """Everything `edge-ich serve` runs, startable and stoppable in-process."""

    def __init__(self, opts: ServeOptions) -> None:
        from edge_ich.runner import check_out_dir, load_model

        self.opts = opts
        self.failed: BaseException | None = None
        self.out = Path(opts.out)
        check_out_dir(self.out)
        self.spool = Spool(opts.spool)
        # half the cores for the network (the other half receives, decodes and writes): no spinning pool on a small box
        threads = opts.threads or max(1, (os.cpu_count() or 2) // 2)
        self.model = load_model(opts.model, opts.backend, threads)
        self.inferer = StreamingInferer(self.model.backend, opts.batch)
        self.series: dict[str, SeriesState] = {}
        self.assoc_series: dict[int, set[str]] = {}
        self.cond = threading.Condition()
        self.work_lock = threading.Lock()
        self.stop_ev = threading.Event()
        self._seq = itertools.count()
        self._arrivals = itertools.count()
        self.finished = 0
        cfg = ScpConfig(
            ae_title=opts.ae_title,
            host=opts.host,
            port=opts.port,
            allow_ae=opts.allowed_aes(),
            max_pdu=opts.max_pdu,
            max_associations=opts.max_associations,
            max_instance_bytes=int(opts.max_instance_mb * 1024 * 1024),
        )
        self.scp = StoreSCP(cfg, self.spool, self.on_instance, self.on_assoc_end, decode=self.decode)
        self.sender = (
            OutboxSender(
                self.spool, Destination.parse(opts.send_to), opts.ae_title, opts.retry_base_s, opts.retry_cap_s
            )
            if opts.send_to
            else None
        )
        self.threads: list[threading.Thread] = []
        self._pending: dict[str, list[Path]] = {}

    # -- lifecycle ------------------------------------------------------------------------
    def start(self) -> None:
        self.spool.prune_done(self.opts.keep_done_s)
        self._pending = self.spool.pending_series()  # before listening: only what a previous run left
        self.scp.start()
        targets: list[tuple[str, Any]] = [
            ("infer", self._infer_loop),
            ("pickup", self._pickup),
            ("warmup", self._warm_up),
        ]
        targets += [(f"finish{i}", self._finish_loop) for i in range(max(1, self.opts.finish_workers))]
        if self.sender is not None:
            targets.append(("send", lambda: self.sender.run(self.stop_ev)))
        if self.opts.watch is not None:
            targets.append(("watch", self._watch_loop))
        for name, fn in targets:
            t = threading.Thread(target=self._guard, args=(fn,), name=f"edge-ich-{name}", daemon=True)
            t.start()
            self.threads.append(t)
        card = self.model.card
        info = self.model.backend.info
        log.info(
            "listening on %s:%d as %s%s; model %s (%s %s); quiet %.1f s%s%s",
            self.opts.host,
            self.scp.port,
            self.opts.ae_title,
            f" for {','.join(self.opts.allowed_aes() or [])}" if self.opts.allow_ae else "",
            card.card_id,
            info.name,
            info.device,
            self.opts.quiet_seconds,
            f"; sending SEGs to {self.opts.send_to}" if self.opts.send_to else "",
            f"; watching {self.opts.watch}" if self.opts.watch else "",
        )

    def _guard(self, fn: Any) -> None:
        try:
            fn()
        except BaseException as exc:  # a dead worker must stop the server loudly, not silently
            log.exception("worker thread failed")
            self.failed = exc
            self.stop_ev.set()

    def stop(self, grace_s: float = 5.0) -> None:
        """Stop receiving, let the in-flight batch and completion finish; the rest stays spooled."""
        self.scp.stop(grace_s)
        self.stop_ev.set()
        with self.cond:
            self.cond.notify_all()
        if self.sender is not None:
            self.sender.wake()
        for t in self.threads:
            t.join(timeout=120)
        self.model.close()
        with self.cond:
            for st in self.series.values():
                self._discard(st)  # a staged answer not yet due is dropped; its instances stay spooled
            pending = len(self.series)
        c = self.scp.counts
        log.info(
            "this run: %d instances received over DICOM, %d duplicates, %d refused; %d series answered",
            c["stored"],
            c["duplicate"],
            c["refused"],
            self.finished,
        )
        if pending:
            log.info("%d series left in the spool for the next start", pending)

    # -- receiving ------------------------------------------------------------------------
    def decode(self, ds: Any) -> tuple[Any, float, float] | None:
        """Pixels -> (prepared model input, read s, preprocess s), in the receiving thread.

        Raises InputError when the pixels cannot be decoded; None for multi-frame (Enhanced) CT.
        """
        if str(ds.SOPClassUID) != CT_IMAGE_STORAGE:
            return None
        from edge_ich.sources.dicom.pixels import hu_from_dataset

        t0 = time.perf_counter()
        hu = hu_from_dataset(ds)
        t1 = time.perf_counter()
        prepared = self.inferer.prepare(hu)
        return prepared, t1 - t0, time.perf_counter() - t1

    def on_instance(self, inst: ReceivedInstance) -> None:
        """A spooled instance joins its series' state (called from receiving threads)."""
        from edge_ich.sources.dicom.discover import read_header

        ds = inst.dataset
        header = read_header(inst.path)  # here, while the series arrives, not on the completion's critical path
        with self.cond:
            st = self.series.get(inst.series_uid)
            if st is None:
                st = self.series[inst.series_uid] = SeriesState(inst.series_uid, inst.received, inst.received)
            st.last_arrival = max(st.last_arrival, inst.received)
            if inst.assoc_key is not None:
                st.open_assocs.add(inst.assoc_key)
                st.assocs_seen.add(inst.assoc_key)
                self.assoc_series.setdefault(inst.assoc_key, set()).add(inst.series_uid)
            if inst.sop_uid in st.slices:
                st.duplicates += 1
                st.slices[inst.sop_uid].header = None  # the file may have been rewritten: read it again at completion
            else:
                pos, normal = slice_position(ds)
                if st.normal is None:
                    st.normal = normal
                    st.expected_spacing = expected_spacing(ds)
                rows, cols = int(ds.Rows), int(ds.Columns)
                prepared = None
                if inst.prepared is not None:
                    prepared, read_s, prep_s = inst.prepared
                    st.times["read"].append(read_s)
                    st.times["preprocess"].append(prep_s)
                rec = SliceRec(inst.sop_uid, inst.path, pos, (rows, cols), prepared, seq=next(self._arrivals))
                rec.header = header
                st.add(rec)
            self.cond.notify_all()

    def on_assoc_end(self, key: int, released: bool = False) -> None:
        """An association (or a pseudo one: reload, watch poll) ended; `released`: by A-RELEASE."""
        now = time.perf_counter()
        with self.cond:
            for uid in self.assoc_series.pop(key, set()):
                st = self.series.get(uid)
                if st is not None:
                    st.open_assocs.discard(key)
                    if released:
                        st.released.add(key)
                    if not st.open_assocs:
                        st.ended_at = now
            self.cond.notify_all()

    def _load_file(self, path: Path, assoc_key: int | None, received: float, data: bytes | None = None) -> str | None:
        """Validate, decode and spool one file (pickup and watch); returns why it was refused, or None."""
        import pydicom

        try:
            raw = data if data is not None else path.read_bytes()
            ds = pydicom.dcmread(io.BytesIO(raw))
            why = check_instance(ds, ds.get("SOPClassUID", ""), ds.get("SOPInstanceUID", ""))
        except Exception:
            return "not a readable DICOM file"
        if why is not None:
            return why
        try:
            prepared = self.decode(ds)
        except EdgeIchError as exc:
            return str(exc)
        series, sop = str(ds.SeriesInstanceUID), str(ds.SOPInstanceUID)
        spooled, new = (path, False) if data is None else self.spool.store_instance(series, sop, raw)
        self.on_instance(
            ReceivedInstance(
                series,
                sop,
                str(ds.SOPClassUID),
                spooled,
                assoc_key,
                received,
                dataset=ds,
                prepared=prepared,
                duplicate=not new,
            )
        )
        return None

    def _warm_up(self) -> None:
        """Import the output writers and run one inference now, so the first series does not pay for it.

        Best effort: a failure here is logged and the error shows again where that output is written.
        """
        import importlib

        import numpy as np

        try:
            from edge_ich.outputs import seg

            seg.warm_up()
            for mod in (
                "edge_ich.outputs.nifti",
                "edge_ich.outputs.keyimages",
                "nibabel",
                "PIL.ImageDraw",
                "PIL.ImageFont",
                "PIL.PngImagePlugin",
            ):
                importlib.import_module(mod)
            card = self.inferer.card
            with self.inferer.lock:
                self.model.backend.infer(np.zeros((1, card.in_channels, *card.input_size), np.float32))
        except Exception as exc:
            log.warning("warm-up incomplete (%s: %s)", type(exc).__name__, str(exc)[:200])

    def _pickup(self) -> None:
        """Reload what a previous run left in the spool; those series complete after the quiet period."""
        pending = self._pending
        for uid, files in pending.items():
            key = -(next(self._seq) + 1)  # a pseudo-association open while the series is reloaded
            for p in files:
                if self.stop_ev.is_set():
                    return
                why = self._load_file(p, key, time.perf_counter())
                if why is not None:
                    log.warning("spooled file in series %s left out: %s", uid_hash(uid), why)
            self.on_assoc_end(key, False)
        if pending:
            log.info("picked up %d unfinished series from the spool", len(pending))

    # -- inference ------------------------------------------------------------------------
    def _infer_loop(self) -> None:
        k = self.inferer.card.context
        while not self.stop_ev.is_set():
            with self.cond:
                work: list[tuple[SeriesState, SliceRec, Any]] = []
                for st in self.series.values():
                    if not st.finishing:
                        work.extend((st, rec, ctx) for rec, ctx in st.ready(k))
                if not work:
                    self.cond.wait(timeout=0.5)
                    continue
                work.sort(key=lambda w: w[1].seq)  # fair across series: oldest arrivals first
                work = work[: self.inferer.batch]
                self.work_lock.acquire()
            try:
                self.inferer.run_ready(work)
            finally:
                self.work_lock.release()

    # -- completion -----------------------------------------------------------------------
    def _finish_loop(self) -> None:
        """Stage a series' answer as soon as its associations ended; publish it once quiet and unchanged."""
        quiet, grace = self.opts.quiet_seconds, self.opts.release_grace_s

        def due_at(st: SeriesState) -> float:  # a release completes a series; else the quiet period does
            return (st.ended_at or st.last_arrival) + grace if st.complete_on_release() else st.last_arrival + quiet

        while not self.stop_ev.is_set():
            with self.cond:
                now = time.perf_counter()
                idle = sorted(
                    (st for st in self.series.values() if not st.finishing and not st.open_assocs),
                    key=lambda s: s.last_arrival,
                )
                for st in idle:
                    if st.staged is not None and st.staged.signature != st.signature():
                        self._discard(st)  # something arrived after staging: stage again
                due = [st for st in idle if st.staged is not None and now >= due_at(st)]
                nxt = (due or [st for st in idle if st.staged is None])[:1]
                if not nxt:
                    waits = [due_at(x) - now for x in idle]
                    self.cond.wait(timeout=min(0.5, max(0.005, min(waits, default=0.5))))
                    continue
                st = nxt[0]
                st.finishing = True
            try:
                if st.staged is None:
                    with self.work_lock:  # the inference batch in flight (if any) lands first
                        pass
                    st.staged = self._stage(st)
                else:
                    self._publish_staged(st)
            finally:
                with self.cond:
                    st.finishing = False
                    self.cond.notify_all()

    def _discard(self, st: SeriesState) -> None:
        if st.staged is not None and st.staged.stage is not None:
            shutil.rmtree(st.staged.stage, ignore_errors=True)
        st.staged = None

    def _stage(self, st: SeriesState) -> Staged:
        """Read the series, infer what is left, write every output into a staging folder (not yet visible)."""
        return stage_series(st, self.spool, self.inferer, self.model, self.out, self.opts.batch)

    def _publish_staged(self, st: SeriesState) -> None:
        """Make the staged answer visible: report.json last, then serve.json, outbox, spool to done/."""
        from edge_ich import runner

        staged: Staged = st.staged
        uid, h = st.uid, uid_hash(st.uid)
        on_release = st.complete_on_release()
        # the completion signal: the release of the association that carried the series, else the quiet period
        due = (st.ended_at or st.last_arrival) if on_release else st.last_arrival + self.opts.quiet_seconds
        try:
            if staged.error is not None:
                self.spool.mark_failed(uid, staged.fresh)
                if staged.trace:
                    log.error(
                        "series %s failed (bug; %d files kept in the spool's failed/):\n%s",
                        h,
                        len(staged.fresh),
                        staged.trace,
                    )
                else:
                    log.error(
                        "series %s not processed (%d files kept in the spool's failed/): %s",
                        h,
                        len(staged.fresh),
                        staged.error,
                    )
            else:
                assert staged.stage is not None and staged.out_dir is not None and staged.report is not None
                report = staged.report
                report["timings"]["last_slice_to_result_s"] = round(time.perf_counter() - st.last_arrival, 4)
                runner.finish_staged(staged.stage, staged.out_dir, report)
                shutil.rmtree(staged.stage, ignore_errors=True)
                t_done = time.perf_counter()
                f = report["finding"]
                # from the release itself; from the quiet period's end, or a reload's staging if later
                since = due if on_release else max(due, staged.started)
                record = serve_record(st, staged, self.opts.quiet_seconds, on_release, t_done - since)
                write_serve_record(staged.out_dir / "serve.json", record)
                if self.sender is not None and (staged.out_dir / "seg.dcm").is_file():
                    self.spool.enqueue_outgoing(uid, staged.out_dir / "seg.dcm")
                    self.sender.wake()
                self.spool.mark_done(uid, staged.fresh)
                self.spool.prune_done(self.opts.keep_done_s)
                self.finished += 1
                log.info(
                    "series %s: %d slices, %s, %.1f mL, last slice to result %.2f s (%.2f s after the %s; "
                    "%d inferred on arrival, %d at completion)",
                    h,
                    record["slices"],
                    "HEMORRHAGE" if f["hemorrhage"] else "no hemorrhage",
                    f["total_volume_ml"],
                    record["last_slice_to_result_s"],
                    record["completion_to_result_s"],
                    record["completed_by"],
                    st.streamed,
                    staged.rerun,
                )
        except EdgeIchError as exc:
            self.spool.mark_failed(uid, staged.fresh)
            log.error("series %s not processed (%d files kept in the spool's failed/): %s", h, len(staged.fresh), exc)
        finally:
            if staged.stage is not None:
                shutil.rmtree(staged.stage, ignore_errors=True)
        used = set(staged.fresh)
        with self.cond:
            left = {s: r for s, r in st.slices.items() if r.path not in used and r.path.exists()}
            if left or st.open_assocs:  # arrived while publishing: a later answer covers them too
                nxt = SeriesState(
                    uid,
                    st.first_arrival,
                    st.last_arrival,
                    normal=st.normal,
                    expected_spacing=st.expected_spacing,
                    open_assocs=set(st.open_assocs),
                    assocs_seen=set(st.assocs_seen),  # spread over several associations now: the quiet period decides
                )
                for r in left.values():
                    nxt.add(r)
                self.series[uid] = nxt
            else:
                self.series.pop(uid, None)
            self.cond.notify_all()

    # -- watch folder ---------------------------------------------------------------------
    def _watch_loop(self) -> None:
        """Poll the watch folder (see `edge_ich.serve.watch`)."""
        assert self.opts.watch is not None
        watch_folder(
            Path(self.opts.watch), self.opts.quiet_seconds, self.stop_ev, self._seq, self._load_file, self.on_assoc_end
        )

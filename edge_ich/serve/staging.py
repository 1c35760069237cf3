"""A series' answer staged before it is published: read the spooled files, infer what is left,
write every output into a staging folder that is not yet visible."""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge_ich.errors import EdgeIchError, NotAssessable
from edge_ich.serve.series import SeriesState, StreamingInferer
from edge_ich.serve.spool import Spool


@dataclass
class Staged:
    """A series' answer written into a staging folder, valid while the series' signature holds."""

    signature: tuple[int, float]
    fresh: list[Path]
    started: float
    ready: float = 0.0
    stage: Path | None = None
    out_dir: Path | None = None
    report: dict[str, Any] | None = None
    slices: int = 0
    skipped: int = 0
    rerun: int = 0
    breakdown: dict[str, float] = field(default_factory=dict)
    error: str | None = None
    trace: str | None = None


def stage_series(st: SeriesState, spool: Spool, inferer: StreamingInferer, model: Any, out: Path, batch: int) -> Staged:
    """Read the series, infer what is left, write every output into a staging folder (not yet visible)."""
    from edge_ich import runner
    from edge_ich.sources.dicom.source import series_from_files

    t0 = time.perf_counter()
    sig = st.signature()
    uid = st.uid
    fresh = spool.series_files(uid)
    names = {p.name for p in fresh}
    files = fresh + [p for p in spool.done_files(uid) if p.name not in names]
    staged = Staged(signature=sig, fresh=fresh, started=t0)
    stage: Path | None = None
    try:
        if not files:
            raise EdgeIchError("no instance left in the spool")
        with_header = {r.path: r.header for r in list(st.slices.values()) if r.header is not None}
        src = series_from_files(files, headers=with_header)
        t1 = time.perf_counter()
        seg, staged.rerun = inferer.complete(st, src, list(src.sop_instance_uids))
        t2 = time.perf_counter()
        out_dir = out / uid
        runner.check_out_dir(out_dir)
        geo = src.geometry
        opts = runner.RunOptions(out=out_dir, batch=batch, write_seg=True)
        stage, staged.report, _ = runner.stage_outputs(out_dir, src, model, seg, opts)
        staged.stage, staged.out_dir = stage, out_dir
        staged.slices, staged.skipped = int(geo.shape[0]), len(src.skipped)
        staged.breakdown = {
            "read_series": round(t1 - t0, 4),
            "infer_remaining": round(t2 - t1, 4),
            "write_outputs": round(time.perf_counter() - t2, 4),
            **{k: round(v, 4) for k, v in seg.timings.phases.items()},  # components and each writer
        }
    except NotAssessable as exc:  # the same report.json as `edge-ich run` writes, and no answer
        runner.write_not_assessable(out / uid, exc, model.card, [])
        staged.error = str(exc)
    except EdgeIchError as exc:
        staged.error = str(exc)
    except Exception:  # a bug: keep its traceback for the log line at publish time
        import traceback

        staged.error = "internal error"
        staged.trace = traceback.format_exc()
    if staged.error and stage is not None:
        shutil.rmtree(stage, ignore_errors=True)
        staged.stage = None
    staged.ready = time.perf_counter()
    return staged


def serve_record(
    st: SeriesState, staged: Staged, quiet_s: float, on_release: bool, completion_to_result_s: float
) -> dict[str, Any]:
    """serve.json: how the series arrived, what completed it, and how long the answer took."""
    from edge_ich.serve.spool import uid_hash

    assert staged.report is not None
    f = staged.report["finding"]
    return {
        "series_uid_sha256_12": uid_hash(st.uid),
        "slices": staged.slices,
        "received": len(st.slices),
        "duplicates": st.duplicates,
        "skipped": staged.skipped,
        "inferred_while_receiving": st.streamed,
        "inferred_at_completion": staged.rerun,
        "quiet_seconds": quiet_s,
        "completed_by": "association release" if on_release else "quiet period",
        "associations": len(st.assocs_seen),
        "last_slice_to_result_s": round(time.perf_counter() - st.last_arrival, 4),
        "completion_to_result_s": round(max(0.0, completion_to_result_s), 4),
        "staged_before_completion": staged.ready <= (st.ended_at or st.last_arrival) + (0.0 if on_release else quiet_s),
        "completion_breakdown_s": staged.breakdown,
        "hemorrhage": f["hemorrhage"],
        "total_volume_ml": f["total_volume_ml"],
    }

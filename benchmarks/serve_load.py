"""Load benchmark for `edge-ich serve`: N concurrent dcmtk storescu associations, S slices each.

Checks that every slice is accounted for in the outputs and reports, per series, the time from
the release of its association (storescu's exit, seen by this script) to its result appearing
(serve.json, written last), and the server's own last slice -> result. Goals: one association,
result <= 1 s after its release; 8 concurrent x 40 slices, p95 last slice -> result <= 2 s.
The series each come over one association, so the release completes them; the quiet period
(--quiet, default 5 s as `edge-ich serve`) is not waited for. Loopback only; bounded waits; the
server runs as a subprocess and is stopped with SIGTERM.

    python benchmarks/serve_load.py                      # 8 x 40 slices, the bundled model (tiny test model without one)
    python benchmarks/serve_load.py --associations 1 --out benchmarks/reports/serve/single

Writes serve_load.json and serve_load.md under --out (default benchmarks/reports/serve).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def dcmtk(tool: str) -> str:
    for d in ("/usr/bin", "/usr/local/bin", "/opt/homebrew/bin"):
        p = Path(d) / tool
        if p.is_file() and os.access(p, os.X_OK):
            return str(p)
    raise SystemExit(f"dcmtk's {tool} is not installed (apt-get install dcmtk)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout_s: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.1)
    return False


def make_series(work: Path, count: int, slices: int, compress: bool) -> list[tuple[str, list[Path], list[str]]]:
    """One phantom case, cloned into `count` series with fresh UIDs: (series UID, files, SOP UIDs)."""
    import pydicom
    from pydicom.uid import generate_uid

    from edge_ich.phantom.writers import write_dataset

    write_dataset(
        work / "phantom",
        cases=1,
        seed=0,
        layout="dicom",
        difficulty="standard",
        slices=slices,
        thickness=None,
        compress=compress,
    )
    base = sorted((work / "phantom" / "case_000" / "dicom").glob("*.dcm"))
    out = []
    for i in range(count):
        series_uid, study_uid = generate_uid(), generate_uid()
        d = work / f"series_{i:02d}"
        d.mkdir()
        files, sops = [], []
        for p in base:
            ds = pydicom.dcmread(p)
            ds.SeriesInstanceUID, ds.StudyInstanceUID = series_uid, study_uid
            ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
            q = d / p.name
            ds.save_as(q)
            files.append(q)
            sops.append(str(ds.SOPInstanceUID))
        out.append((series_uid, files, sops))
    return out


def pick_model(arg: str | None, work: Path) -> tuple[Path, str]:
    if arg:
        return Path(arg), "given"
    from edge_ich.card import bundled_model_path

    bundled = bundled_model_path()
    if bundled is not None:
        return bundled, "bundled"
    from tests.tinymodel import build_tiny_model

    return build_tiny_model(work / "model"), "tiny test model (no bundled model in this checkout)"


def seg_write_seconds(series_files: list[Path], seg_path: Path) -> float:
    """Warm time of one SEG write for this series (its mask read back from the SEG the server wrote)."""
    from edge_ich.outputs.seg import read_seg_mask, write_seg
    from edge_ich.sources.dicom.source import series_from_files

    src = series_from_files(series_files)
    mask = read_seg_mask(seg_path, list(src.sop_instance_uids))
    headers = [src.header(i) for i in range(len(src))]
    times = []
    with tempfile.TemporaryDirectory() as t:
        for _ in range(3):
            t0 = time.perf_counter()
            write_seg(Path(t) / "seg.dcm", mask, headers, algorithm_name="bench", algorithm_version="0")
            times.append(time.perf_counter() - t0)
    return min(times[1:])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model")
    ap.add_argument("--associations", type=int, default=8)
    ap.add_argument("--slices", type=int, default=40)
    ap.add_argument("--quiet", type=float, default=5.0, help="--quiet-seconds for the server")
    ap.add_argument("--compress", action="store_true", help="send JPEG 2000 lossless (storescu -xv)")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "reports" / "serve")
    ap.add_argument("--timeout", type=float, default=900.0, help="give up waiting for results after this many seconds")
    a = ap.parse_args()

    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="edge-ich-serve-load-") as tmp:
        work = Path(tmp)
        t0 = time.perf_counter()
        series = make_series(work, a.associations, a.slices, a.compress)
        model, model_kind = pick_model(a.model, work)
        print(
            f"data ready ({time.perf_counter() - t0:.1f} s): {a.associations} series x {a.slices} slices; model {model} ({model_kind})"
        )

        pacs_dir = work / "pacs"
        pacs_dir.mkdir()
        pacs_port, port = free_port(), free_port()
        pacs = subprocess.Popen(
            [dcmtk("storescp"), "-aet", "PACS", "-od", str(pacs_dir), str(pacs_port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        log_path = work / "server.log"
        with open(log_path, "wb") as log:
            server = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "edge_ich",
                    "serve",
                    "--port",
                    str(port),
                    "--spool",
                    str(work / "spool"),
                    "--out",
                    str(work / "out"),
                    "--model",
                    str(model),
                    "--quiet-seconds",
                    str(a.quiet),
                    "--send-to",
                    f"PACS@127.0.0.1:{pacs_port}",
                ],
                cwd=REPO,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            try:
                if not (wait_port(port) and wait_port(pacs_port)):
                    raise SystemExit("server or storescp did not start:\n" + log_path.read_text())
                time.sleep(2.0)  # let the server's warm-up (imports, first inference) finish before the clock starts
                clients: list[dict] = [{} for _ in series]

                def send(i: int, files: list[Path]) -> None:
                    args = [
                        dcmtk("storescu"),
                        "-aec",
                        "EDGE-ICH",
                        *(["-xv"] if a.compress else []),
                        "127.0.0.1",
                        str(port),
                        *map(str, files),
                    ]
                    s = time.perf_counter()
                    r = subprocess.run(args, capture_output=True, text=True, timeout=a.timeout)
                    clients[i] = {
                        "rc": r.returncode,
                        "send_s": round(time.perf_counter() - s, 3),
                        "end": time.perf_counter(),
                    }

                threads = [threading.Thread(target=send, args=(i, f)) for i, (_, f, _) in enumerate(series)]
                t_send = time.perf_counter()
                for t in threads:
                    t.start()
                for t in threads:
                    t.join()
                last_sent = max(c["end"] for c in clients)
                deadline = time.monotonic() + a.timeout
                outs = [work / "out" / uid for uid, _, _ in series]
                seen: dict[int, float] = {}  # series -> when its serve.json (written last) appeared
                while time.monotonic() < deadline and len(seen) < len(outs):
                    for i, o in enumerate(outs):
                        if i not in seen and (o / "serve.json").is_file():
                            seen[i] = time.perf_counter()
                    time.sleep(0.01)
                all_done = time.perf_counter()
                while time.monotonic() < deadline and len(list(pacs_dir.glob("SG*"))) < len(series):
                    time.sleep(0.05)
                segs_at_pacs = len(list(pacs_dir.glob("SG*")))
            finally:
                server.send_signal(signal.SIGTERM)
                rc = server.wait(timeout=120)
                pacs.terminate()
                pacs.wait(timeout=30)

        rows = []
        for i, ((_uid, _files, sops), out, client) in enumerate(zip(series, outs, clients)):
            rec = json.loads((out / "serve.json").read_text()) if (out / "serve.json").is_file() else None
            rep = json.loads((out / "report.json").read_text()) if (out / "report.json").is_file() else None
            got = sorted(s.get("sop_instance_uid", "") for s in rep["slices"]) if rep else []
            rows.append(
                {
                    "client_rc": client.get("rc"),
                    "client_send_s": client.get("send_s"),
                    "slices_sent": len(sops),
                    "slices_in_result": len(got),
                    "all_accounted": got == sorted(sops),
                    "release_to_result_s": round(seen[i] - client["end"], 3) if i in seen and "end" in client else None,
                    "serve": rec,
                    "compute_ms_per_slice": rep["timings"]["stages"]["compute"]["mean_ms"] if rep else None,
                }
            )
        ok = [r for r in rows if r["serve"]]
        seg_s = seg_write_seconds(series[0][1], outs[0] / "seg.dcm") if ok else None
        per_slice_s = statistics.median(r["compute_ms_per_slice"] for r in ok) / 1000.0 if ok else None
        goal = 2 * per_slice_s + seg_s if ok else None
        c2r = [r["serve"]["completion_to_result_s"] for r in ok]
        l2r = [r["serve"]["last_slice_to_result_s"] for r in ok]
        r2r = [r["release_to_result_s"] for r in ok if r["release_to_result_s"] is not None]

        def spread(v: list[float]) -> dict[str, float] | None:
            if not v:
                return None
            q = sorted(v)
            return {
                "median": round(statistics.median(q), 3),
                "p95": round(q[min(len(q) - 1, max(0, -(-95 * len(q) // 100) - 1))], 3),
                "max": round(q[-1], 3),
            }

        result = {
            "command": "python benchmarks/serve_load.py " + " ".join(sys.argv[1:]),
            "environment": {
                "python": platform.python_version(),
                "machine": platform.machine(),
                "cpus": os.cpu_count(),
                "processor": platform.processor() or platform.machine(),
                "loadavg_1min_before_after": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
            },
            "model": {"path": model.name, "kind": model_kind},
            "setup": {
                "associations": a.associations,
                "slices": a.slices,
                "quiet_seconds": a.quiet,
                "compress": a.compress,
            },
            "all_slices_accounted": all(r["all_accounted"] for r in rows) and len(ok) == len(rows),
            "slices_sent": sum(r["slices_sent"] for r in rows),
            "slices_in_results": sum(r["slices_in_result"] for r in rows),
            "segs_delivered": segs_at_pacs,
            "server_exit_code": rc,
            "wall_s": {
                "send_all": round(last_sent - t_send, 3),
                "send_start_to_all_results": round(all_done - t_send, 3),
            },
            "latency_s": {
                "completion_to_result": spread(c2r),
                "last_slice_to_result": spread(l2r),
                "release_to_result": spread(r2r),
            },
            "completed_by": sorted({r["serve"].get("completed_by", "?") for r in ok}),
            "goal": {
                "infer_s_per_slice": round(per_slice_s, 5) if ok else None,
                "seg_write_s": round(seg_s, 4) if seg_s else None,
                "two_slices_plus_seg_s": round(goal, 4) if goal else None,
                "met_by_median_completion_to_result": (statistics.median(c2r) <= goal) if ok else None,
                "release_to_result_max_s_goal": 1.0,
                "release_to_result_met": (max(r2r) <= 1.0) if r2r and a.associations == 1 else None,
                "p95_last_slice_to_result_s_goal": 2.0,
                "p95_last_slice_to_result_met": (spread(l2r)["p95"] <= 2.0) if l2r and a.associations > 1 else None,  # type: ignore[index]
            },
            "series": rows,
        }
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "serve_load.json").write_text(json.dumps(result, indent=2) + "\n")
    (a.out / "serve_load.md").write_text(markdown(result))
    print(markdown(result))
    return 0 if result["all_slices_accounted"] and rc == 0 else 1


def markdown(r: dict) -> str:
    lat, goal, s = r["latency_s"], r["goal"], r["setup"]
    lines = [
        "# edge-ich serve: concurrent load",
        "",
        f"Command: `{r['command']}`  ",
        f"Machine: {r['environment']['cpus']} CPUs ({r['environment']['processor']}), Python {r['environment']['python']}; "
        f"model {r['model']['path']} ({r['model']['kind']}); 1-minute load average before/after: "
        f"{r['environment']['loadavg_1min_before_after']} (a shared machine: other work competes for the 2 cores)",
        "",
        f"{s['associations']} concurrent dcmtk storescu associations x {s['slices']} slices"
        f"{' (JPEG 2000 lossless)' if s['compress'] else ''}, --quiet-seconds {s['quiet_seconds']}.",
        "",
        "| what | value |",
        "|---|---|",
        f"| slices sent / in results | {r['slices_sent']} / {r['slices_in_results']} |",
        f"| every slice accounted for | {r['all_slices_accounted']} |",
        f"| SEGs delivered to storescp | {r['segs_delivered']} |",
        f"| send all (wall) | {r['wall_s']['send_all']} s |",
        f"| first send to last result (wall) | {r['wall_s']['send_start_to_all_results']} s |",
    ]
    if lat["completion_to_result"]:
        rr, ls = lat["release_to_result"] or {}, lat["last_slice_to_result"]
        lines += [
            f"| completed by | {', '.join(r['completed_by'])} |",
            f"| association released -> result visible, seen by the client (median / p95 / max) | "
            f"{rr.get('median')} / {rr.get('p95')} / {rr.get('max')} s |",
            f"| last slice -> result, server's clock (median / p95 / max) | {ls['median']} / {ls['p95']} / {ls['max']} s |",
            f"| series complete -> result (median / max) | {lat['completion_to_result']['median']} / {lat['completion_to_result']['max']} s |",
            f"| goal, one association: release -> result <= 1 s | {goal['release_to_result_met']} |",
            f"| goal, concurrent: p95 last slice -> result <= 2 s | {goal['p95_last_slice_to_result_met']} |",
            f"| inference per slice (median of series means) | {goal['infer_s_per_slice'] * 1000:.2f} ms |",
            f"| SEG write (warm, this series) | {goal['seg_write_s']} s |",
            f"| goal: 2 slices' inference + SEG write | {goal['two_slices_plus_seg_s']} s |",
            f"| goal met by the median completion -> result | {goal['met_by_median_completion_to_result']} |",
        ]
    lines += [
        "",
        "Per series (serve.json): slices inferred while receiving / at completion, completion breakdown:",
        "",
        "| # | sent | in result | on arrival | at completion | complete->result s | read series s | infer rest s | write outputs s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for i, row in enumerate(r["series"]):
        sv = row["serve"] or {}
        b = sv.get("completion_breakdown_s", {})
        lines.append(
            f"| {i} | {row['slices_sent']} | {row['slices_in_result']} | {sv.get('inferred_while_receiving')} | "
            f"{sv.get('inferred_at_completion')} | {sv.get('completion_to_result_s')} | {b.get('read_series')} | "
            f"{b.get('infer_remaining')} | {b.get('write_outputs')} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())

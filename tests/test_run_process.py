"""`python -m edge_ich run` as its own process: what it prints, how it exits, what it imports.

The console entry leaves through `os._exit` once everything is written and flushed, so these
run the real entry point in a subprocess and check that nothing is lost on the way out.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.dicomkit import make_series

REPO = Path(__file__).resolve().parents[1]


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "edge_ich", *args], capture_output=True, text=True, cwd=REPO)


def test_run_exits_0_with_every_output_and_the_whole_summary(tmp_path: Path, tiny_model: Path) -> None:
    make_series(tmp_path / "series", n=6, size=128)
    out = tmp_path / "out"
    res = _cli("run", "--series", str(tmp_path / "series"), "--model", str(tiny_model), "--out", str(out))
    assert res.returncode == 0, res.stderr
    assert res.stdout.count("\n") == 1 and res.stdout.rstrip().endswith(str(out))
    report = json.loads((out / "report.json").read_text())
    assert report["input"]["shape"][0] == 6
    assert (out / "mask.nii.gz").stat().st_size > 0 and (out / "seg.dcm").stat().st_size > 0
    assert not list(out.glob(".edge-ich-staging-*"))
    phases = report["timings"]["phases_s"]
    assert {"discover", "model_load", "segment", "components", "mask_nifti", "seg", "key_images", "total"} <= set(
        phases
    )
    assert phases["total"] >= phases["segment"] > 0


def test_json_report_is_printed_whole(tmp_path: Path, tiny_model: Path) -> None:
    make_series(tmp_path / "series", n=6, size=128)
    res = _cli(
        "run", "--series", str(tmp_path / "series"), "--model", str(tiny_model), "--out", str(tmp_path / "o"), "--json"
    )
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["input"]["shape"][0] == 6  # the whole document made it out


def test_bad_input_is_one_line_and_exit_1(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    res = _cli("run", "--series", str(tmp_path / "empty"), "--out", str(tmp_path / "o"))
    assert res.returncode == 1
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("edge-ich: error:") and "Traceback" not in res.stderr

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


def test_a_run_imports_only_what_its_series_needs(tmp_path: Path, tiny_model: Path) -> None:
    """An uncompressed series: no highdicom (the SEG is written with pydicom), no scipy.ndimage or
    sparse graphs (components in numpy), no matplotlib (key images through Pillow), no torch."""
    make_series(tmp_path / "series", n=6, size=128)
    out = tmp_path / "out"
    code = (
        "import sys, json\nfrom edge_ich.cli import main\n"
        f"assert main(['run', '--series', {str(tmp_path / 'series')!r}, '--model', {str(tiny_model)!r}, "
        f"'--out', {str(out)!r}]) == 0\n"
        "print(json.dumps(sorted(sys.modules)))"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert res.returncode == 0, res.stderr
    mods = set(json.loads(res.stdout.strip().splitlines()[-1]))
    heavy = ("highdicom", "scipy.ndimage", "scipy.sparse", "matplotlib", "torch", "pynetdicom", "threadpoolctl")
    assert [m for m in mods if m.split(".")[0] in heavy or m.startswith(heavy)] == []
    assert "onnxruntime" in mods and "pydicom" in mods and (out / "seg.dcm").is_file()
    assert json.loads((out / "report.json").read_text())["outputs"]["key_images"]  # they were drawn

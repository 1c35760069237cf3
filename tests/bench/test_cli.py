"""`edge-ich bench` end to end on a short run: the three outputs, a bench.json that validates
against the documented schema, and the error paths. Nothing here asserts a duration."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import pytest

from edge_ich.bench.report import load_schema, markdown
from edge_ich.cli import main


def _validate(doc: dict) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    jsonschema.validate(doc, load_schema())


@pytest.fixture(scope="module")
def small_series(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.dicomkit import make_series

    d = tmp_path_factory.mktemp("series")
    make_series(d, n=6, size=128)
    return d


@pytest.fixture(scope="module")
def series_bench(small_series: Path, tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("bench")
    rc = main(
        [
            "bench",
            "--model",
            str(tiny_model),
            "--series",
            str(small_series),
            "--warmup",
            "0",
            "--iterations",
            "2",
            "--batch",
            "2",
            "--threads",
            "1",
            "--out",
            str(out),
        ]
    )
    assert rc == 0
    return out


def test_bench_series_writes_three_outputs_and_valid_json(series_bench: Path) -> None:
    names = {p.name for p in series_bench.iterdir()}
    assert {"bench.json", "bench.md", "latency.png", "stages.png"} <= names
    doc = json.loads((series_bench / "bench.json").read_text())
    _validate(doc)
    assert doc["input"] == {"kind": "series", "slices": 6, "rows": doc["input"]["rows"], "cols": doc["input"]["cols"]}
    ss = doc["steady_state"]
    assert ss["passes"] == 2 and ss["slices_per_series"] == 6
    assert {"read", "preprocess", "compute", "postprocess", "write"} <= set(ss["stages_ms"])
    assert ss["stages_ms"]["compute"]["n"] == 2 * 6  # one sample per slice per pass
    assert len(ss["series_samples_ms"]) == 2
    assert doc["model"]["file"] == "tiny.onnx" and not doc["model"]["bundled"]
    assert doc["backend"]["name"] == "onnxrt" and doc["environment"]["threads_used"] == 1
    assert doc["settings"]["iterations"] == 2 and "--iterations 2" in doc["command"]
    assert any(w["code"] == "few-samples" for w in doc["warnings"])  # 2 passes are too few for tails
    for png in ("latency.png", "stages.png"):
        assert (series_bench / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = (series_bench / "bench.md").read_text()
    assert "## Cold start" in md and "few-samples" in md and doc["command"] in md


def test_schema_is_not_vacuous(series_bench: Path) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    doc = json.loads((series_bench / "bench.json").read_text())
    for mutate in (
        lambda d: d.pop("steady_state"),
        lambda d: d["steady_state"]["stages_ms"].update(bogus=d["steady_state"]["series_ms"]),
        lambda d: d["warnings"].append({"code": "made-up", "message": "x"}),
        lambda d: d["steady_state"]["series_ms"].pop("p99"),
        lambda d: d.update(schema_version="2.0"),
    ):
        bad = copy.deepcopy(doc)
        mutate(bad)
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, load_schema())


def test_markdown_lists_constructed_warnings(series_bench: Path) -> None:
    doc = json.loads((series_bench / "bench.json").read_text())
    doc["warnings"] = [{"code": "transfer-bound", "message": "copies take longer than compute"}]
    md = markdown(doc)
    assert "**transfer-bound**: copies take longer than compute" in md


@pytest.mark.slow
def test_bench_phantom_on_runtime_only_imports(tiny_model: Path, tmp_path: Path) -> None:
    """`edge-ich bench --phantom` writes the three outputs and never imports torch (~30 s: it generates
    a 40-slice 512x512 phantom series)."""
    pytest.importorskip("edge_ich.phantom.writers")
    out = tmp_path / "b"
    code = (
        "import sys; from edge_ich.cli import main; "
        f"rc = main(['bench', '--phantom', '--model', {str(tiny_model)!r}, '--warmup', '0', '--iterations', '1', "
        f"'--threads', '1', '--out', {str(out)!r}]); "
        "assert rc == 0, rc; assert 'torch' not in sys.modules, 'bench imported torch'"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    doc = json.loads((out / "bench.json").read_text())
    _validate(doc)
    assert doc["input"]["kind"] == "phantom" and doc["input"]["slices"] == 40
    assert (out / "bench.md").is_file() and (out / "latency.png").is_file() and (out / "stages.png").is_file()


@pytest.mark.parametrize(
    "args, needle",
    [
        (["bench", "--out", "{out}"], "--series"),
        (["bench", "--series", "{series}", "--phantom", "--out", "{out}"], "not both"),
        (["bench", "--series", "{missing}", "--model", "{model}", "--out", "{out}"], "not found"),
        (["bench", "--series", "{series}", "--model", "{missing}", "--out", "{out}"], "not found"),
    ],
)
def test_bench_user_errors_are_one_line(
    args: list[str],
    needle: str,
    small_series: Path,
    tiny_model: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    fill = {
        "out": str(tmp_path / "o"),
        "series": str(small_series),
        "missing": str(tmp_path / "nope"),
        "model": str(tiny_model),
    }
    rc = main([a.format(**fill) for a in args])
    err = capsys.readouterr().err.strip()
    assert rc == 1
    assert len(err.splitlines()) == 1 and err.startswith("edge-ich: error:") and needle in err
    assert not (tmp_path / "o" / "bench.json").exists()

"""The gate through `edge-ich run`: not assessable -> exit 1, one line, report.json only; warnings -> on the line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edge_ich.cli import main
from tests.assess.cases import NOT_ASSESSABLE, WARNED
from tests.dicomkit import PATIENT_ID, PATIENT_NAME

SCHEMA = Path(__file__).resolve().parents[2] / "edge_ich" / "schemas" / "report.schema.json"


def validate(report: dict) -> None:
    import jsonschema

    jsonschema.validate(report, json.loads(SCHEMA.read_text()))


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(args)
    cap = capsys.readouterr()
    return code, cap.out, cap.err


@pytest.mark.parametrize("name", list(NOT_ASSESSABLE))
def test_not_assessable(tmp_path: Path, tiny_model: Path, name: str, capsys) -> None:
    build, flag, words = NOT_ASSESSABLE[name]
    src = build(tmp_path)
    out = tmp_path / "out"
    code, stdout, err = run_cli(["run", flag, str(src), "--model", str(tiny_model), "--out", str(out)], capsys)
    assert code == 1 and stdout == "", err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("edge-ich: not assessable: "), err
    assert words in lines[0] and "Traceback" not in err
    assert PATIENT_NAME not in err and PATIENT_ID not in err
    # report.json only, written atomically (no temp file left), claiming nothing
    assert sorted(p.name for p in out.rglob("*")) == ["report.json"]
    report = json.loads((out / "report.json").read_text())
    validate(report)
    assert report["assessable"] is False and words in report["assessment"]["reason"]
    assert "finding" not in report and "components" not in report
    assert PATIENT_NAME not in json.dumps(report)


def test_not_assessable_removes_an_earlier_answer(tmp_path: Path, tiny_model: Path, capsys) -> None:
    """A folder holds one answer: a not-assessable report never sits beside an earlier run's mask or SEG."""
    from tests.dicomkit import make_series

    make_series(tmp_path / "head", n=4, size=64)
    out = tmp_path / "out"
    assert (
        run_cli(["run", "--series", str(tmp_path / "head"), "--model", str(tiny_model), "--out", str(out)], capsys)[0]
        == 0
    )
    assert (out / "mask.nii.gz").is_file() and (out / "seg.dcm").is_file()
    build = NOT_ASSESSABLE["MR series"][0]
    code, _, err = run_cli(
        ["run", "--series", str(build(tmp_path)), "--model", str(tiny_model), "--out", str(out)], capsys
    )
    assert code == 1 and "not assessable" in err
    assert sorted(p.name for p in out.iterdir() if p.is_file()) == ["report.json"]
    assert not list((out / "key_images").glob("*.png")) if (out / "key_images").exists() else True


@pytest.mark.parametrize("name", list(WARNED))
def test_answered_with_warning(tmp_path: Path, tiny_model: Path, name: str, capsys) -> None:
    build, code_, label = WARNED[name]
    src = build(tmp_path)
    out = tmp_path / "out"
    code, stdout, err = run_cli(["run", "--series", str(src), "--model", str(tiny_model), "--out", str(out)], capsys)
    assert code == 0, err
    assert err == "", err  # warnings go on the summary line and into the report, never raw to stderr
    assert stdout.count("\n") == 1 and "| WARNINGS: " in stdout and label in stdout, stdout
    report = json.loads((out / "report.json").read_text())
    validate(report)
    assert report["assessable"] is True
    assert code_ in {w["code"] for w in report["warnings"]}, report["warnings"]
    assert PATIENT_NAME not in json.dumps(report) and PATIENT_NAME not in stdout

"""Property-based fuzzing of `edge-ich run` over the headers and pixels of a small real-anatomy series.

Each case mutates a 3-slice head CT series (the CQ500 slice, 64x64): header elements deleted or
given raw values of any shape (every element the reader uses, plus a few it does not), pixel data
replaced, cut or made constant, files dropped, duplicated, cut short or damaged. The API the CLI
wraps (`runner.run`) is called in-process. Whatever the input:
- the outcome is an answer (exit 0) or an EdgeIchError (exit 1): any other exception is a bug;
- an error is one line without patient data;
- nothing is half-written: an answer leaves its complete set, a not-assessable verdict exactly a
  valid report.json saying so, any other error nothing at all; no staging folder remains;
- an answer's summary line agrees with its report.
A few cases also go through `python -m edge_ich` in a subprocess (exit code, one line, no traceback).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge_ich.errors import EdgeIchError, NotAssessable
from edge_ich.outputs.report import summary_line
from edge_ich.runner import LoadedModel, RunOptions, load_model, run
from edge_ich.sources.dicom.elements import SPECS
from tests.assess.cases import put_raw
from tests.dicomkit import PATIENT_ID, PATIENT_NAME, make_series

CASES = 2000
#: Memory-backed scratch space where there is one (fsync and unlink are most of a case's cost on disk).
FAST_TMP = "/dev/shm" if Path("/dev/shm").is_dir() and os.access("/dev/shm", os.W_OK) else None
N_SLICES = 3
SCHEMA = Path(__file__).resolve().parents[2] / "edge_ich" / "schemas" / "report.schema.json"
_US = {"Rows", "Columns", "BitsAllocated", "BitsStored", "HighBit", "PixelRepresentation", "SamplesPerPixel"}
_VR = {"float": "DS", "int": "IS", "code": "CS", "uid": "UI", "text": "LO"}
KEYWORDS = sorted(SPECS) + ["InstanceNumber", "SliceLocation", "WindowCenter", "PixelData"]
KEYWORDS += [
    "PatientName",
    "PatientID",
    "PatientSex",
    "PatientBirthDate",
    "StudyDate",
    "StudyTime",
    "StudyID",
]  # into the SEG

SPECIAL = [
    b"",
    b"0",
    b"-1",
    b"1",
    b"nan",
    b"inf",
    b"-inf",
    b"1e308",
    b"-1e308",
    b"1\\2",
    b"1\\2\\3",
    b"1\\0\\0\\0\\1\\0",
    b"0\\1\\0\\0\\0\\-1",
    b"1\\0\\0\\0\\0\\1",
    b"1\\0\\0",
    b"0.0001",
    b"5000",
    b"\xff\xfe\x00",
    b"HEAD",
    b"NECK",
    b"BRAIN",
    b"CT",
    b"MR",
    b"01",
    b"00",
    b"BONE",
    b"H70h",
    b"LOCALIZER",
    b"DERIVED\\PRIMARY",
    b"1.2.3",
    b"1.2.840.10008.5.1.4.1.1.2.1",
    b"IODINE",
    b"MONOCHROME1",
    b"RGB",
    b"12",
    b"16",
    b"8",
    b"2",
    b"\\\\\\",
    b" ",
    b"ID_1234",
]

raw_value = st.one_of(
    st.sampled_from(SPECIAL),
    st.binary(max_size=16),
    st.lists(st.floats(allow_nan=True, allow_infinity=True, width=32), min_size=1, max_size=7).map(
        lambda xs: "\\".join(f"{x:.6g}" for x in xs).encode()[:64]
    ),
    st.lists(st.integers(-(2**31), 2**31), min_size=1, max_size=4).map(lambda xs: "\\".join(map(str, xs)).encode()),
)
target = st.sampled_from([0, 1, 2, "all"])
header_op = st.tuples(st.just("header"), target, st.sampled_from(KEYWORDS), st.one_of(st.none(), raw_value))
pixel_op = st.tuples(
    st.just("pixels"),
    target,
    st.sampled_from(["random", "constant", "zero", "cut", "double", "empty", "scale", "noise"]),
    st.integers(0, 2**32 - 1),
)
file_op = st.tuples(
    st.just("file"),
    st.sampled_from([0, 1, 2]),
    st.sampled_from(["drop", "copy", "cut", "flip"]),
    st.integers(0, 2**32 - 1),
)
mutations = st.lists(st.one_of(header_op, pixel_op, file_op), max_size=4)
outputs = st.sampled_from(["plain"] * 18 + ["seg", "keys"])  # SEG and key images are slow: 1 case in 20 each


class Files(list):
    """File bytes with a short repr (hypothesis prints the arguments of a failing case)."""

    def __repr__(self) -> str:
        return f"<{len(self)} base slice files>"


class Model:
    """The loaded tiny model with a short repr."""

    def __init__(self, loaded: LoadedModel) -> None:
        self.loaded = loaded

    def __repr__(self) -> str:
        return "<tiny model>"


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Files:
    """The unmutated series as file bytes (parsed again for each case that edits a header or pixels)."""
    return Files(p.read_bytes() for p in make_series(tmp_path_factory.mktemp("fuzzbase"), n=N_SLICES, size=64))


@pytest.fixture(scope="module")
def model(tiny_model: Path) -> Any:
    loaded = load_model(tiny_model)
    yield Model(loaded)
    loaded.close()


def _set(ds: pydicom.Dataset, keyword: str, value: bytes | None) -> None:
    if value is None:
        if keyword in ds:
            delattr(ds, keyword)
        return
    if keyword == "PixelData":  # the VR stated: a new element's 'OB or OW' is resolved only in some pydicom states
        ds.add_new(0x7FE00010, "OW", value)
        return
    spec = SPECS.get(keyword)
    if keyword in _US and len(value) <= 6:
        put_raw(ds, keyword, "US", value if len(value) % 2 == 0 else value + b"\x00")
    else:
        put_raw(ds, keyword, _VR[spec.kind] if spec else "LO", value)


def _pixels(ds: pydicom.Dataset, how: str, seed: int) -> None:
    if "PixelData" not in ds:
        return
    rng = np.random.default_rng(seed)
    data = bytes(ds.PixelData)
    arr = np.frombuffer(data[: len(data) // 2 * 2], dtype=np.int16).copy()
    if how == "random":
        arr = rng.integers(-32768, 32767, arr.size).astype(np.int16)
    elif how == "constant":
        arr[:] = int(rng.integers(-3000, 3000))
    elif how == "zero":
        arr[:] = 0
    elif how == "scale":
        arr = np.clip(arr.astype(np.float64) * float(rng.uniform(-4, 4)), -32768, 32767).astype(np.int16)
    elif how == "noise":
        arr = np.clip(arr + rng.normal(0, float(rng.uniform(1, 300)), arr.size), -32768, 32767).astype(np.int16)
    out = arr.tobytes()
    if how == "cut":
        out = data[: int(rng.integers(0, len(data) + 1))]
    elif how == "double":
        out = data + data
    elif how == "empty":
        out = b""
    ds.PixelData = out


def _write(base: list[bytes], ops: list[tuple], root: Path) -> None:
    import io

    edited: dict[int, pydicom.Dataset] = {}
    for op in ops:
        if op[0] in ("header", "pixels"):
            for k in range(N_SLICES) if op[1] == "all" else [op[1]]:
                ds = edited.setdefault(k, pydicom.dcmread(io.BytesIO(base[k])))
                if op[0] == "header":
                    _set(ds, op[2], op[3])
                else:
                    _pixels(ds, op[2], op[3])
    files: list[tuple[str, bytes]] = []
    for k in range(N_SLICES):
        path = root / f"f{k}.dcm"
        if k in edited:
            edited[k].save_as(path)
        else:
            path.write_bytes(base[k])
        files.append((path.name, path.read_bytes()))
    for op in ops:
        if op[0] != "file":
            continue
        name, data = files[op[1]]
        rng = np.random.default_rng(op[3])
        target = root / name
        if op[2] == "drop":
            target.unlink(missing_ok=True)
        elif op[2] == "copy" and target.exists():
            shutil.copy(target, root / f"copy_{name}")
        elif op[2] == "cut":
            target.write_bytes(data[: int(rng.integers(0, len(data) + 1))])
        elif op[2] == "flip":
            raw = bytearray(data)
            for i in rng.integers(0, max(1, min(len(raw), 2000)), size=8):
                raw[int(i)] = int(rng.integers(0, 256))
            target.write_bytes(bytes(raw))


def _clean_message(msg: str) -> None:
    assert msg and "\n" not in msg and len(msg) < 500, msg
    assert PATIENT_NAME not in msg and PATIENT_ID not in msg and "Secret" not in msg, msg


def _check_outcome(out: Path, result: Any, error: EdgeIchError | None) -> None:
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert not [p for p in out.iterdir() if p.name.startswith(".")], "staging or temp file left"
    if error is None:
        report = result.report
        expected = {"report.json", report["outputs"]["mask"], *report["outputs"]["key_images"]}
        if "seg" in report["outputs"]:
            expected.add(report["outputs"]["seg"])
        assert set(files) == expected, files
        on_disk = json.loads((out / "report.json").read_text())
        _validate(on_disk)
        line = summary_line(on_disk)
        assert line.startswith("HEMORRHAGE SUSPECTED") == on_disk["finding"]["hemorrhage"]
        assert (on_disk["finding"]["max_region_probability"] is None) != on_disk["finding"]["hemorrhage"]
        assert PATIENT_NAME not in json.dumps(on_disk) and PATIENT_NAME not in line
    elif isinstance(error, NotAssessable):
        _clean_message(str(error))
        assert files == ["report.json"], files
        report = json.loads((out / "report.json").read_text())
        _validate(report)
        assert report["assessable"] is False and "finding" not in report
        assert PATIENT_NAME not in json.dumps(report)
    else:
        _clean_message(str(error))
        assert files == [], files


_VALIDATOR: list[Any] = []


def _validate(doc: dict[str, Any]) -> None:
    """Validate against report.schema.json (the validator is built once: building it costs more than a run)."""
    if not _VALIDATOR:
        import jsonschema

        schema = json.loads(SCHEMA.read_text())
        jsonschema.Draft202012Validator.check_schema(schema)
        _VALIDATOR.append(jsonschema.Draft202012Validator(schema))
    _VALIDATOR[0].validate(doc)


STATS: dict[str, Any] = {"cases": 0, "answer": 0, "not_assessable": 0, "error": 0, "t0": None}


@settings(
    max_examples=CASES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture],
)
@given(ops=mutations, kind=outputs)
def test_fuzz_run_in_process(base: Files, model: Model, ops: list[tuple], kind: str) -> None:
    if STATS["t0"] is None:
        STATS["t0"] = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix="edge-ich-fuzz-", dir=FAST_TMP))
    try:
        root, out = tmp / "in", tmp / "out"
        root.mkdir()
        _write(base, ops, root)
        opts = RunOptions(series=root, out=out, write_seg=kind == "seg", key_images=3 if kind == "keys" else 0)
        result, error = None, None
        try:
            result = run(opts, model=model.loaded, progress=False)
        except EdgeIchError as exc:  # anything else is a bug and fails the test with the example
            error = exc
        out.mkdir(exist_ok=True)
        _check_outcome(out, result, error)
        STATS["cases"] += 1
        STATS["answer" if error is None else "not_assessable" if isinstance(error, NotAssessable) else "error"] += 1
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def test_fuzz_ran_every_case() -> None:
    """Runs after the fuzzer (file order): it ran all its cases, and all three outcomes occurred."""
    if STATS["t0"] is None:
        pytest.skip("the fuzzer did not run in this session")
    seconds = time.perf_counter() - STATS["t0"]
    print(f"\nfuzzer: {STATS['cases']} cases in {seconds:.0f} s: {STATS}")
    assert STATS["cases"] >= CASES
    assert STATS["answer"] and STATS["not_assessable"] and STATS["error"], STATS


CLI_CASES = [
    [],
    [("header", "all", "ImageOrientationPatient", b"1")],
    [("header", "all", "RescaleSlope", b"0")],
    [("pixels", "all", "cut", 3)],
    [("header", "all", "Modality", b"MR")],
    [("header", 1, "PixelSpacing", b"nan\\nan")],
]


@pytest.mark.parametrize("ops", CLI_CASES, ids=[str(i) for i in range(len(CLI_CASES))])
def test_fuzz_cli_contract(tmp_path: Path, base: list[bytes], tiny_model: Path, ops: list[tuple]) -> None:
    """The same mutations through `python -m edge_ich run`: exit 0 or 1, at most one stderr line, no traceback."""
    root = tmp_path / "in"
    root.mkdir()
    _write(base, ops, root)
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "edge_ich",
            "run",
            "--series",
            str(root),
            "--model",
            str(tiny_model),
            "--out",
            str(tmp_path / "o"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode in (0, 1), res.stderr
    assert "Traceback" not in res.stderr and len(res.stderr.splitlines()) == (res.returncode == 1), res.stderr
    assert len(res.stdout.splitlines()) == (res.returncode == 0)

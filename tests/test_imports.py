"""`import edge_ich` and `edge-ich --help` stay cheap: no torch, onnxruntime or highdicom."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("torch", "onnxruntime", "highdicom", "pynetdicom", "nibabel", "matplotlib", "tensorrt")


def _modules_after(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", code + "\nimport sys, json; print(json.dumps(sorted(sys.modules)))"],
        capture_output=True,
        text=True,
        check=True,
    )
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


def test_import_is_light() -> None:
    mods = _modules_after("import edge_ich, edge_ich.cli")
    assert not [m for m in HEAVY if m in mods]


def test_help_is_light() -> None:
    code = "import sys\nfrom edge_ich.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass"
    mods = _modules_after(code)
    assert not [m for m in HEAVY if m in mods]


def test_help_lists_commands() -> None:
    out = subprocess.run([sys.executable, "-m", "edge_ich", "--help"], capture_output=True, text=True)
    assert out.returncode == 0
    for cmd in ("run", "phantom", "build-engine", "bench", "serve", "doctor"):
        assert cmd in out.stdout


def test_usage_errors_are_one_line_exit_1() -> None:
    for args in (["run", "--bogus"], ["phantom", "--out", "x", "--layout", "foo"], ["bench", "--batch", "0"]):
        out = subprocess.run([sys.executable, "-m", "edge_ich", *args], capture_output=True, text=True)
        assert out.returncode == 1, args
        lines = out.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("edge-ich: error:") and "Traceback" not in out.stderr, out.stderr


def test_no_arguments_prints_help() -> None:
    out = subprocess.run([sys.executable, "-m", "edge_ich"], capture_output=True, text=True)
    assert out.returncode == 0 and "build-engine" in out.stdout

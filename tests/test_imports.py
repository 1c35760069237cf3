"""`import edge_ich` and `edge-ich --help` stay cheap: no torch, onnxruntime or highdicom."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("torch", "onnxruntime", "highdicom", "pynetdicom", "nibabel", "matplotlib", "tensorrt")


def _modules_after(code: str) -> set[str]:
    out = subprocess.run([sys.executable, "-c", code + "\nimport sys, json; print(json.dumps(sorted(sys.modules)))"],
                         capture_output=True, text=True, check=True)
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
    for cmd in ("run", "phantom", "build-engine", "bench", "serve"):
        assert cmd in out.stdout

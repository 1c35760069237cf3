"""`make check-trt` itself: the code passes on TensorRT 10.3 and 11.4, and a copy with removed APIs fails.

The check downloads the real bindings wheels once (into the ignored `.cache/check-trt`, shared
with `make check-trt`), so these tests need a package index, a C compiler, mypy and
pybind11-stubgen the first time.
"""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import pytest

from tools.check_trt.check import VERSIONS, run_check
from tools.check_trt.stubfix import repair, supplement, unshadow
from tools.check_trt.uses import module_uses, split_fullname, trt_modules

REPO = Path(__file__).resolve().parents[2]
CACHE = REPO / ".cache" / "check-trt"

needs_tools = pytest.mark.skipif(
    shutil.which("cc") is None
    or importlib.util.find_spec("mypy") is None
    or importlib.util.find_spec("pybind11_stubgen") is None,
    reason="needs cc, mypy and pybind11-stubgen (pip install 'edge-ich[dev]')",
)

#: APIs TensorRT removed (10.0) or deprecated (11.x), each planted where the code could plausibly use it.
PLANTS = {
    "edge_ich/builder/trt.py": [
        (
            "    config = builder.create_builder_config()\n",
            "    config = builder.create_builder_config()\n    config.max_workspace_size = 1 << 30\n"
            "    config.set_flag(trt.BuilderFlag.DIRECT_IO)\n",
        ),
        ("builder.build_serialized_network(network, config)", "builder.build_engine(network, config)"),
    ],
    "edge_ich/backends/tensorrt.py": [
        (
            "self.context.execute_async_v3(self._stream_handle)",
            "self.context.execute_async_v2([], self._stream_handle)",
        ),
    ],
}


def _copy_with_plants(dst: Path) -> None:
    shutil.copytree(REPO / "edge_ich", dst / "edge_ich", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", dst / "pyproject.toml")
    for rel, subs in PLANTS.items():
        path = dst / rel
        text = path.read_text()
        for old, new in subs:
            assert text.count(old) == 1, f"the plant site {old!r} moved in {rel}: update PLANTS"
            text = text.replace(old, new)
        path.write_text(text)


@pytest.mark.slow
@needs_tools
def test_the_code_passes_on_both_versions() -> None:
    lines: list[str] = []
    assert run_check(REPO, CACHE, echo=lines.append), "\n".join(lines)
    out = "\n".join(lines)
    for v in VERSIONS:
        assert f"TensorRT {v}:" in out
    assert "IExecutionContext.execute_async_v3" not in out  # listed only with --verbose
    assert out.splitlines()[-1] == f"check-trt: PASS on TensorRT {' and '.join(VERSIONS)}"


@pytest.mark.slow
@needs_tools
def test_removed_and_deprecated_apis_fail_the_check(tmp_path: Path) -> None:
    _copy_with_plants(tmp_path)
    lines: list[str] = []
    assert not run_check(tmp_path, CACHE, echo=lines.append)
    fails = [ln for ln in lines if ln.strip().startswith("FAIL")]
    text = "\n".join(fails)
    for attr, owner in [
        ("max_workspace_size", "IBuilderConfig"),
        ("build_engine", "Builder"),
        ("execute_async_v2", "IExecutionContext"),
    ]:  # mypy, with trt typed, on each version
        hits = [ln for ln in fails if f'"{owner}" has no attribute "{attr}"' in ln]
        assert len(hits) == len(VERSIONS), text
    assert f"BuilderFlag.DIRECT_IO: deprecated in TensorRT {VERSIONS[1]}" in text  # the probe, from the real docstring
    assert f"deprecated in TensorRT {VERSIONS[0]}" not in text  # 10.3 does not mark it
    assert lines[-1].startswith("check-trt: FAIL")


def test_trt_modules_are_found_by_their_imports() -> None:
    found = {str(p.relative_to(REPO)) for p in trt_modules(REPO)}
    assert {"edge_ich/builder/trt.py", "edge_ich/backends/tensorrt.py"} <= found
    assert "edge_ich/cli.py" not in found
    uses, guarded = module_uses(REPO, REPO / "edge_ich" / "builder" / "trt.py")
    assert {"Builder", "OnnxParser", "Runtime"} <= {u.name for u in uses if u.owner == ""}
    assert split_fullname("tensorrt_bindings.tensorrt.IBuilderConfig.set_flag") == ("IBuilderConfig", "set_flag")
    assert split_fullname("tensorrt_bindings.nptype") == ("", "nptype")
    assert split_fullname("numpy.ndarray.shape") is None


def test_stub_repairs() -> None:
    src = (
        "from __future__ import annotations\nimport typing\n"
        "class P:\n"
        "    def f(self, in: list[int], out: list[int]) -> bool:\n        ...\n"
        "    def g(self, a: int = 1, b: int) -> None:\n        ...\n"
        "class Dims:\n"
        "    def __getitem__(self, arg0: int) -> int:\n        ...\n"
        "    def __len__(self) -> int:\n        ...\n"
        "bool: int\n"
    )
    text, rep = repair(src)
    assert rep.fixed == 2 and not rep.loosened
    assert "def f(self, in_: list[int], out: list[int]) -> builtins.bool:" in text
    assert "def g(self, a: int = 1, b: int = ...) -> None:" in text
    assert "\nbool: int" in text and "import builtins" in text
    text, added = supplement(text)
    assert added == ["Dims.__iter__"] and "def __iter__(self) -> typing.Iterator[int]: ..." in text
    assert unshadow("x: bool\n") == "x: bool\n"  # nothing shadows bool here

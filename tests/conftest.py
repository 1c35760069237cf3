from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.tinymodel import build_tiny_model


def _has_gpu() -> bool:
    if shutil.which("nvidia-smi") is None:
        return False
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        return False
    return True


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if _has_gpu():
        return
    skip = pytest.mark.skip(reason="needs an NVIDIA GPU with TensorRT")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real tiny ONNX segmenter (64x64 input, context 1, 3 windows) with its card."""
    return build_tiny_model(tmp_path_factory.mktemp("model"))


@pytest.fixture(scope="session")
def real_ct_files() -> dict[str, Path]:
    """Real CT files shipped by pydicom and pydicom-data (offline)."""
    from pydicom.data import get_testdata_file

    out = {}
    for name in ("693_UNCR.dcm", "J2K_pixelrep_mismatch.dcm", "CT_small.dcm"):
        p = get_testdata_file(name)
        if p:
            out[name] = Path(p)
    return out

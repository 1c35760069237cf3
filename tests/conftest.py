from __future__ import annotations

from pathlib import Path

import pytest

from tests.tinymodel import build_tiny_model


def gpu_missing() -> str | None:
    """Why the gpu tests cannot run here (None: they can), by the project's own probe.

    The driver is asked through libcuda, as the runtime does, so a Jetson without nvidia-smi runs them.
    """
    from edge_ich.backends.cudainfo import probe_cuda

    try:
        import tensorrt  # noqa: F401
    except ImportError:
        return "needs TensorRT (see edge-ich doctor)"
    cuda = probe_cuda()
    if not cuda.has_gpu:
        return f"needs an NVIDIA GPU ({cuda.driver_error or 'the driver reports none'})"
    if cuda.bindings is None:
        return f"needs CUDA Python bindings ({'; '.join(cuda.problems) or 'cuda-python or pycuda'})"
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not any("gpu" in item.keywords for item in items):
        return
    why = gpu_missing()
    if why is None:
        return
    skip = pytest.mark.skip(reason=why)
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

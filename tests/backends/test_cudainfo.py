"""The project's own CUDA probe (libcuda, then cuda-python / pycuda), and what a driver mismatch says."""

from __future__ import annotations

import importlib.util

import pytest

from edge_ich.backends.cudainfo import bindings_problem, cuda_version, probe_cuda
from edge_ich.backends.tensorrt_cuda import open_cuda
from edge_ich.errors import MissingDependency


def test_versions_decode() -> None:
    assert cuda_version(12060) == "12.6" and cuda_version(13000) == "13.0"


def test_cuda13_bindings_on_a_jetpack6_driver_name_the_fix() -> None:
    why = bindings_problem("13.0", "12.6", "cuda-python 13.0.1")
    assert why is not None
    assert "cudaErrorInsufficientDriver" in why and "pip install 'cuda-python>=12,<13'" in why
    assert bindings_problem("12.9", "12.6") is None  # minor versions are compatible
    assert bindings_problem("12.6", "13.0") is None  # a newer driver runs older bindings
    assert bindings_problem("13.0", None) is None  # no driver: no GPU, not a wrong package


def test_probe_on_a_machine_without_driver() -> None:
    info = probe_cuda()
    if info.driver is not None:
        pytest.skip("an NVIDIA driver is present")
    assert not info.has_gpu and info.devices == [] and "libcuda" in (info.driver_error or "")


@pytest.mark.skipif(
    importlib.util.find_spec("cuda") is not None or importlib.util.find_spec("pycuda") is not None,
    reason="CUDA Python bindings are installed here",
)
def test_without_any_bindings_the_install_line_is_named() -> None:
    with pytest.raises(MissingDependency) as err:
        open_cuda()
    msg = str(err.value)
    assert "cuda-python>=12.6,<13" in msg and "pycuda" in msg

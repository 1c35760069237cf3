"""What CUDA this machine has, asked without nvidia-smi (Jetson images have none): never raises.

The driver is asked directly through libcuda (`cuDriverGetVersion`, `cuDeviceGet*`), which exists
wherever an NVIDIA driver is installed (JetPack included) and needs no Python package. The CUDA
Python bindings (cuda-python, else pycuda) are then asked what they can do: cuda-python 13.x on a
CUDA 12 driver (JetPack 6) answers `cudaErrorInsufficientDriver`, which is a wrong-package
problem with a fix, not a missing GPU.
"""

from __future__ import annotations

import ctypes
import importlib
import importlib.metadata
import importlib.util
from dataclasses import dataclass, field
from typing import Any

from edge_ich.host.install import CUDA_PYTHON_INSTALL

#: CUdevice_attribute values of the CUDA driver API (stable ABI): compute capability major / minor.
_CC_MAJOR, _CC_MINOR = 75, 76
_LIBCUDA = ("libcuda.so.1", "libcuda.so")


@dataclass
class GpuDevice:
    name: str
    compute_capability: str
    memory_mb: float | None = None


@dataclass
class CudaInfo:
    """The driver (libcuda), its devices, and which Python bindings can use them."""

    driver: str | None = None  # CUDA version the driver supports ("12.6"); None: no NVIDIA driver
    devices: list[GpuDevice] = field(default_factory=list)
    driver_error: str | None = None
    bindings: str | None = None  # "cuda-python 12.9.10" / "pycuda 2024.1": the ones that work here
    runtime: str | None = None  # the CUDA runtime those bindings carry
    problems: list[str] = field(default_factory=list)  # why installed bindings cannot be used

    @property
    def has_gpu(self) -> bool:
        return bool(self.devices)


def cuda_version(v: int) -> str:
    """12060 -> '12.6' (the encoding of cudaDriverGetVersion / cuDriverGetVersion)."""
    return f"{v // 1000}.{(v % 1000) // 10}"


def _libcuda() -> Any | None:
    for name in _LIBCUDA:
        try:
            return ctypes.CDLL(name)
        except OSError:
            continue
    return None


def probe_driver(info: CudaInfo) -> None:
    """Driver version and devices straight from libcuda."""
    lib = _libcuda()
    if lib is None:
        info.driver_error = "no NVIDIA driver (libcuda) on this machine"
        return
    v = ctypes.c_int(0)
    if lib.cuDriverGetVersion(ctypes.byref(v)) == 0 and v.value > 0:
        info.driver = cuda_version(v.value)
    rc = lib.cuInit(0)
    if rc != 0:
        info.driver_error = f"the NVIDIA driver does not initialise (CUresult {rc}): no usable GPU"
        return
    n = ctypes.c_int(0)
    if lib.cuDeviceGetCount(ctypes.byref(n)) != 0:
        return
    for i in range(n.value):
        dev, major, minor = ctypes.c_int(0), ctypes.c_int(0), ctypes.c_int(0)
        if lib.cuDeviceGet(ctypes.byref(dev), i) != 0:
            continue
        name = ctypes.create_string_buffer(256)
        lib.cuDeviceGetName(name, 256, dev)
        lib.cuDeviceGetAttribute(ctypes.byref(major), _CC_MAJOR, dev)
        lib.cuDeviceGetAttribute(ctypes.byref(minor), _CC_MINOR, dev)
        mem = ctypes.c_size_t(0)
        total = getattr(lib, "cuDeviceTotalMem_v2", None)
        mb = round(mem.value / 2**20, 1) if total is not None and total(ctypes.byref(mem), dev) == 0 else None
        info.devices.append(GpuDevice(name.value.decode(errors="replace"), f"{major.value}.{minor.value}", mb))


def import_cudart() -> Any | None:
    """cuda-python's runtime module (`cuda.bindings.runtime`; `cuda.cudart` before 12.8), or None."""
    for name in ("cuda.bindings.runtime", "cuda.cudart"):
        try:
            if importlib.util.find_spec(name.rsplit(".", 1)[0]) is None:
                continue
            return importlib.import_module(name)
        except Exception:
            continue
    return None


def package_version(*names: str) -> str | None:
    for n in names:
        try:
            return importlib.metadata.version(n)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def bindings_problem(runtime: str | None, driver: str | None, package: str = "cuda-python") -> str | None:
    """Why bindings built for CUDA `runtime` cannot run on a driver for CUDA `driver` (None: they can, or no driver)."""
    if runtime is None or driver is None:
        return None
    rt_major, drv_major = int(runtime.split(".")[0]), int(driver.split(".")[0])
    if rt_major <= drv_major:
        return None
    return (
        f"{package} is built for CUDA {runtime} but this NVIDIA driver supports CUDA {driver} "
        f"(cudaErrorInsufficientDriver); install bindings for CUDA {drv_major}: "
        f"pip install 'cuda-python>={drv_major},<{drv_major + 1}'"
    )


def probe_cuda_python(info: CudaInfo) -> None:
    rt = import_cudart()
    if rt is None:
        return
    pkg = f"cuda-python {package_version('cuda-python', 'cuda-bindings') or '?'}"
    try:
        err, v = rt.cudaRuntimeGetVersion()
        runtime = cuda_version(int(v)) if int(err) == 0 else None
        err, n = rt.cudaGetDeviceCount()
        ok = err == rt.cudaError_t.cudaSuccess and int(n or 0) > 0
        name = getattr(err, "name", str(err))
    except Exception as exc:  # a broken install must not stop a diagnosis
        info.problems.append(f"{pkg} does not work here: {type(exc).__name__}: {exc}")
        return
    if ok:
        info.bindings, info.runtime = pkg, runtime
        return
    why = bindings_problem(runtime, info.driver, pkg)
    if why:
        info.problems.append(why)
    elif info.driver is not None:
        info.problems.append(f"{pkg} sees no usable GPU ({name})")


def probe_pycuda(info: CudaInfo) -> None:
    if importlib.util.find_spec("pycuda") is None:
        return
    pkg = f"pycuda {package_version('pycuda') or '?'}"
    try:
        import pycuda.driver as drv

        drv.init()
        if drv.Device.count():
            info.bindings = info.bindings or pkg
            info.runtime = info.runtime or ".".join(str(x) for x in drv.get_version()[:2])
        else:
            info.problems.append(f"{pkg} sees no GPU")
    except Exception as exc:
        info.problems.append(f"{pkg} does not work here: {type(exc).__name__}")


def probe_cuda() -> CudaInfo:
    """The driver, its devices and working bindings; each failure is a line in `problems`, nothing raises."""
    info = CudaInfo()
    try:
        probe_driver(info)
    except Exception as exc:  # pragma: no cover - a libcuda that does not behave like one
        info.driver_error = f"libcuda did not answer: {type(exc).__name__}"
    if info.driver is not None:
        probe_cuda_python(info)
        if info.bindings is None:
            probe_pycuda(info)
        if info.bindings is None and not info.problems:
            info.problems.append(f"no CUDA Python bindings: {CUDA_PYTHON_INSTALL}")
    return info

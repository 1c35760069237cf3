"""CUDA memory, streams, events and graphs for the TensorRT backend: cuda-python, else pycuda.

cuda-python is what NVIDIA's samples use (`cuda.bindings.runtime`; `cuda.cudart` before
cuda-bindings 13). pycuda is common on JetPack images. Both give pinned host memory (mapped for
zero-copy on Jetson's shared DRAM), async copies on one non-default stream, and event timing;
CUDA graphs need cuda-python.
"""

from __future__ import annotations

import ctypes
from typing import Any

import numpy as np

from edge_ich.errors import MissingDependency, ModelError
from edge_ich.host.install import CUDA_PYTHON_INSTALL


class CudaBindingsMismatch(MissingDependency):
    """cuda-python is installed but built for a newer CUDA than the driver (the message says what to install)."""


def host_view(ptr: int, nbytes: int, dtype: np.dtype, shape: tuple[int, ...]) -> np.ndarray:
    """A numpy array over `nbytes` of host memory at `ptr` (pinned memory we own)."""
    buf = (ctypes.c_byte * nbytes).from_address(int(ptr))
    return np.frombuffer(memoryview(buf), dtype=dtype, count=int(np.prod(shape))).reshape(shape)


class CudaRuntime:
    """cuda-python's runtime API with errors turned into ModelError."""

    name = "cuda-python"
    graphs = True

    def __init__(self) -> None:
        from edge_ich.backends.cudainfo import CudaInfo, bindings_problem, cuda_version, import_cudart, probe_driver

        cudart = import_cudart()
        if cudart is None:
            raise MissingDependency(f"cuda-python is not installed ({CUDA_PYTHON_INSTALL})")
        self.rt = cudart
        err, n = cudart.cudaGetDeviceCount()
        if err != cudart.cudaError_t.cudaSuccess or not n:
            name = err.name if hasattr(err, "name") else str(err)
            drv = CudaInfo()
            probe_driver(drv)
            rerr, rv = cudart.cudaRuntimeGetVersion()
            runtime = cuda_version(int(rv)) if rerr == cudart.cudaError_t.cudaSuccess else None
            why = bindings_problem(runtime, drv.driver)
            if why:  # the wrong cuda-python for this driver (13.x on JetPack 6): pycuda may still do
                raise CudaBindingsMismatch(why)
            raise ModelError(f"no CUDA GPU is usable here ({drv.driver_error or name})")

    def _ok(self, res: Any) -> Any:
        err, *rest = res if isinstance(res, tuple) else (res,)
        if err != self.rt.cudaError_t.cudaSuccess:
            raise ModelError(f"CUDA call failed: {err.name if hasattr(err, 'name') else err}")
        return rest[0] if len(rest) == 1 else (tuple(rest) or None)

    def malloc(self, nbytes: int) -> int:
        return int(self._ok(self.rt.cudaMalloc(nbytes)))

    def free(self, ptr: int) -> None:
        self._ok(self.rt.cudaFree(ptr))

    def host_alloc(self, nbytes: int, mapped: bool) -> tuple[int, int | None]:
        """Pinned host memory; with `mapped`, also its device address (zero-copy)."""
        flags = self.rt.cudaHostAllocMapped if mapped else self.rt.cudaHostAllocDefault
        ptr = int(self._ok(self.rt.cudaHostAlloc(nbytes, flags)))
        dev = int(self._ok(self.rt.cudaHostGetDevicePointer(ptr, 0))) if mapped else None
        return ptr, dev

    def free_host(self, ptr: int) -> None:
        self._ok(self.rt.cudaFreeHost(ptr))

    def stream(self) -> Any:
        return self._ok(self.rt.cudaStreamCreateWithFlags(self.rt.cudaStreamNonBlocking))

    def stream_handle(self, stream: Any) -> int:
        return int(stream)

    def htod(self, dev: int, host: int, nbytes: int, stream: Any) -> None:
        self._ok(self.rt.cudaMemcpyAsync(dev, host, nbytes, self.rt.cudaMemcpyKind.cudaMemcpyHostToDevice, stream))

    def dtoh(self, host: int, dev: int, nbytes: int, stream: Any) -> None:
        self._ok(self.rt.cudaMemcpyAsync(host, dev, nbytes, self.rt.cudaMemcpyKind.cudaMemcpyDeviceToHost, stream))

    def event(self) -> Any:
        return self._ok(self.rt.cudaEventCreate())

    def record(self, ev: Any, stream: Any) -> None:
        self._ok(self.rt.cudaEventRecord(ev, stream))

    def elapsed_s(self, a: Any, b: Any) -> float:
        return float(self._ok(self.rt.cudaEventElapsedTime(a, b))) / 1000.0

    def sync(self, stream: Any) -> None:
        self._ok(self.rt.cudaStreamSynchronize(stream))

    def capture(self, stream: Any, work: Any) -> Any:
        """Capture `work()` on `stream` into an instantiated CUDA graph."""
        self._ok(self.rt.cudaStreamBeginCapture(stream, self.rt.cudaStreamCaptureMode.cudaStreamCaptureModeGlobal))
        try:
            work()
        finally:
            graph = self._ok(self.rt.cudaStreamEndCapture(stream))
        exe = self._ok(self.rt.cudaGraphInstantiate(graph, 0))
        self._ok(self.rt.cudaGraphDestroy(graph))
        return exe

    def launch(self, exe: Any, stream: Any) -> None:
        self._ok(self.rt.cudaGraphLaunch(exe, stream))

    def destroy(self, kind: str, obj: Any) -> None:
        fn = {
            "graph": self.rt.cudaGraphExecDestroy,
            "event": self.rt.cudaEventDestroy,
            "stream": self.rt.cudaStreamDestroy,
        }[kind]
        fn(obj)

    def close(self) -> None:
        """The runtime API's primary context lives as long as the process."""


class PyCuda:
    """pycuda's driver API on the device's primary context (the one TensorRT's runtime API uses)."""

    name = "pycuda"
    graphs = False

    def __init__(self) -> None:
        try:
            import pycuda.driver as drv
        except ImportError:
            raise MissingDependency(f"neither cuda-python nor pycuda is installed ({CUDA_PYTHON_INSTALL})") from None
        self.drv = drv
        drv.init()
        if not drv.Device.count():
            raise ModelError("no CUDA GPU is usable here")
        self.ctx = drv.Device(0).retain_primary_context()
        self.ctx.push()
        self._host: dict[int, Any] = {}

    def malloc(self, nbytes: int) -> int:
        alloc = self.drv.mem_alloc(nbytes)
        self._host[int(alloc)] = alloc
        return int(alloc)

    def free(self, ptr: int) -> None:
        self._host.pop(ptr).free()

    def host_alloc(self, nbytes: int, mapped: bool) -> tuple[int, int | None]:
        flags = self.drv.host_alloc_flags.DEVICEMAP if mapped else 0
        arr = self.drv.pagelocked_empty(nbytes, np.uint8, mem_flags=flags)
        ptr = int(arr.ctypes.data)
        self._host[ptr] = arr
        return ptr, (int(arr.base.get_device_pointer()) if mapped else None)

    def free_host(self, ptr: int) -> None:
        self._host.pop(ptr).base.free()

    def stream(self) -> Any:
        return self.drv.Stream()

    def stream_handle(self, stream: Any) -> int:
        return int(stream.handle)

    def htod(self, dev: int, host: int, nbytes: int, stream: Any) -> None:
        self.drv.memcpy_htod_async(dev, self._host[host][:nbytes], stream)

    def dtoh(self, host: int, dev: int, nbytes: int, stream: Any) -> None:
        self.drv.memcpy_dtoh_async(self._host[host][:nbytes], dev, stream)

    def event(self) -> Any:
        return self.drv.Event()

    def record(self, ev: Any, stream: Any) -> None:
        ev.record(stream)

    def elapsed_s(self, a: Any, b: Any) -> float:
        return float(b.time_since(a)) / 1000.0

    def sync(self, stream: Any) -> None:
        stream.synchronize()

    def capture(self, stream: Any, work: Any) -> Any:
        raise ModelError("CUDA graphs need cuda-python (pip install 'edge-ich[trt]'); pycuda cannot capture them here")

    def launch(self, exe: Any, stream: Any) -> None:  # pragma: no cover - capture refuses first
        raise ModelError("CUDA graphs need cuda-python")

    def destroy(self, kind: str, obj: Any) -> None:
        """pycuda frees streams and events with their Python objects."""

    def close(self) -> None:
        self.ctx.pop()


def open_cuda() -> CudaRuntime | PyCuda:
    """cuda-python when it fits this driver, else pycuda; else MissingDependency saying what to install.

    cuda-python built for a newer CUDA than the driver (13.x on JetPack 6's CUDA 12.6) answers
    cudaErrorInsufficientDriver: pycuda is tried next, and without it the error names the
    cuda-python that fits.
    """
    try:
        return CudaRuntime()
    except MissingDependency as first:
        try:
            return PyCuda()
        except MissingDependency:
            raise first from None

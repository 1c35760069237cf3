"""TensorRT on an NVIDIA GPU (Jetson Orin or workstation): a `.plan` whose manifest matches.

The engine is loaded only when its manifest matches this machine (TensorRT version, compute
capability) and the card (ONNX and preprocessing hashes); otherwise the error says how to
rebuild. I/O goes through pinned host buffers and one non-default stream (`copy`), or mapped
pinned memory the GPU reads directly (`mapped`, zero-copy on Jetson's shared DRAM). An optional
CUDA graph replays the enqueue per batch size. `last_times` splits H2D / compute / D2H by
CUDA events. The same name-based tensor API runs on TensorRT 10.3 and 11.x.
"""

from __future__ import annotations

import enum
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edge_ich.backends.base import Backend, BackendInfo, InferTimes, IOMeta
from edge_ich.card import ModelCard
from edge_ich.errors import InputError, ModelError

if TYPE_CHECKING:  # typed by the stubs `make check-trt` generates from the real bindings
    import tensorrt as trt

    from edge_ich.backends.manifest import EngineManifest
    from edge_ich.backends.tensorrt_cuda import CudaRuntime, PyCuda


class IOMode(str, enum.Enum):
    """How inputs reach the GPU: explicit async copies, or mapped (zero-copy) pinned memory."""

    COPY = "copy"
    MAPPED = "mapped"


class _Tensor:
    """One engine I/O tensor with its pinned host view and device address, sized for the max batch."""

    def __init__(self, name: str, is_input: bool, dtype: np.dtype, shape: tuple[int, ...]) -> None:
        self.name, self.is_input, self.dtype, self.shape = name, is_input, dtype, shape
        self.nbytes = int(np.prod(shape)) * dtype.itemsize
        self.host_ptr = 0
        self.dev_ptr = 0
        self.own_dev = False
        self.host: np.ndarray = np.empty(0, dtype)


class TensorRTBackend(Backend):
    """A deserialized engine, its execution context, buffers and stream."""

    cuda: CudaRuntime | PyCuda | None
    runtime: trt.Runtime
    engine: trt.ICudaEngine
    context: trt.IExecutionContext

    def __init__(
        self,
        plan_path: Path,
        card: ModelCard,
        io_mode: IOMode | str = IOMode.COPY,
        cuda_graph: bool = False,
        warmup: int = 2,
    ) -> None:
        super().__init__(card)
        from edge_ich.backends.manifest import MachineInfo, check_manifest, load_manifest, load_trt

        plan_path = Path(plan_path)
        try:
            self.io_mode = IOMode(io_mode)
        except ValueError:
            raise InputError(f"I/O mode must be copy or mapped, not {io_mode!r}") from None
        if plan_path.suffix != ".plan":
            raise ModelError(
                f"the tensorrt backend needs a .plan engine, not {plan_path.name}; build one with "
                f"`edge-ich build-engine {plan_path.name} --precision fp16|int8` on this machine"
            )
        if not plan_path.is_file():
            raise ModelError(f"engine file not found: {plan_path}")
        manifest = load_manifest(plan_path)
        load_trt()
        check_manifest(manifest, card, MachineInfo.probe(), plan_path)
        from edge_ich.backends.tensorrt_cuda import open_cuda

        self.cuda = open_cuda()
        try:
            self._load(plan_path, card, manifest, cuda_graph, warmup)
        except BaseException:
            self.close()
            raise

    @property
    def _cu(self) -> CudaRuntime | PyCuda:
        if self.cuda is None:
            raise ModelError("the TensorRT backend is closed")
        return self.cuda

    def _load(self, plan_path: Path, card: ModelCard, manifest: EngineManifest, cuda_graph: bool, warmup: int) -> None:
        import tensorrt as trt

        cu = self._cu
        self.manifest = manifest
        self.cuda_graph = bool(cuda_graph)
        if self.cuda_graph and not cu.graphs:
            raise ModelError(
                "CUDA graphs need cuda-python (pip install 'edge-ich[trt]'); run without the CUDA graph option"
            )
        self._graphs: dict[int, Any] = {}
        self.logger = trt.Logger(trt.Logger.WARNING)
        self.runtime = trt.Runtime(self.logger)
        engine: trt.ICudaEngine | None = self.runtime.deserialize_cuda_engine(plan_path.read_bytes())
        if engine is None:  # the bindings return None for a plan this TensorRT cannot read
            raise ModelError(
                f"TensorRT could not deserialize {plan_path.name}; rebuild it on this machine: {manifest.rebuild_command}"
            )
        self.engine = engine
        self.context = engine.create_execution_context()
        self.stream = cu.stream()
        self._stream_handle = cu.stream_handle(self.stream)
        self._events = [cu.event() for _ in range(4)]
        self._tensors = self._allocate()
        self._in = next((t for t in self._tensors if t.is_input and t.name == card.input_name), None)
        self._out = next((t for t in self._tensors if not t.is_input and t.name == card.output_name), None)
        if self._in is None or self._out is None:
            names = [t.name for t in self._tensors]
            raise ModelError(
                f"engine tensors {names} do not include the card's {card.input_name!r} and {card.output_name!r}"
            )
        for _ in range(max(0, warmup)):
            self._run(np.zeros((self.opt_batch, *self._in.shape[1:]), np.float32))
        self.last_times = InferTimes()
        self.info = BackendInfo(
            "tensorrt",
            manifest.gpu_name or "cuda",
            manifest.precision,
            {
                "tensorrt": str(trt.__version__),
                "cuda": cu.name,
                "io_mode": self.io_mode.value,
                "cuda_graph": str(self.cuda_graph),
                "max_batch": str(self.max_batch),
                "engine": plan_path.name,
            },
        )

    def _allocate(self) -> list[_Tensor]:
        """Buffers for every I/O tensor at the profile's max batch; tensor addresses are set once."""
        import tensorrt as trt

        from edge_ich.backends.tensorrt_cuda import host_view

        cu, eng = self._cu, self.engine
        tensors = []
        self.max_batch, self.opt_batch = 1, 1
        for i in range(eng.num_io_tensors):
            name = eng.get_tensor_name(i)
            is_in = eng.get_tensor_mode(name) == trt.TensorIOMode.INPUT
            if is_in:
                _mn, opt, mx = eng.get_tensor_profile_shape(name, 0)
                self.max_batch, self.opt_batch = int(mx[0]), int(opt[0])
        for i in range(eng.num_io_tensors):
            name = eng.get_tensor_name(i)
            is_in = eng.get_tensor_mode(name) == trt.TensorIOMode.INPUT
            shape = tuple(int(v) for v in eng.get_tensor_shape(name))
            shape = (self.max_batch, *shape[1:]) if shape and shape[0] < 0 else shape
            if any(v < 0 for v in shape):
                raise ModelError(f"engine tensor {name} has a dynamic dimension other than the batch: {shape}")
            t = _Tensor(name, is_in, np.dtype(trt.nptype(eng.get_tensor_dtype(name))), shape)
            mapped = self.io_mode is IOMode.MAPPED
            t.host_ptr, mapped_dev = cu.host_alloc(t.nbytes, mapped)
            t.host = host_view(t.host_ptr, t.nbytes, t.dtype, shape)
            if mapped_dev is not None:
                t.dev_ptr = mapped_dev
            else:
                t.dev_ptr, t.own_dev = cu.malloc(t.nbytes), True
            if not self.context.set_tensor_address(name, t.dev_ptr):
                raise ModelError(f"TensorRT refused the buffer address of tensor {name}")
            tensors.append(t)
        return tensors

    @property
    def inputs(self) -> list[IOMeta]:
        return [IOMeta(t.name, ("N", *t.shape[1:]), str(t.dtype)) for t in self._tensors if t.is_input]

    @property
    def outputs(self) -> list[IOMeta]:
        return [IOMeta(t.name, ("N", *t.shape[1:]), str(t.dtype)) for t in self._tensors if not t.is_input]

    def _enqueue(self) -> None:
        if not self.context.execute_async_v3(self._stream_handle):
            raise ModelError("TensorRT failed to enqueue the engine")

    def _run(self, batch: np.ndarray) -> tuple[np.ndarray, InferTimes]:
        """One chunk of at most max_batch slices through the engine; returns (output copy, times)."""
        assert self._in is not None and self._out is not None
        n = len(batch)
        cu, s, (e0, e1, e2, e3) = self._cu, self.stream, self._events
        if not self.context.set_input_shape(self._in.name, tuple(batch.shape)):
            raise InputError(
                f"batch shape {tuple(batch.shape)} is outside the engine profile (max batch {self.max_batch})"
            )
        self._in.host[:n] = batch.astype(self._in.dtype, copy=False)
        copy = self.io_mode is IOMode.COPY
        nin = n * self._in.nbytes // self.max_batch
        nout = n * self._out.nbytes // self.max_batch
        cu.record(e0, s)
        if copy:
            cu.htod(self._in.dev_ptr, self._in.host_ptr, nin, s)
        cu.record(e1, s)
        if self.cuda_graph:
            if n not in self._graphs:  # one plain run for this shape, then capture the enqueue
                self._enqueue()
                cu.sync(s)
                self._graphs[n] = cu.capture(s, self._enqueue)
            cu.launch(self._graphs[n], s)
        else:
            self._enqueue()
        cu.record(e2, s)
        if copy:
            cu.dtoh(self._out.host_ptr, self._out.dev_ptr, nout, s)
        cu.record(e3, s)
        cu.sync(s)
        times = InferTimes(cu.elapsed_s(e0, e1), cu.elapsed_s(e1, e2), cu.elapsed_s(e2, e3))
        return self._out.host[:n].astype(np.float32, copy=True), times

    def _infer(self, batch: np.ndarray) -> np.ndarray:
        outs, total = [], InferTimes()
        for a in range(0, len(batch), self.max_batch):
            out, t = self._run(batch[a : a + self.max_batch])
            outs.append(out)
            total = InferTimes(total.h2d + t.h2d, total.compute + t.compute, total.d2h + t.d2h)
        self.last_times = total
        return np.concatenate(outs)

    def close(self) -> None:
        cu = getattr(self, "cuda", None)
        if cu is None:
            return
        for exe in getattr(self, "_graphs", {}).values():
            cu.destroy("graph", exe)
        self._graphs = {}
        for t in getattr(self, "_tensors", []):
            if t.own_dev:
                cu.free(t.dev_ptr)
            cu.free_host(t.host_ptr)
        self._tensors = []
        for ev in getattr(self, "_events", []):
            cu.destroy("event", ev)
        if getattr(self, "stream", None) is not None:
            cu.destroy("stream", self.stream)
            self.stream = None
        for name in ("context", "engine", "runtime"):  # TensorRT objects go before the CUDA context
            self.__dict__.pop(name, None)
        cu.close()
        self.cuda = None

"""The TensorRT builder: a strongly typed network from a precision ONNX, on TensorRT 10.3 and 11.x.

Precision comes from the ONNX (FP16 tensors, INT8 Q/DQ); no builder precision flags and no
calibrators are used (both are gone in 11.x). Names are looked up, never enum integer values
hard-coded; names that exist on one version only are guarded with `hasattr`.
"""

from __future__ import annotations

import shlex
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge_ich.backends.manifest import TRTEXEC_PINNED_FLAGS, TrtVersion, load_trt
from edge_ich.errors import InputError, ModelError


@dataclass
class BuildSpec:
    """What the engine is built for: the input, its fixed H/W, the batch profile and builder limits."""

    input_name: str
    channels: int
    height: int
    width: int
    opt_batch: int = 4
    max_batch: int | None = None
    workspace_mb: int = 1024
    optimization_level: int = 3
    dla_core: int | None = None
    timing_cache: Path | None = None

    def __post_init__(self) -> None:
        if self.opt_batch < 1:
            raise InputError("the engine batch must be at least 1")
        if self.max_batch is None:
            self.max_batch = max(self.opt_batch, 2 * self.opt_batch)
        if self.max_batch < self.opt_batch:
            raise InputError(f"max batch {self.max_batch} is below the optimised batch {self.opt_batch}")
        if not 0 <= self.optimization_level <= 5:
            raise InputError("TensorRT builder optimization level must be 0-5")
        if self.workspace_mb < 16:
            raise InputError("the TensorRT workspace cap must be at least 16 MB")
        if self.dla_core is not None and self.dla_core not in (0, 1):
            raise InputError("DLA core must be 0 or 1 (Orin NX/AGX have two; Orin Nano has none)")

    def shapes(self) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
        """min/opt/max input shapes: fixed H/W, dynamic batch optimised for the batch actually used."""
        c, h, w = self.channels, self.height, self.width
        return (1, c, h, w), (self.opt_batch, c, h, w), (int(self.max_batch or self.opt_batch), c, h, w)

    def profile_dict(self) -> dict[str, Any]:
        mn, opt, mx = self.shapes()
        return {"input": self.input_name, "min": list(mn), "opt": list(opt), "max": list(mx)}

    def trtexec_line(self, onnx: Path, plan: Path) -> str:
        """The equivalent trtexec command (flags that differ between 10.3 and 11.x pinned)."""

        def shp(s: tuple[int, ...]) -> str:
            return f"{self.input_name}:{'x'.join(str(v) for v in s)}"

        mn, opt, mx = self.shapes()
        parts = [
            "trtexec",
            f"--onnx={onnx}",
            "--stronglyTyped",
            f"--saveEngine={plan}",
            f"--minShapes={shp(mn)}",
            f"--optShapes={shp(opt)}",
            f"--maxShapes={shp(mx)}",
            f"--memPoolSize=workspace:{self.workspace_mb}M",
            f"--builderOptimizationLevel={self.optimization_level}",
            *TRTEXEC_PINNED_FLAGS,
        ]
        if self.timing_cache:
            parts.append(f"--timingCacheFile={self.timing_cache}")
        if self.dla_core is not None:
            parts += [f"--useDLACore={self.dla_core}", "--allowGPUFallback"]
        return " ".join(shlex.quote(p) for p in parts)


def network_flags(version: TrtVersion) -> int:
    """Creation flags: STRONGLY_TYPED on 10.x (opt-in there); none on 11.x, always strongly typed (the flag is
    deprecated and ignored there)."""
    if version.is_trt11:
        return 0
    import tensorrt as trt

    return 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)


def build_plan(onnx_path: Path, spec: BuildSpec) -> tuple[bytes, dict[str, Any]]:
    """Parse, configure and build; return the serialized engine and what was built (for the manifest)."""
    version = load_trt()
    import tensorrt as trt

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = network_flags(version)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errs = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ModelError(f"TensorRT cannot parse {Path(onnx_path).name}: {errs[:300]}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(spec.workspace_mb) << 20)
    config.builder_optimization_level = int(spec.optimization_level)
    profile = builder.create_optimization_profile()
    mn, opt, mx = spec.shapes()
    profile.set_shape(spec.input_name, trt.Dims(list(mn)), trt.Dims(list(opt)), trt.Dims(list(mx)))
    config.add_optimization_profile(profile)
    cache_bytes = spec.timing_cache.read_bytes() if spec.timing_cache and spec.timing_cache.is_file() else b""
    cache = config.create_timing_cache(cache_bytes)
    config.set_timing_cache(cache, False)
    if spec.dla_core is not None:
        if builder.num_DLA_cores <= spec.dla_core:
            raise InputError(
                f"this GPU has {builder.num_DLA_cores} DLA cores; --dla-core {spec.dla_core} is not available (Orin Nano has none)"
            )
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = int(spec.dla_core)
        config.set_flag(trt.BuilderFlag.GPU_FALLBACK)
    t0 = time.perf_counter()
    plan: trt.IHostMemory | None = builder.build_serialized_network(network, config)
    seconds = time.perf_counter() - t0
    if plan is None:  # the bindings return None when the build fails
        raise ModelError(
            f"TensorRT could not build an engine from {Path(onnx_path).name} (see the TensorRT log above; "
            f"try a larger --workspace than {spec.workspace_mb} MB)"
        )
    if spec.timing_cache:
        from edge_ich.outputs.atomic import write_bytes_atomic

        write_bytes_atomic(spec.timing_cache, bytes(config.get_timing_cache().serialize()))
    data = bytes(plan)
    return data, {
        "tensorrt_version": str(version),
        "strongly_typed": bool(flags) or version.strongly_typed_by_default,
        "build_seconds": round(seconds, 2),
        "io": engine_io(data),
    }


def engine_io(plan: bytes) -> dict[str, Any]:
    """I/O signature of a serialized engine through the name-based tensor API (10.x and 11.x)."""
    load_trt()
    import tensorrt as trt

    runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
    engine: trt.ICudaEngine | None = runtime.deserialize_cuda_engine(plan)
    if engine is None:
        raise ModelError("TensorRT could not deserialize the engine it just built")
    inputs: list[dict[str, Any]] = []
    outputs: list[dict[str, Any]] = []
    for i in range(engine.num_io_tensors):
        name = engine.get_tensor_name(i)
        is_in = engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT
        (inputs if is_in else outputs).append(
            {
                "name": name,
                "shape": [int(v) for v in engine.get_tensor_shape(name)],
                "dtype": engine.get_tensor_dtype(name).name,
            }
        )
    return {"inputs": inputs, "outputs": outputs, "device_memory_bytes": int(engine.device_memory_size_v2)}

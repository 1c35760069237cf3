"""What the machine has for each backend: platform, ONNX Runtime, TensorRT, CUDA. Nothing here raises."""

from __future__ import annotations

import importlib.util
import platform
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from edge_ich.backends.cudainfo import CudaInfo, package_version, probe_cuda


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text(errors="replace").replace("\x00", "").strip() or None
    except OSError:
        return None


@dataclass
class PlatformInfo:
    machine: str
    system: str
    python: str
    jetson_model: str | None = None  # /proc/device-tree/model on a Jetson
    l4t: str | None = None  # first line of /etc/nv_tegra_release (JetPack's L4T release)

    @property
    def is_jetson(self) -> bool:
        return self.l4t is not None or "jetson" in (self.jetson_model or "").lower()


def probe_platform() -> PlatformInfo:
    model = _read("/proc/device-tree/model")
    rel = _read("/etc/nv_tegra_release")
    return PlatformInfo(
        machine=platform.machine(),
        system=f"{platform.system()} {platform.release()}",
        python=platform.python_version(),
        jetson_model=model if model and ("NVIDIA" in model or "Jetson" in model) else None,
        l4t=rel.splitlines()[0] if rel else None,
    )


@dataclass
class OnnxRuntimeInfo:
    version: str | None = None
    providers: list[str] = field(default_factory=list)
    error: str | None = None


def probe_onnxruntime() -> OnnxRuntimeInfo:
    info = OnnxRuntimeInfo()
    if importlib.util.find_spec("onnxruntime") is None:
        info.error = "onnxruntime is not installed (pip install onnxruntime)"
        return info
    try:
        import onnxruntime as ort

        info.version = str(ort.__version__)
        info.providers = list(ort.get_available_providers())
    except Exception as exc:
        info.error = f"onnxruntime does not import: {type(exc).__name__}: {exc}"
    return info


@dataclass
class TensorRTInfo:
    version: str | None = None
    supported: bool = False
    error: str | None = None
    dla_cores: int | None = None  # asked of TensorRT's builder (needs a GPU); Orin NX / AGX have 2, Orin Nano 0


def probe_tensorrt(has_gpu: bool) -> TensorRTInfo:
    from edge_ich.backends.manifest import TrtVersion

    info = TensorRTInfo()
    if importlib.util.find_spec("tensorrt") is None:
        info.error = "TensorRT is not installed (how: below)"
        return info
    try:
        import tensorrt as trt

        info.version = str(trt.__version__)
    except Exception as exc:  # e.g. the module is there but its libraries are not
        info.error = f"the tensorrt module does not import: {type(exc).__name__}: {' '.join(str(exc).split())[:200]}"
        return info
    try:
        info.supported = TrtVersion.parse(info.version).supported
    except Exception:
        info.supported = False
    if not info.supported:
        info.error = f"TensorRT {info.version} is not supported (edge-ich builds with TensorRT 10.x or 11.x)"
    if has_gpu:
        try:
            info.dla_cores = int(trt.Builder(trt.Logger(trt.Logger.ERROR)).num_DLA_cores)
        except Exception:
            info.dla_cores = None
    return info


@dataclass
class MachineReport:
    platform: PlatformInfo
    onnxruntime: OnnxRuntimeInfo
    tensorrt: TensorRTInfo
    cuda: CudaInfo
    cuda_python: str | None  # installed package version, whether or not it can run here
    pycuda: str | None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["platform"]["is_jetson"] = self.platform.is_jetson
        return d


def probe_machine() -> MachineReport:
    cuda = probe_cuda()
    return MachineReport(
        platform=probe_platform(),
        onnxruntime=probe_onnxruntime(),
        tensorrt=probe_tensorrt(cuda.has_gpu),
        cuda=cuda,
        cuda_python=package_version("cuda-python", "cuda-bindings"),
        pycuda=package_version("pycuda"),
    )

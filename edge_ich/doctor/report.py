"""What `edge-ich doctor` found: per backend whether it can run and what stops it, plus the machine and engines."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from edge_ich.doctor.engines import EngineFile
from edge_ich.doctor.probes import MachineReport


@dataclass
class BackendStatus:
    name: str
    ready: bool
    missing: list[str] = field(default_factory=list)  # one line per thing that stops it


@dataclass
class DoctorReport:
    machine: MachineReport
    backends: dict[str, BackendStatus]
    engines_dir: str | None
    engines: list[EngineFile]
    install: dict[str, list[str]]

    def to_dict(self) -> dict[str, Any]:
        return {
            "machine": self.machine.to_dict(),
            "backends": {k: asdict(v) for k, v in self.backends.items()},
            "engines_dir": self.engines_dir,
            "engines": [asdict(e) for e in self.engines],
            "install": self.install,
        }


def backend_status(m: MachineReport) -> dict[str, BackendStatus]:
    ort = BackendStatus("onnxrt", m.onnxruntime.error is None, [m.onnxruntime.error] if m.onnxruntime.error else [])
    trt = BackendStatus("tensorrt", False)
    if m.tensorrt.error:
        trt.missing.append(m.tensorrt.error)
    if not m.cuda.has_gpu:
        trt.missing.append(f"no CUDA GPU: {m.cuda.driver_error or 'the NVIDIA driver reports none'}")
    elif m.cuda.bindings is None:
        trt.missing.append("no usable CUDA Python bindings: " + "; ".join(m.cuda.problems))
    trt.ready = not trt.missing
    return {"onnxrt": ort, "tensorrt": trt}

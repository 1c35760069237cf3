"""Inference backends behind one small interface; one file per backend.

`open_backend(kind, model_path, card)` returns a Backend. `auto` picks TensorRT when a
matching engine and a GPU are present, else ONNX Runtime on the CPU.
"""

from __future__ import annotations

import enum
from pathlib import Path

from edge_ich.backends.base import Backend
from edge_ich.card import ModelCard
from edge_ich.errors import ModelError


class BackendKind(str, enum.Enum):
    AUTO = "auto"
    ONNXRT = "onnxrt"
    TENSORRT = "tensorrt"


def open_backend(kind: BackendKind | str, model_path: Path, card: ModelCard, threads: int | None = None) -> Backend:
    """Open the backend `kind` for a model file that already passed its card check."""
    kind = BackendKind(kind)
    model_path = Path(model_path)
    if kind is BackendKind.AUTO:
        if model_path.suffix == ".plan":
            kind = BackendKind.TENSORRT
        else:
            from edge_ich.backends import tensorrt_select

            plan = tensorrt_select.matching_engine(model_path, card)
            if plan is not None:
                from edge_ich.backends.tensorrt import TensorRTBackend

                return TensorRTBackend(plan, card)
            kind = BackendKind.ONNXRT
    if kind is BackendKind.ONNXRT:
        if model_path.suffix != ".onnx":
            raise ModelError(
                f"the onnxrt backend needs an .onnx model, not {model_path.suffix or 'a file without suffix'}"
            )
        from edge_ich.backends.onnxrt import OnnxRuntimeBackend

        return OnnxRuntimeBackend(model_path, card, threads=threads)
    from edge_ich.backends.tensorrt import TensorRTBackend

    return TensorRTBackend(model_path, card)


__all__ = ["Backend", "BackendKind", "open_backend"]

"""ONNX Runtime on the CPU: the embedded default where there is no GPU."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from edge_ich.backends.base import Backend, BackendInfo, InferTimes, IOMeta
from edge_ich.card import ModelCard
from edge_ich.errors import ModelError, require
from edge_ich.host.threads import inference_threads


class OnnxRuntimeBackend(Backend):
    """One InferenceSession with explicit thread settings, checked against the card."""

    def __init__(self, model_path: Path, card: ModelCard, threads: int | None = None) -> None:
        super().__init__(card)
        ort = require("onnxruntime")
        opts = ort.SessionOptions()
        self.threads = inference_threads(threads)
        opts.intra_op_num_threads = self.threads
        opts.inter_op_num_threads = 1
        # idle pool threads sleep instead of spinning: between batches the reader and the output
        # writers need those cores (spinning doubled the segment stage on 2 cores)
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        opts.add_session_config_entry("session.inter_op.allow_spinning", "0")
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(str(model_path), sess_options=opts, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph/... types
            raise ModelError(
                f"ONNX Runtime cannot load {Path(model_path).name}: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
            ) from None
        names = [i.name for i in self.session.get_inputs()]
        if card.input_name not in names:
            raise ModelError(f"model input {card.input_name!r} named by the card is not in the model (it has {names})")
        outs = [o.name for o in self.session.get_outputs()]
        if card.output_name not in outs:
            raise ModelError(f"model output {card.output_name!r} named by the card is not in the model (it has {outs})")
        shape = self.session.get_inputs()[names.index(card.input_name)].shape
        if len(shape) != 4 or shape[1] != card.in_channels or tuple(shape[2:]) != tuple(card.input_size):
            raise ModelError(
                f"model input shape {shape} does not match its card ([N, {card.in_channels}, {card.input_size[0]}, {card.input_size[1]}])"
            )
        self.info = BackendInfo(
            "onnxrt", "cpu", card.precision, {"onnxruntime": ort.__version__, "threads": str(self.threads)}
        )

    @property
    def inputs(self) -> list[IOMeta]:
        return [IOMeta(i.name, tuple(i.shape), i.type) for i in self.session.get_inputs()]

    @property
    def outputs(self) -> list[IOMeta]:
        return [IOMeta(o.name, tuple(o.shape), o.type) for o in self.session.get_outputs()]

    def _infer(self, batch: np.ndarray) -> np.ndarray:
        t0 = time.perf_counter()
        (out,) = self.session.run([self.card.output_name], {self.card.input_name: batch})
        self.last_times = InferTimes(compute=time.perf_counter() - t0)
        return out

    def close(self) -> None:
        self.session = None

"""Precision ONNX files: FP16 (FP32 I/O) and INT8 by explicit Q/DQ, made on any machine.

TensorRT 11 dropped the FP16/INT8 builder flags and implicit calibrators, so the precision of an
engine comes from the ONNX itself and the network is built strongly typed. This module writes
those ONNX files on the CPU: onnxconverter-common for FP16, ONNX Runtime's static quantizer
(or NVIDIA ModelOpt when installed and asked for) for symmetric per-channel INT8 Q/DQ.
"""

from __future__ import annotations

import enum
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edge_ich.errors import InputError, ModelError, require


class Precision(str, enum.Enum):
    """Network precision of an engine (and of the ONNX it is built from)."""

    FP32 = "fp32"
    FP16 = "fp16"
    INT8 = "int8"


class Quantizer(str, enum.Enum):
    """Who writes the INT8 Q/DQ graph."""

    ORT = "ort"
    MODELOPT = "modelopt"


class CalibMethod(str, enum.Enum):
    """How activation ranges are chosen from the calibration slices."""

    MINMAX = "minmax"
    ENTROPY = "entropy"
    PERCENTILE = "percentile"


#: Ops kept in FP32 in the FP16 graph: reductions, exponentials and normalisations overflow
#: or lose too much in float16; converter defaults (Resize, Range, TopK, ...) come on top.
FP16_KEEP_FP32_OPS = (
    "Exp",
    "Log",
    "Pow",
    "Sqrt",
    "Reciprocal",
    "Softmax",
    "LogSoftmax",
    "ReduceSum",
    "ReduceMean",
    "ReduceSumSquare",
    "ReduceL2",
    "ReduceLogSumExp",
    "ReduceProd",
    "InstanceNormalization",
    "LayerNormalization",
    "GroupNormalization",
    "CumSum",
)

#: Weighted ops whose placement decides what stays FP32 (first layer, output head).
WEIGHTED_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")


@dataclass
class QdqSummary:
    """What a Q/DQ graph holds: counts, per-channel weight axes, symmetry, FP32 nodes."""

    n_quantize: int
    n_dequantize: int
    per_channel_weights: dict[str, int] = field(default_factory=dict)  # weight DQ name -> axis
    symmetric: bool = True
    fp32_weighted_nodes: list[str] = field(default_factory=list)
    int8_weighted_nodes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "quantize_linear": self.n_quantize,
            "dequantize_linear": self.n_dequantize,
            "per_channel_weights": len(self.per_channel_weights),
            "weight_axes": sorted(set(self.per_channel_weights.values())),
            "symmetric": self.symmetric,
            "fp32_weighted_nodes": self.fp32_weighted_nodes,
            "int8_weighted_nodes": self.int8_weighted_nodes,
        }


def _onnx() -> Any:
    return require("onnx")


def weighted_nodes(model: Any) -> list[Any]:
    """Conv/ConvTranspose/Gemm/MatMul nodes in graph (topological) order."""
    return [n for n in model.graph.node if n.op_type in WEIGHTED_OPS]


def keep_fp32_nodes(model: Any, keep_conv_transpose: bool = True) -> list[str]:
    """Names of the nodes left unquantized: the first weighted layer, the output head, ConvTranspose.

    The first conv sees raw windowed pixels and the head decides the threshold; both are cheap
    and precision-critical. Q/DQ ConvTranspose often fails to fuse in TensorRT (slower than FP16).
    """
    nodes = weighted_nodes(model)
    if any(not n.name for n in nodes):
        raise ModelError("the model has unnamed Conv/Gemm nodes; re-export it with node names")
    keep: list[str] = []
    if nodes:
        keep.append(nodes[0].name)
        outputs = {o.name for o in model.graph.output}
        heads = [n for n in nodes if _feeds_output(model, n, outputs)]
        keep.extend(n.name for n in (heads or nodes[-1:]) if n.name not in keep)
    if keep_conv_transpose:
        keep.extend(n.name for n in nodes if n.op_type == "ConvTranspose" and n.name not in keep)
    return keep


def _feeds_output(model: Any, node: Any, outputs: set[str]) -> bool:
    """True when `node` reaches a graph output through weight-free ops only (the output head)."""
    consumers: dict[str, list[Any]] = {}
    for n in model.graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    frontier, seen = list(node.output), set()
    while frontier:
        t = frontier.pop()
        if t in outputs:
            return True
        if t in seen:
            continue
        seen.add(t)
        for c in consumers.get(t, []):
            if c.op_type not in WEIGHTED_OPS:
                frontier.extend(c.output)
    return False


def _name_nodes(model: Any) -> Any:
    """Give every unnamed node a stable name so exclusion lists can refer to it."""
    for i, n in enumerate(model.graph.node):
        if not n.name:
            n.name = f"{n.op_type}_{i}"
    return model


def make_fp16(src: Path, dst: Path) -> dict[str, Any]:
    """Write an FP16 ONNX with FP32 inputs/outputs and overflow-prone ops kept FP32; return the recipe."""
    onnx = _onnx()
    try:
        from onnxconverter_common import float16
    except ImportError:
        from edge_ich.errors import MissingDependency

        raise MissingDependency("onnxconverter-common is not installed (pip install 'edge-ich[build]')") from None
    model = _name_nodes(onnx.load(str(src)))
    block = sorted(set(float16.DEFAULT_OP_BLOCK_LIST) | set(FP16_KEEP_FP32_OPS))
    half = float16.convert_float_to_float16(model, keep_io_types=True, op_block_list=block)
    _save(half, dst)
    return {"converter": "onnxconverter-common", "keep_io_types": True, "fp32_ops": list(FP16_KEEP_FP32_OPS)}


def _save(model: Any, dst: Path) -> None:
    """Check and write atomically, dropping opset imports no node uses (ONNX Runtime's optimizer adds several)."""
    from edge_ich.outputs.atomic import atomic_path

    onnx = _onnx()
    used = {n.domain for n in model.graph.node} | {""}
    keep = [o for o in model.opset_import if o.domain in used or o.domain == "ai.onnx"]
    del model.opset_import[:]
    model.opset_import.extend(keep)
    onnx.checker.check_model(model)
    with atomic_path(Path(dst)) as tmp:
        onnx.save(model, str(tmp))


class _Reader:
    """ONNX Runtime CalibrationDataReader over batches of prepared slices."""

    def __init__(self, input_name: str, batches: list[np.ndarray]) -> None:
        self.input_name = input_name
        self.batches = batches
        self._it: Iterator[np.ndarray] = iter(batches)

    def get_next(self) -> dict[str, np.ndarray] | None:
        b = next(self._it, None)
        return None if b is None else {self.input_name: b}

    def rewind(self) -> None:
        self._it = iter(self.batches)


def make_int8(
    src: Path,
    dst: Path,
    input_name: str,
    calib: np.ndarray,
    *,
    quantizer: Quantizer | str = Quantizer.ORT,
    method: CalibMethod | str = CalibMethod.MINMAX,
    batch: int = 8,
) -> dict[str, Any]:
    """Write a symmetric INT8 Q/DQ ONNX calibrated on `calib` [N, C, H, W]; return the recipe."""
    quantizer, method = Quantizer(quantizer), CalibMethod(method)
    if calib.ndim != 4 or len(calib) == 0:
        raise InputError("INT8 calibration needs at least one prepared slice")
    onnx = _onnx()
    with tempfile.TemporaryDirectory(prefix="edge-ich-q-") as td:
        named = Path(td) / "named.onnx"
        model = _name_nodes(onnx.load(str(src)))
        keep = keep_fp32_nodes(model)
        candidates = [n.name for n in weighted_nodes(model) if n.name not in keep]
        if not candidates:
            raise ModelError(
                f"{Path(src).name} has {len(weighted_nodes(model))} weighted layers; with the first conv and the "
                "output head kept FP32 nothing is left to quantize (build fp16 instead)"
            )
        onnx.save(model, str(named))
        if quantizer is Quantizer.MODELOPT:
            _int8_modelopt(named, dst, input_name, calib, method, keep)
        else:
            _int8_ort(named, Path(td), dst, input_name, calib, method, keep, batch)
    return {
        "quantizer": quantizer.value,
        "calibration_method": method.value,
        "symmetric": True,
        "per_channel_weights": True,
        "fp32_nodes": keep,
        "calibration_slices": int(len(calib)),
    }


def _int8_ort(
    src: Path,
    tmpdir: Path,
    dst: Path,
    input_name: str,
    calib: np.ndarray,
    method: CalibMethod,
    keep: list[str],
    batch: int,
) -> None:
    q = require("onnxruntime.quantization")
    pre = tmpdir / "pre.onnx"
    try:
        q.quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
    except Exception:  # shape inference can fail on exotic graphs; quantizing the plain graph still works
        shutil.copyfile(src, pre)
    methods = {
        CalibMethod.MINMAX: q.CalibrationMethod.MinMax,
        CalibMethod.ENTROPY: q.CalibrationMethod.Entropy,
        CalibMethod.PERCENTILE: q.CalibrationMethod.Percentile,
    }
    batches = [np.ascontiguousarray(calib[i : i + batch], dtype=np.float32) for i in range(0, len(calib), batch)]
    out = tmpdir / "int8.onnx"
    q.quantize_static(
        str(pre),
        str(out),
        _Reader(input_name, batches),
        quant_format=q.QuantFormat.QDQ,
        per_channel=True,
        reduce_range=False,
        activation_type=q.QuantType.QInt8,
        weight_type=q.QuantType.QInt8,
        nodes_to_exclude=keep,
        calibrate_method=methods[method],
        extra_options={
            "ActivationSymmetric": True,
            "WeightSymmetric": True,
            "QDQOpTypePerChannelSupportToAxis": {"ConvTranspose": 1},
        },
    )
    _save(_onnx().load(str(out)), dst)


def _int8_modelopt(
    src: Path, dst: Path, input_name: str, calib: np.ndarray, method: CalibMethod, keep: list[str]
) -> None:
    """NVIDIA ModelOpt INT8 PTQ on CPU; it rewrites its input in place, so it gets a copy."""
    mq = require("modelopt.onnx.quantization", "modelopt")
    if method is CalibMethod.PERCENTILE:
        raise InputError("ModelOpt calibrates with minmax (its 'max') or entropy, not percentile")
    work = Path(dst).with_name(f".{Path(dst).stem}.modelopt-src.onnx")
    shutil.copyfile(src, work)
    tmp_out = Path(dst).with_name(f".{Path(dst).stem}.modelopt-out.onnx")
    try:
        mq.quantize(
            onnx_path=str(work),
            quantize_mode="int8",
            calibration_data={input_name: calib.astype(np.float32)},
            calibration_method="max" if method is CalibMethod.MINMAX else "entropy",
            calibration_eps=["cpu"],
            nodes_to_exclude=keep,
            high_precision_dtype="fp32",
            use_zero_point=False,
            output_path=str(tmp_out),
        )
        _save(_onnx().load(str(tmp_out)), dst)
    finally:
        for p in (work, tmp_out):
            p.unlink(missing_ok=True)


def inspect_qdq(path: Path) -> QdqSummary:
    """Count Q/DQ nodes, find per-channel weight scales and check zero points are all zero."""
    onnx = _onnx()
    from onnx import numpy_helper

    model = onnx.load(str(path))
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    consts = {
        n.output[0]: numpy_helper.to_array(n.attribute[0].t)
        for n in model.graph.node
        if n.op_type == "Constant" and n.attribute and n.attribute[0].type == onnx.AttributeProto.TENSOR
    }
    inits.update(consts)
    producers = {o: n for n in model.graph.node for o in n.output}
    s = QdqSummary(0, 0)
    for n in model.graph.node:
        if n.op_type not in ("QuantizeLinear", "DequantizeLinear"):
            continue
        if n.op_type == "QuantizeLinear":
            s.n_quantize += 1
        else:
            s.n_dequantize += 1
        if len(n.input) > 2 and n.input[2] in inits and np.any(inits[n.input[2]] != 0):
            s.symmetric = False
        scale = inits.get(n.input[1])
        if n.op_type == "DequantizeLinear" and scale is not None and np.ndim(scale) == 1 and scale.size > 1:
            axis = next((a.i for a in n.attribute if a.name == "axis"), 1)
            s.per_channel_weights[n.name or n.output[0]] = int(axis)
    for n in weighted_nodes(model):
        w = n.input[1] if len(n.input) > 1 else ""
        src = producers.get(w)
        (
            s.int8_weighted_nodes if src is not None and src.op_type == "DequantizeLinear" else s.fp32_weighted_nodes
        ).append(n.name)
    return s


def is_quantized(path: Path) -> bool:
    """True when the ONNX already carries Q/DQ nodes (an INT8 precision ONNX)."""
    model = _onnx().load(str(path), load_external_data=False)
    return any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in model.graph.node)

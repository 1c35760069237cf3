"""FLOPs and bytes moved per slice, counted from the ONNX graph itself.

Counted: Conv, ConvTranspose, MatMul and Gemm (2 FLOPs per multiply-accumulate), which is
where a U-Net spends all but a sliver of its arithmetic. Bytes moved are given two ways, as
bounds for a roofline: `fused` reads each convolution's input, writes its output and reads its
weights once (what a fusing compiler such as TensorRT approaches); `unfused` also writes and
reads back every other intermediate tensor (what an op-by-op runtime does).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from edge_ich.errors import ModelError, require

COUNTED_OPS = ("Conv", "ConvTranspose", "MatMul", "Gemm")


@dataclass
class GraphCost:
    """Arithmetic and memory traffic of one inference on a batch of one slice."""

    flops: int
    by_op: dict[str, int]
    weight_params: int
    activation_elems_fused: int  # conv/matmul inputs + outputs
    activation_elems_all: int  # every node output, written once and read once
    input_shape: list[int]
    nodes: int
    counted_nodes: int
    ops: dict[str, int] = field(default_factory=dict)

    def bytes_moved(self, act_bytes: float, weight_bytes: float, fused: bool = True) -> float:
        """Bytes through DRAM for one slice at the given element sizes (e.g. 2 for FP16, 1 for INT8)."""
        acts = self.activation_elems_fused if fused else 2 * self.activation_elems_all
        return acts * act_bytes + self.weight_params * weight_bytes

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _shape_of(vi: Any) -> list[int] | None:
    dims = vi.type.tensor_type.shape.dim
    out = []
    for d in dims:
        if not d.HasField("dim_value"):
            return None
        out.append(int(d.dim_value))
    return out


def _numel(shape: list[int] | None) -> int:
    if shape is None:
        return 0
    n = 1
    for v in shape:
        n *= int(v)
    return n


def graph_cost(model_path: Path) -> GraphCost:
    """Count FLOPs and traffic for a batch of one from the ONNX file (any leading dynamic dim set to 1)."""
    onnx = require("onnx")
    try:
        model = onnx.load(str(model_path))
    except Exception as exc:
        raise ModelError(f"cannot read ONNX {Path(model_path).name}: {type(exc).__name__}") from None
    graph = model.graph
    inits = {i.name: list(i.dims) for i in graph.initializer}
    real_inputs = [i for i in graph.input if i.name not in inits]
    if not real_inputs:
        raise ModelError(f"{Path(model_path).name} has no graph input")
    for inp in real_inputs:  # fix dynamic dims to 1 so shape inference gives numbers
        for d in inp.type.tensor_type.shape.dim:
            if not d.HasField("dim_value"):
                d.dim_value = 1
    in_shape = _shape_of(real_inputs[0]) or []
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False, data_prop=True)
    shapes: dict[str, list[int] | None] = dict(inits.items())
    for vi in list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output):
        shapes[vi.name] = _shape_of(vi)
    # weights reached through DequantizeLinear (Q/DQ models) keep the initializer's shape
    for node in inferred.graph.node:
        if node.op_type == "DequantizeLinear" and node.input[0] in inits:
            shapes[node.output[0]] = inits[node.input[0]]
    flops_by: dict[str, int] = {}
    ops: dict[str, int] = {}
    act_fused = 0
    act_all = 0
    counted = 0
    weight_params = sum(_numel(v) for v in inits.values())
    weight_names = set(inits) | {
        n.output[0] for n in inferred.graph.node if n.op_type == "DequantizeLinear" and n.input[0] in inits
    }
    for node in inferred.graph.node:
        ops[node.op_type] = ops.get(node.op_type, 0) + 1
        for o in node.output:
            act_all += _numel(shapes.get(o))
        if node.op_type not in COUNTED_OPS:
            continue
        x, w = shapes.get(node.input[0]), shapes.get(node.input[1]) if len(node.input) > 1 else None
        y = shapes.get(node.output[0])
        f = 0
        if node.op_type == "Conv" and w is not None and y is not None:
            f = 2 * _numel(y) * _numel(w[1:])  # each output: Cin/g * kh * kw MACs
        elif node.op_type == "ConvTranspose" and w is not None and x is not None:
            f = 2 * _numel(x) * _numel(w[1:])  # each input pixel scatters Cout/g * kh * kw MACs
        elif node.op_type in ("MatMul", "Gemm") and x is not None and w is not None and y is not None:
            k = (
                x[-1]
                if not (node.op_type == "Gemm" and any(a.name == "transA" and a.i for a in node.attribute))
                else x[-2]
            )
            f = 2 * _numel(y) * int(k)
        if f:
            counted += 1
            flops_by[node.op_type] = flops_by.get(node.op_type, 0) + f
            act_fused += _numel(y) + sum(_numel(shapes.get(i)) for i in node.input[:1] if i not in weight_names)
    return GraphCost(
        flops=sum(flops_by.values()),
        by_op=flops_by,
        weight_params=weight_params,
        activation_elems_fused=act_fused,
        activation_elems_all=act_all,
        input_shape=in_shape,
        nodes=len(inferred.graph.node),
        counted_nodes=counted,
        ops=ops,
    )

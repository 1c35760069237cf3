"""FLOPs and bytes counted from the ONNX graph, on networks whose arithmetic is known by hand."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edge_ich.bench.flops import graph_cost
from edge_ich.errors import ModelError


def test_tiny_model_flops_by_hand(tiny_model: Path) -> None:
    cost = graph_cost(tiny_model)
    # conv1: 4 outputs x (9 channels x 3 x 3) MACs per pixel; conv2: 1 output x 4 channels; 64 x 64 pixels
    conv1 = 2 * 4 * 64 * 64 * 9 * 3 * 3
    conv2 = 2 * 1 * 64 * 64 * 4
    assert cost.flops == conv1 + conv2 == cost.by_op["Conv"]
    assert cost.input_shape == [1, 9, 64, 64]  # dynamic batch set to 1
    assert cost.weight_params == 4 * 9 * 9 + 4 + 4 + 1
    assert cost.counted_nodes == 2 and cost.ops == {"Conv": 2, "Relu": 1}
    # fused traffic: conv1 reads its input and writes 4 maps; conv2 reads its 4-map input and writes 1 map
    assert cost.activation_elems_fused == 9 * 64 * 64 + 4 * 64 * 64 + 4 * 64 * 64 + 64 * 64
    assert cost.bytes_moved(2, 2) == 2 * cost.activation_elems_fused + 2 * cost.weight_params


def test_matmul_gemm_and_convtranspose(tmp_path: Path) -> None:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w_mm = numpy_helper.from_array(np.zeros((32, 16), np.float32), "w_mm")
    w_gemm = numpy_helper.from_array(np.zeros((16, 8), np.float32), "w_gemm")
    w_ct = numpy_helper.from_array(np.zeros((8, 3, 2, 2), np.float32), "w_ct")  # [Cin, Cout, kh, kw]
    nodes = [
        helper.make_node("MatMul", ["x", "w_mm"], ["a"]),  # [N,32] @ [32,16]
        helper.make_node("Gemm", ["a", "w_gemm"], ["b"]),  # [N,16] @ [16,8]
        helper.make_node("Reshape", ["b", "shape"], ["c"]),  # -> [N,8,1,1]
        helper.make_node("ConvTranspose", ["c", "w_ct"], ["y"], strides=[2, 2]),  # -> [N,3,2,2]
    ]
    shape = numpy_helper.from_array(np.array([-1, 8, 1, 1], np.int64), "shape")
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 32])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [w_mm, w_gemm, w_ct, shape],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = tmp_path / "g.onnx"
    onnx.save(model, str(path))
    cost = graph_cost(path)
    assert cost.by_op["MatMul"] == 2 * 32 * 16
    assert cost.by_op["Gemm"] == 2 * 16 * 8
    assert cost.by_op["ConvTranspose"] == 2 * 8 * (3 * 2 * 2)  # each input value scatters Cout x kh x kw MACs
    assert cost.flops == sum(cost.by_op.values())


def test_qdq_model_counts_the_same_flops(tiny_model: Path, tmp_path: Path) -> None:
    """An INT8 Q/DQ model does the same arithmetic: weights reached through DequantizeLinear still count."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    rng = np.random.default_rng(0)

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter([{"input": rng.random((1, 9, 64, 64), dtype=np.float32)} for _ in range(4)])

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.items, None)

    q = tmp_path / "tiny_int8.onnx"
    quantize_static(
        str(tiny_model),
        str(q),
        Reader(),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QInt8,
        weight_type=QuantType.QInt8,
    )
    qc, fc = graph_cost(q), graph_cost(tiny_model)
    assert qc.ops.get("DequantizeLinear", 0) > 0
    assert qc.flops == fc.flops


def test_unreadable_model_is_a_model_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not an onnx file")
    with pytest.raises(ModelError, match="cannot read ONNX"):
        graph_cost(bad)

"""Precision ONNX files: FP16 graph structure, INT8 Q/DQ structure (per-channel, symmetric, FP32 ends)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edge_ich.builder.precision import (
    FP16_KEEP_FP32_OPS,
    inspect_qdq,
    is_quantized,
    keep_fp32_nodes,
    make_fp16,
    make_int8,
)
from edge_ich.card import load_card
from edge_ich.errors import ModelError
from edge_ich.preprocess import prepare_volume
from tests.buildnets import build_deep_model, synthetic_head


@pytest.fixture(scope="module")
def deep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_deep_model(tmp_path_factory.mktemp("deep"))


def _inputs(path: Path, seeds: tuple[int, ...] = (1, 2)) -> np.ndarray:
    card = load_card(path)
    vols = [synthetic_head(s, slices=6)[0] for s in seeds]
    return np.concatenate([prepare_volume(v, card.windows, card.input_size, card.context) for v in vols]).astype(
        np.float32
    )


def test_int8_graph_has_per_channel_symmetric_qdq_and_fp32_ends(deep: Path, tmp_path: Path) -> None:
    import onnx

    out = tmp_path / "deep_int8.onnx"
    recipe = make_int8(deep, out, "input", _inputs(deep))
    s = inspect_qdq(out)
    assert s.n_quantize > 0 and s.n_dequantize > 0
    assert s.symmetric
    assert sorted(s.fp32_weighted_nodes) == ["conv_first", "conv_head"]
    assert sorted(s.int8_weighted_nodes) == ["conv_mid", "conv_mix"]
    model = onnx.load(str(out))
    producers = {o: n for n in model.graph.node for o in n.output}
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}
    for conv in (n for n in model.graph.node if n.name in ("conv_mid", "conv_mix")):
        dq = producers[conv.input[1]]
        assert dq.op_type == "DequantizeLinear"
        axis = next((a.i for a in dq.attribute if a.name == "axis"), None)
        assert axis == 0  # per output channel for Conv
        assert inits[dq.input[1]].shape == (inits[dq.input[0]].shape[0],)  # one scale per output channel
        assert inits[dq.input[0]].dtype == np.int8
        assert not np.any(inits[dq.input[2]])  # symmetric: zero points all zero
    assert recipe["fp32_nodes"] == ["conv_first", "conv_head"]
    assert recipe["per_channel_weights"] and recipe["symmetric"]
    assert is_quantized(out) and not is_quantized(deep)
    assert [(o.domain, o.version) for o in model.opset_import] == [("", 17)]  # nothing a TensorRT parser would trip on
    assert {n.op_type for n in model.graph.node} == {"Conv", "Relu", "QuantizeLinear", "DequantizeLinear"}


def test_int8_refuses_a_model_with_nothing_left_to_quantize(tiny_model: Path, tmp_path: Path) -> None:
    # The tiny model is one conv plus the head: both stay FP32, so INT8 would be a no-op.
    with pytest.raises(ModelError, match="nothing is left to quantize"):
        make_int8(tiny_model, tmp_path / "t.onnx", "input", _inputs(tiny_model, (1,)))
    assert not (tmp_path / "t.onnx").exists()


def test_fp16_keeps_io_fp32_and_weights_half(deep: Path, tmp_path: Path) -> None:
    import onnx
    from onnx import TensorProto

    out = tmp_path / "deep_fp16.onnx"
    recipe = make_fp16(deep, out)
    m = onnx.load(str(out))
    assert m.graph.input[0].type.tensor_type.elem_type == TensorProto.FLOAT
    assert m.graph.output[0].type.tensor_type.elem_type == TensorProto.FLOAT
    assert {i.data_type for i in m.graph.initializer} == {TensorProto.FLOAT16}
    assert sum(n.op_type == "Cast" for n in m.graph.node) >= 2  # FP32 in -> FP16 body -> FP32 out
    assert recipe["keep_io_types"] and "ReduceMean" in FP16_KEEP_FP32_OPS


def test_fp16_blocks_overflow_prone_ops(tmp_path: Path) -> None:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.full((2, 2, 1, 1), 0.5, np.float32), "w")
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], name="conv"),
        helper.make_node("Softmax", ["c"], ["y"], name="softmax", axis=1),
    ]
    g = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 4, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 4, 4])],
        [w],
    )
    src = tmp_path / "sm.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), str(src))
    make_fp16(src, tmp_path / "sm16.onnx")
    m = onnx.load(str(tmp_path / "sm16.onnx"))
    # Softmax must read FP32: a Cast to float feeds it.
    producers = {o: n for n in m.graph.node for o in n.output}
    sm = next(n for n in m.graph.node if n.op_type == "Softmax")
    cast = producers[sm.input[0]]
    assert cast.op_type == "Cast" and next(a.i for a in cast.attribute if a.name == "to") == TensorProto.FLOAT


def test_fp16_model_runs_in_onnxruntime_close_to_fp32(deep: Path, tmp_path: Path) -> None:
    from edge_ich.backends.onnxrt import OnnxRuntimeBackend

    out = tmp_path / "deep_fp16.onnx"
    make_fp16(deep, out)
    card = load_card(deep)
    x = _inputs(deep, (3,))[:2]
    with OnnxRuntimeBackend(deep, card, threads=1) as a, OnnxRuntimeBackend(out, card, threads=1) as b:
        ya, yb = a.infer(x), b.infer(x)
    assert ya.shape == yb.shape
    assert np.max(np.abs(ya - yb)) < 0.5  # logits of magnitude ~30; FP16 keeps them within half a unit


def test_keep_fp32_nodes_on_a_unet_like_graph() -> None:
    from onnx import TensorProto, helper

    def conv(name: str, i: str, o: str, op: str = "Conv") -> object:
        return helper.make_node(op, [i, f"{name}_w"], [o], name=name)

    nodes = [
        conv("enc1", "x", "a"),
        conv("enc2", "a", "b"),
        conv("up", "b", "c", "ConvTranspose"),
        helper.make_node("Concat", ["a", "c"], ["d"], name="cat", axis=1),
        conv("dec", "d", "e"),
        conv("head", "e", "f"),
        helper.make_node("Sigmoid", ["f"], ["y"], name="sig"),
    ]
    g = helper.make_graph(
        nodes,
        "u",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, None)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
    )
    keep = keep_fp32_nodes(helper.make_model(g))
    assert keep == ["enc1", "head", "up"]  # first conv, the head (through Sigmoid), ConvTranspose

"""A tiny real ONNX segmenter with its card, built with onnx.helper for tests.

Not a mock: it is a genuine two-layer convolutional network that ONNX Runtime executes.
Its weights make it a blood detector on the brain window of the centre slice, so its output
is meaningful (bright 55-95 HU regions light up) and tests can reason about it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edge_ich.card import ModelCard, sha256_file
from edge_ich.preprocess import DEFAULT_WINDOWS


def build_tiny_model(out_dir: Path, size: int = 64, context: int = 1, name: str = "tiny") -> Path:
    """Write `out_dir/<name>.onnx` and its card; return the model path."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    windows = list(DEFAULT_WINDOWS)
    c_in = (2 * context + 1) * len(windows)
    centre_brain = context * len(windows)  # channel of the centre slice, brain window
    w1 = np.zeros((4, c_in, 3, 3), np.float32)
    w1[0, centre_brain, 1, 1] = 1.0  # identity of the brain window
    w1[1, centre_brain, :, :] = 1.0 / 9.0  # local mean (smooths noise)
    b1 = np.zeros(4, np.float32)
    w2 = np.zeros((1, 4, 1, 1), np.float32)
    w2[0, 1, 0, 0] = 40.0
    # brain window 40/80: 60 HU -> 0.75. Logit = 40*(mean - 0.75): blood (>60 HU) positive.
    b2 = np.array([-30.0], np.float32)
    nodes = [
        helper.make_node("Conv", ["input", "w1", "b1"], ["h1"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["h1"], ["h2"]),
        helper.make_node("Conv", ["h2", "w2", "b2"], ["logits"]),
    ]
    graph = helper.make_graph(
        nodes,
        name,
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", c_in, size, size])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 1, size, size])],
        [numpy_helper.from_array(a, n) for a, n in ((w1, "w1"), (b1, "b1"), (w2, "w2"), (b2, "b2"))],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="edge-ich-tests")
    model.ir_version = 8
    onnx.checker.check_model(model)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}.onnx"
    onnx.save(model, str(path))
    card = ModelCard(
        name=name,
        model_file=path.name,
        model_sha256=sha256_file(path),
        input_name="input",
        output_name="logits",
        input_size=(size, size),
        context=context,
        windows=windows,
        threshold=0.5,
        min_component_mm3=5.0,
        parameters=int(w1.size + b1.size + w2.size + b2.size),
        training={"note": "hand-set weights for tests, not trained"},
    )
    card.save(path.with_name(f"{name}.card.json"))
    return path

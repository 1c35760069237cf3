"""ONNX export of the segmenter with its ModelCard, checked against torch in ONNX Runtime."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from edge_ich.card import ModelCard, Window, card_path_for, sha256_file
from edge_ich.errors import ModelError
from training.models import count_parameters, flops_per_slice

INPUT_NAME = "input"
OUTPUT_NAME = "logits"
OPSET = 17
MAX_ABS_DIFF = 1e-4


def export_onnx(
    model: torch.nn.Module, path: Path, in_ch: int, size: tuple[int, int], check_inputs: np.ndarray | None = None
) -> float:
    """Write `path` (opset 17, dynamic batch, fixed H/W, logits [N,1,H,W]); return max |ORT - torch|."""
    import onnx
    import onnxruntime as ort

    model = model.cpu().eval()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    dummy = torch.zeros(2, in_ch, *size)
    torch.onnx.export(
        model,
        (dummy,),
        str(tmp),
        input_names=[INPUT_NAME],
        output_names=[OUTPUT_NAME],
        dynamic_axes={INPUT_NAME: {0: "N"}, OUTPUT_NAME: {0: "N"}},
        opset_version=OPSET,
        do_constant_folding=True,
        dynamo=False,
    )
    onnx.checker.check_model(onnx.load(str(tmp)))
    x = (
        check_inputs
        if check_inputs is not None
        else np.random.default_rng(0).random((3, in_ch, *size), dtype=np.float32)
    )
    x = np.ascontiguousarray(x, dtype=np.float32)
    sess = ort.InferenceSession(str(tmp), providers=["CPUExecutionProvider"])
    (got,) = sess.run([OUTPUT_NAME], {INPUT_NAME: x})
    with torch.no_grad():
        want = model(torch.from_numpy(x)).numpy()
    if got.shape != (x.shape[0], 1, *size):
        raise ModelError(f"exported model gives shape {got.shape}, expected {(x.shape[0], 1, *size)}")
    diff = float(np.abs(got - want).max())
    if diff > MAX_ABS_DIFF:
        tmp.unlink(missing_ok=True)
        raise ModelError(f"exported model differs from torch by {diff:.2e} (> {MAX_ABS_DIFF:.0e}); not written")
    tmp.replace(path)
    return diff


def write_card(
    model: torch.nn.Module,
    path: Path,
    name: str,
    size: tuple[int, int],
    context: int,
    windows: Sequence[Window],
    threshold: float,
    min_component_mm3: float,
    training: dict[str, Any],
    evaluation: dict[str, Any],
) -> ModelCard:
    """Save `<name>.card.json` beside the exported model and return the card."""
    in_ch = (2 * context + 1) * len(windows)
    card = ModelCard(
        name=name,
        model_file=Path(path).name,
        model_sha256=sha256_file(path),
        input_name=INPUT_NAME,
        output_name=OUTPUT_NAME,
        input_size=(int(size[0]), int(size[1])),
        context=int(context),
        windows=list(windows),
        output_kind="logits",
        threshold=float(threshold),
        min_component_mm3=float(min_component_mm3),
        parameters=count_parameters(model),
        flops_per_slice=flops_per_slice(model, in_ch, size),
        training=training,
        evaluation=evaluation,
    )
    card.validate()
    card.save(card_path_for(Path(path)))
    return card

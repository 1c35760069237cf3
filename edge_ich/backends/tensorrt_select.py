"""Find a TensorRT engine that matches a model and this machine (used by `--backend auto`)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from edge_ich.card import ModelCard


def matching_engine(model_path: Path, card: ModelCard) -> Path | None:
    """A `.plan` beside the model whose manifest matches this machine, else None.

    Without the tensorrt module nothing can match, and the answer is None at once.
    """
    if importlib.util.find_spec("tensorrt") is None:
        return None
    from edge_ich.backends.manifest import find_matching_plan

    return find_matching_plan(Path(model_path), card)

"""A model is never used without a valid card that matches the file."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from edge_ich.card import ModelCard, card_path_for, load_card
from edge_ich.errors import ModelError


def _copy(model: Path, tmp: Path) -> Path:
    dst = tmp / model.name
    shutil.copy(model, dst)
    shutil.copy(card_path_for(model), card_path_for(dst))
    return dst


def test_card_round_trip(tiny_model: Path) -> None:
    card = load_card(tiny_model)
    again = ModelCard.from_dict(json.loads(card_path_for(tiny_model).read_text()))
    assert again == card
    assert card.in_channels == 9
    assert len(card.preprocessing_hash()) == 64


def test_missing_card_refused(tiny_model: Path, tmp_path: Path) -> None:
    m = tmp_path / "lonely.onnx"
    shutil.copy(tiny_model, m)
    with pytest.raises(ModelError, match="has no card"):
        load_card(m)


def test_changed_model_refused(tiny_model: Path, tmp_path: Path) -> None:
    m = _copy(tiny_model, tmp_path)
    m.write_bytes(m.read_bytes() + b"\0")
    with pytest.raises(ModelError, match="does not match its card"):
        load_card(m)


@pytest.mark.parametrize(
    "edit, msg",
    [
        (lambda d: d.pop("windows"), "invalid"),
        (lambda d: d.update(threshold=1.5), "threshold"),
        (lambda d: d.update(output_kind="softmax"), "output_kind"),
        (lambda d: d.update(schema_version=99), "schema_version"),
        (lambda d: d.update(input_size=[4, 4]), "input_size"),
    ],
)
def test_invalid_card_refused(tiny_model: Path, tmp_path: Path, edit, msg: str) -> None:
    m = _copy(tiny_model, tmp_path)
    cp = card_path_for(m)
    d = json.loads(cp.read_text())
    edit(d)
    cp.write_text(json.dumps(d))
    with pytest.raises(ModelError, match=msg):
        load_card(m)


def test_card_not_json_refused(tiny_model: Path, tmp_path: Path) -> None:
    m = _copy(tiny_model, tmp_path)
    card_path_for(m).write_text("{not json")
    with pytest.raises(ModelError, match="not readable JSON"):
        load_card(m)

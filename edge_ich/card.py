"""ModelCard: the JSON that travels beside every model and engine.

A model is never used without its card: the card says how to feed it (windows, input size,
context slices), how to read its output (logits or probability, threshold) and which exact
file it describes (sha256). `model.onnx` is described by `model.card.json`.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from edge_ich.errors import ModelError
from edge_ich.preprocess import PREPROCESS_VERSION, Window

CARD_SCHEMA_VERSION = 1

#: The input range assumed for a card that states none (`validated_input`): the training domain of
#: the bundled phantoms, whose slices are 1-5 mm thick and whose noise and sharpness imitate a soft
#: tissue (brain) kernel. Outside it edge-ich still answers, with a warning.
DEFAULT_VALIDATED_INPUT: dict[str, Any] = {
    "slice_thickness_mm": [1.0, 5.0],
    "kernels": ["soft"],
    "source": "not stated by the card: the phantom training domain (1-5 mm slices, soft-tissue kernel)",
}


@dataclass
class ModelCard:
    """Everything needed to run a segmentation model the way it was trained."""

    name: str
    model_file: str
    model_sha256: str
    input_name: str
    output_name: str
    input_size: tuple[int, int]
    context: int
    windows: list[Window]
    output_kind: str = "logits"  # "logits" (sigmoid applied at run time) or "probability"
    threshold: float = 0.5
    min_component_mm3: float = 10.0
    resampling: str = "HU resized to input_size (area mean or bilinear); probability resized back bilinear"
    precision: str = "fp32"
    parameters: int | None = None
    flops_per_slice: int | None = None
    training: dict[str, Any] = field(default_factory=dict)
    evaluation: dict[str, Any] = field(default_factory=dict)
    validated_input: dict[str, Any] = field(default_factory=dict)  # slice_thickness_mm [lo, hi], kernels
    schema_version: int = CARD_SCHEMA_VERSION

    def input_range(self) -> dict[str, Any]:
        """The input range the card covers (slice thickness, kernel classes), or the stated default."""
        return dict(self.validated_input) if self.validated_input else dict(DEFAULT_VALIDATED_INPUT)

    @property
    def in_channels(self) -> int:
        """Channels of the network input: (2*context+1) slices times the windows."""
        return (2 * self.context + 1) * len(self.windows)

    @property
    def card_id(self) -> str:
        """Short identifier: name plus the first 12 hex digits of the model hash."""
        return f"{self.name}@{self.model_sha256[:12]}"

    def preprocessing_hash(self) -> str:
        """Hash of everything that decides what the network sees; engines record it."""
        spec = {
            "version": PREPROCESS_VERSION,
            "windows": [asdict(w) for w in self.windows],
            "input_size": list(self.input_size),
            "context": self.context,
        }
        return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["input_size"] = list(self.input_size)
        d["preprocessing_sha256"] = self.preprocessing_hash()
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelCard:
        try:
            if int(d.get("schema_version", 0)) != CARD_SCHEMA_VERSION:
                raise ModelError(f"model card schema_version {d.get('schema_version')} is not {CARD_SCHEMA_VERSION}")
            windows = [Window(str(w["name"]), float(w["center"]), float(w["width"])) for w in d["windows"]]
            size = tuple(int(v) for v in d["input_size"])
            card = cls(
                name=str(d["name"]),
                model_file=str(d["model_file"]),
                model_sha256=str(d["model_sha256"]),
                input_name=str(d["input_name"]),
                output_name=str(d["output_name"]),
                input_size=(size[0], size[1]),
                context=int(d["context"]),
                windows=windows,
                output_kind=str(d.get("output_kind", "logits")),
                threshold=float(d.get("threshold", 0.5)),
                min_component_mm3=float(d.get("min_component_mm3", 10.0)),
                resampling=str(d.get("resampling", "")),
                precision=str(d.get("precision", "fp32")),
                parameters=d.get("parameters"),
                flops_per_slice=d.get("flops_per_slice"),
                training=dict(d.get("training", {})),
                evaluation=dict(d.get("evaluation", {})),
                validated_input=dict(d.get("validated_input", {})),
            )
        except ModelError:
            raise
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise ModelError(f"model card is invalid: {type(exc).__name__} {exc}") from None
        card.validate()
        return card

    def validate(self) -> None:
        """Refuse a card whose values cannot describe a working model."""
        if self.output_kind not in ("logits", "probability"):
            raise ModelError(f"model card output_kind must be logits or probability, not {self.output_kind!r}")
        if self.context < 0 or self.context > 8:
            raise ModelError("model card context must be between 0 and 8 slices")
        if not self.windows:
            raise ModelError("model card lists no CT windows")
        if any(w.width <= 0 for w in self.windows):
            raise ModelError("model card has a window with non-positive width")
        if min(self.input_size) < 8 or max(self.input_size) > 2048:
            raise ModelError("model card input_size must be between 8 and 2048 pixels")
        if not 0.0 < self.threshold < 1.0:
            raise ModelError("model card threshold must be strictly between 0 and 1")
        if len(self.model_sha256) != 64:
            raise ModelError("model card model_sha256 is not a sha256 hex digest")
        rng = self.validated_input.get("slice_thickness_mm")
        if rng is not None and not (
            isinstance(rng, list)
            and len(rng) == 2
            and all(isinstance(v, (int, float)) for v in rng)
            and rng[0] <= rng[1]
        ):
            raise ModelError("model card validated_input.slice_thickness_mm must be [low, high] in mm")
        kernels = self.validated_input.get("kernels")
        if kernels is not None and not (isinstance(kernels, list) and set(kernels) <= {"soft", "sharp"}):
            raise ModelError("model card validated_input.kernels must list 'soft' and/or 'sharp'")

    def save(self, path: Path) -> None:
        from edge_ich.outputs.atomic import write_text_atomic

        write_text_atomic(Path(path), json.dumps(self.to_dict(), indent=2) + "\n")


def card_path_for(model_path: Path) -> Path:
    """`dir/model.onnx` -> `dir/model.card.json`."""
    model_path = Path(model_path)
    return (
        model_path.with_name(model_path.name.split(".")[0] + ".card.json")
        if model_path.suffix
        else model_path.with_name(model_path.name + ".card.json")
    )


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def read_card_file(cpath: Path) -> ModelCard:
    """Parse and validate one card file; a clear ModelError when it is not a valid card."""
    try:
        data = json.loads(Path(cpath).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(f"model card {Path(cpath).name} is not readable JSON: {type(exc).__name__}") from None
    if not isinstance(data, dict):
        raise ModelError(f"model card {Path(cpath).name} is not a JSON object")
    return ModelCard.from_dict(data)


def load_card(model_path: Path, verify_hash: bool = True) -> ModelCard:
    """Read and validate the card beside `model_path`; refuse a model without a valid card."""
    model_path = Path(model_path)
    if not model_path.is_file():
        raise ModelError(f"model file not found: {model_path.name}")
    cpath = card_path_for(model_path)
    if not cpath.is_file():
        raise ModelError(f"model {model_path.name} has no card ({cpath.name} expected beside it); refusing to run it")
    card = read_card_file(cpath)
    if verify_hash:
        actual = sha256_file(model_path)
        if actual != card.model_sha256:
            raise ModelError(
                f"model {model_path.name} does not match its card (sha256 {actual[:12]} != {card.model_sha256[:12]}); "
                "re-export the model with its card"
            )
    return card


def bundled_model_path() -> Path | None:
    """The bundled model in `engines/` (source checkout) or inside the package, if present."""
    here = Path(__file__).resolve().parent
    for base in (here / "models", here.parent / "engines", Path.cwd() / "engines"):
        cand = base / "ich_segmenter.onnx"
        if cand.is_file():
            return cand
    return None

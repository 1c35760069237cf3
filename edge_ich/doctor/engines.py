"""Which model and engine files would load here, per backend, and why not (the manifest checks of builder/)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from edge_ich.backends.manifest import MachineInfo


@dataclass
class EngineFile:
    path: str
    kind: str  # "onnx", "precision onnx", "plan"
    precision: str | None = None
    loads: dict[str, str] = field(default_factory=dict)  # backend -> "yes" or why not


def _shown(path: Path) -> str:
    """The path relative to the working folder where it lies below it (what a user would type)."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _onnx(path: Path, ort_ready: bool) -> EngineFile:
    from edge_ich.backends.manifest import load_manifest, manifest_path_for
    from edge_ich.card import load_card
    from edge_ich.errors import EdgeIchError

    ef = EngineFile(_shown(path), "onnx")
    try:
        card = load_card(path)
        ef.precision = card.precision
        ef.loads["onnxrt"] = "yes" if ort_ready else "no: ONNX Runtime is not usable here"
    except EdgeIchError as exc:
        ef.loads["onnxrt"] = f"no: {exc}"
    if manifest_path_for(path).is_file():
        ef.kind = "precision onnx"
        try:
            m = load_manifest(path)
            ef.loads["tensorrt"] = (
                f"no engine built yet; on the target: {m.rebuild_command}" if m.status != "engine" else "see its .plan"
            )
        except EdgeIchError as exc:
            ef.loads["tensorrt"] = f"no: {exc}"
    else:
        ef.loads["tensorrt"] = (
            f"needs an engine: edge-ich build-engine {_shown(path)} --precision fp16|int8 (on the target)"
        )
    return ef


def _plan(path: Path, machine: MachineInfo) -> EngineFile:
    from edge_ich.backends.manifest import card_for_plan, load_manifest, mismatches
    from edge_ich.errors import EdgeIchError

    ef = EngineFile(_shown(path), "plan")
    ef.loads["onnxrt"] = "no: a TensorRT engine"
    try:
        m = load_manifest(path)
        ef.precision = m.precision
        card = card_for_plan(path)
        why = mismatches(m, card, machine, path)
        ef.loads["tensorrt"] = "yes" if not why else "no: " + "; ".join(why) + f". Rebuild: {m.rebuild_command}"
    except EdgeIchError as exc:
        ef.loads["tensorrt"] = f"no: {exc}"
    return ef


def scan_engines(folder: Path, machine: MachineInfo, ort_ready: bool) -> list[EngineFile]:
    """Every .onnx and .plan in `folder` and `folder/build`, with its verdict per backend."""
    out: list[EngineFile] = []
    for d in (folder, folder / "build"):
        if not d.is_dir():
            continue
        for p in sorted(d.glob("*.onnx")):
            out.append(_onnx(p, ort_ready))
        for p in sorted(d.glob("*.plan")):
            out.append(_plan(p, machine))
    return out

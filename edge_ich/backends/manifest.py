"""The engine manifest: what a `.plan` was built from and for, checked before it is ever loaded.

A TensorRT engine is tied to the exact TensorRT version and the GPU's compute capability, and
only means something for one ONNX file and one preprocessing. `X.plan` (or, before the engine
exists, the precision ONNX `X.onnx`) is described by `X.manifest.json`; a mismatch is refused
with the command that rebuilds it.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from edge_ich.card import ModelCard, card_path_for, read_card_file, sha256_file
from edge_ich.errors import ModelError, require
from edge_ich.host.install import TENSORRT_INSTALL

MANIFEST_SCHEMA_VERSION = 1


class EngineMismatch(ModelError):
    """A built engine does not match this machine, its model or its preprocessing; it says how to rebuild."""


@dataclass(frozen=True, order=True)
class TrtVersion:
    """A TensorRT version; 10.x builds strongly typed on request, 11.x always."""

    major: int
    minor: int
    patch: int = 0
    build: int | None = None

    @classmethod
    def parse(cls, text: str) -> TrtVersion:
        m = re.fullmatch(r"\s*(\d+)\.(\d+)(?:\.(\d+))?(?:\.(\d+))?(?:[.+-]\S*)?\s*", str(text))
        if not m:
            raise ModelError(f"not a TensorRT version: {text!r}")
        a, b, c, d = m.groups()
        return cls(int(a), int(b), int(c or 0), int(d) if d is not None else None)

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}.{self.patch}" + (f".{self.build}" if self.build is not None else "")

    @property
    def supported(self) -> bool:
        """edge-ich builds with the TensorRT 10 / 11 API (no bindings API, no builder precision flags)."""
        return self.major in (10, 11)

    @property
    def strongly_typed_by_default(self) -> bool:
        """11.x networks are always strongly typed; 10.x needs the STRONGLY_TYPED creation flag."""
        return self.is_trt11

    @property
    def is_trt11(self) -> bool:
        """TensorRT 11 (or later): the API where 10.x-only names are deprecated or gone.

        Code that uses a name on one major version only branches on `version.is_trt11`; `make
        check-trt` type-checks each branch against the version it runs on (mypy `always_true`).
        """
        return self.major >= 11

    def same_engine_format(self, other: TrtVersion) -> bool:
        """Engines load only on the TensorRT that built them (build number compared when both know it)."""
        if (self.major, self.minor, self.patch) != (other.major, other.minor, other.patch):
            return False
        return self.build is None or other.build is None or self.build == other.build


#: trtexec 11.x turns CUDA graphs on and data transfers off by default, 10.3 does not: every line we
#: print names both, so numbers from either version measure the same thing (compute, graph launch).
TRTEXEC_PINNED_FLAGS = ("--useCudaGraph", "--noDataTransfers")


@dataclass
class MachineInfo:
    """What an engine is tied to on this machine (None where it cannot be known)."""

    tensorrt: str | None = None
    cuda_runtime: str | None = None
    cuda_driver: str | None = None
    gpu_name: str | None = None
    compute_capability: str | None = None
    cuda_problem: str | None = None  # why installed CUDA bindings cannot be used here (e.g. 13.x on a CUDA 12 driver)

    @property
    def has_gpu(self) -> bool:
        return self.compute_capability is not None

    @classmethod
    def probe(cls) -> MachineInfo:
        """Ask tensorrt and the NVIDIA driver (then cuda-python or pycuda) about this machine; never raises."""
        info = cls()
        try:
            import tensorrt as trt

            info.tensorrt = str(trt.__version__)
        except Exception:
            pass
        _probe_cuda(info)
        return info


def _probe_cuda(info: MachineInfo) -> None:
    """GPU, compute capability and CUDA versions from the driver itself (libcuda; no nvidia-smi needed)."""
    from edge_ich.backends.cudainfo import probe_cuda

    cuda = probe_cuda()
    info.cuda_driver, info.cuda_runtime = cuda.driver, cuda.runtime
    if cuda.devices:
        info.gpu_name, info.compute_capability = cuda.devices[0].name, cuda.devices[0].compute_capability
    info.cuda_problem = "; ".join(cuda.problems) or None


@dataclass
class EngineManifest:
    """Everything that decides whether an engine may be used; written beside the plan."""

    model_name: str
    precision: str
    source_model_file: str
    source_model_sha256: str
    onnx_file: str
    onnx_sha256: str
    preprocessing_sha256: str
    io: dict[str, Any]
    recipe: dict[str, Any]
    validation: dict[str, Any]
    rebuild_command: str
    profile: dict[str, Any] = field(default_factory=dict)
    workspace_mb: int | None = None
    optimization_level: int | None = None
    dla_core: int | None = None
    status: str = "onnx-only"  # "onnx-only" until a plan is built, then "engine"
    engine_file: str | None = None
    engine_sha256: str | None = None
    tensorrt_version: str | None = None
    strongly_typed: bool | None = None
    cuda_runtime: str | None = None
    cuda_driver: str | None = None
    gpu_name: str | None = None
    compute_capability: str | None = None
    build_seconds: float | None = None
    created_utc: str = ""
    edge_ich_version: str = ""
    schema_version: int = MANIFEST_SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EngineManifest:
        if not isinstance(d, dict):
            raise ModelError("engine manifest is not a JSON object")
        if d.get("schema_version") != MANIFEST_SCHEMA_VERSION:
            raise ModelError(
                f"engine manifest schema_version {d.get('schema_version')} is not {MANIFEST_SCHEMA_VERSION}; rebuild the engine"
            )
        names = {f.name for f in fields(cls)}
        try:
            return cls(**{k: v for k, v in d.items() if k in names})
        except TypeError as exc:
            raise ModelError(f"engine manifest is invalid: {exc}") from None

    def save(self, path: Path) -> None:
        from edge_ich.outputs.atomic import write_text_atomic

        write_text_atomic(Path(path), json.dumps(self.to_dict(), indent=2) + "\n")


def manifest_path_for(path: Path) -> Path:
    """`dir/name.plan` or `dir/name.onnx` -> `dir/name.manifest.json`."""
    path = Path(path)
    return path.with_name(path.name.split(".")[0] + ".manifest.json")


def load_manifest(path: Path) -> EngineManifest:
    """Read the manifest beside an engine (or the manifest file itself)."""
    path = Path(path)
    mpath = path if path.name.endswith(".manifest.json") else manifest_path_for(path)
    if not mpath.is_file():
        raise ModelError(
            f"engine {path.name} has no manifest ({mpath.name} expected beside it); rebuild it with edge-ich build-engine"
        )
    try:
        data = json.loads(mpath.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(f"engine manifest {mpath.name} is not readable JSON: {type(exc).__name__}") from None
    return EngineManifest.from_dict(data)


def mismatches(m: EngineManifest, card: ModelCard, machine: MachineInfo, plan_path: Path | None = None) -> list[str]:
    """Every reason this engine must not run here with this card (empty list: it may)."""
    why: list[str] = []
    if m.status != "engine" or not m.engine_sha256:
        why.append("the manifest describes a precision ONNX, not a built engine")
    if (
        plan_path is not None
        and m.engine_sha256
        and Path(plan_path).is_file()
        and sha256_file(plan_path) != m.engine_sha256
    ):
        why.append("the plan file's sha256 differs from its manifest (replaced or corrupt)")
    if card.model_sha256 not in (m.onnx_sha256, m.source_model_sha256):
        why.append(
            f"built from another ONNX (sha256 {m.onnx_sha256[:12]}, model {m.source_model_sha256[:12]}; "
            f"this card: {card.model_sha256[:12]})"
        )
    if card.preprocessing_hash() != m.preprocessing_sha256:
        why.append("built for another preprocessing (windows, input size, context or preprocessing version)")
    if machine.tensorrt is None:
        why.append("TensorRT is not installed here")
    elif m.tensorrt_version:
        try:
            same = TrtVersion.parse(m.tensorrt_version).same_engine_format(TrtVersion.parse(machine.tensorrt))
        except ModelError:
            same = False
        if not same:
            why.append(f"built with TensorRT {m.tensorrt_version}, this machine has {machine.tensorrt}")
    if machine.compute_capability is None:
        why.append("no CUDA GPU found")
    elif m.compute_capability != machine.compute_capability:
        why.append(
            f"built for compute capability {m.compute_capability} ({m.gpu_name}), this GPU is "
            f"{machine.compute_capability} ({machine.gpu_name})"
        )
    return why


def check_manifest(m: EngineManifest, card: ModelCard, machine: MachineInfo, plan_path: Path | None = None) -> None:
    """Raise EngineMismatch (with the rebuild command) unless the engine fits this machine and card."""
    why = mismatches(m, card, machine, plan_path)
    if why:
        name = Path(plan_path).name if plan_path else (m.engine_file or m.onnx_file)
        raise EngineMismatch(
            f"engine {name} cannot be used here: {'; '.join(why)}. Rebuild it on this machine: {m.rebuild_command}"
        )


_PREFERENCE = {"int8": 0, "fp16": 1, "fp32": 2}


def find_matching_plan(model_path: Path, card: ModelCard) -> Path | None:
    """A `.plan` beside the model (or in its `build/` folder) whose manifest matches this machine, else None.

    INT8 is preferred over FP16 over FP32 (each passed its accuracy gate when it was built).
    """
    model_path = Path(model_path)
    plans = [
        p for d in (model_path.parent, model_path.parent / "build") if d.is_dir() for p in sorted(d.glob("*.plan"))
    ]
    if not plans:
        return None
    machine = MachineInfo.probe()
    if not machine.has_gpu or machine.tensorrt is None:
        return None
    ok: list[tuple[int, Path]] = []
    for plan in plans:
        try:
            m = load_manifest(plan)
        except ModelError:
            continue
        if not mismatches(m, card, machine, plan):
            ok.append((_PREFERENCE.get(m.precision, 9), plan))
    return min(ok)[1] if ok else None


def card_for_plan(plan_path: Path) -> ModelCard:
    """The card of the ONNX a plan was built from (`X.card.json` beside `X.plan`), tied to it by the manifest.

    The card's hash names the precision ONNX, not the plan, so it is checked against the manifest's
    `onnx_sha256`; the plan's own bytes are checked against the manifest when the backend loads it.
    """
    plan_path = Path(plan_path)
    if not plan_path.is_file():
        raise ModelError(f"engine file not found: {plan_path}")
    m = load_manifest(plan_path)
    cpath = card_path_for(plan_path)
    if not cpath.is_file():
        raise ModelError(
            f"engine {plan_path.name} has no card ({cpath.name} expected beside it); rebuild it: {m.rebuild_command}"
        )
    card = read_card_file(cpath)
    if card.model_sha256 != m.onnx_sha256:
        raise EngineMismatch(
            f"card {cpath.name} describes another ONNX (sha256 {card.model_sha256[:12]}) than engine "
            f"{plan_path.name} was built from ({m.onnx_sha256[:12]}); rebuild it: {m.rebuild_command}"
        )
    return card


def load_trt() -> TrtVersion:
    """Check that the tensorrt module (10.x or 11.x) imports here and return its version.

    Callers then `import tensorrt as trt` themselves, so type checkers see the real module
    (`make check-trt` checks this code against the bindings of 10.3 and 11.4).
    """
    trt = require("tensorrt", install=TENSORRT_INSTALL)
    version = TrtVersion.parse(trt.__version__)
    if not version.supported:
        raise ModelError(f"TensorRT {version} is not supported (edge-ich builds with TensorRT 10.x or 11.x)")
    return version

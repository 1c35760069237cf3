"""What `edge-ich build-engine` is asked to do (BuildOptions, validated into enums) and what it wrote (BuildResult)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge_ich.builder.precision import CalibMethod, Precision, Quantizer
from edge_ich.errors import InputError


@dataclass
class BuildOptions:
    """Everything `edge-ich build-engine` was asked to do."""

    model: Path
    precision: str = "fp16"
    calib: Path | None = None
    calib_slices: int = 500
    max_dice_drop: float = 0.01
    out: Path = Path("engines/build")
    workspace_mb: int = 1024
    dla_core: int | None = None
    timing_cache: Path | None = None
    quantizer: str = "ort"
    batch: int = 4
    calib_method: str = "minmax"
    max_sens_drop: float = 0.02
    heldout_slices: int | None = None
    optimization_level: int = 3
    seed: int = 0
    threads: int | None = None
    tensorrt: bool = True  # False: stop at the precision ONNX even where TensorRT and a GPU are (dry runs)

    def validate(self) -> tuple[Precision, Quantizer, CalibMethod]:
        """Refuse impossible combinations before any work is done."""
        try:
            precision = Precision(self.precision)
        except ValueError:
            raise InputError(f"--precision must be fp32, fp16 or int8, not {self.precision!r}") from None
        try:
            quantizer = Quantizer(self.quantizer)
        except ValueError:
            raise InputError(f"--quantizer must be ort or modelopt, not {self.quantizer!r}") from None
        try:
            method = CalibMethod(self.calib_method)
        except ValueError:
            raise InputError(
                f"calibration method must be minmax, entropy or percentile, not {self.calib_method!r}"
            ) from None
        if not 0.0 <= self.max_dice_drop <= 1.0 or not 0.0 <= self.max_sens_drop <= 1.0:
            raise InputError("--max-dice-drop and the sensitivity drop must lie between 0 and 1")
        if self.calib_slices < 8:
            raise InputError("--calib-slices must be at least 8")
        if self.batch < 1:
            raise InputError("--batch must be at least 1")
        if self.calib is not None and not Path(self.calib).is_dir():
            raise InputError(f"--calib folder not found: {self.calib}")
        if self.dla_core is not None and self.dla_core not in (0, 1):
            raise InputError("--dla-core must be 0 or 1")
        return precision, quantizer, method


@dataclass
class BuildResult:
    """What was written and what the gate said."""

    onnx: Path
    card: Path
    manifest: Path
    plan: Path | None
    lines: list[str] = field(default_factory=list)
    gate: dict[str, Any] | None = None

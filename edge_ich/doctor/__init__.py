"""`edge-ich doctor`: what this machine has and lacks for each backend, which engines would load, how to install.

`diagnose()` gathers it (never raises); `doctor_and_print()` prints it as text or JSON and fails
(exit 1 through ModelError/MissingDependency) when the backend asked for cannot run here.
"""

from __future__ import annotations

import json
from pathlib import Path

from edge_ich.doctor.report import BackendStatus, DoctorReport, backend_status

BACKENDS = ("onnxrt", "tensorrt")


def diagnose(engines_dir: Path | None = None) -> DoctorReport:
    """Everything `edge-ich doctor` reports; `engines_dir` defaults to the bundled model's folder."""
    from edge_ich.backends.manifest import MachineInfo
    from edge_ich.card import bundled_model_path
    from edge_ich.doctor.engines import scan_engines
    from edge_ich.doctor.probes import probe_machine
    from edge_ich.host.install import JETPACK6_COMMANDS, WORKSTATION_COMMANDS

    m = probe_machine()
    status = backend_status(m)
    if engines_dir is None:
        bundled = bundled_model_path()
        engines_dir = bundled.parent if bundled else None
    machine = MachineInfo(
        tensorrt=m.tensorrt.version,
        cuda_runtime=m.cuda.runtime,
        cuda_driver=m.cuda.driver,
        gpu_name=m.cuda.devices[0].name if m.cuda.devices else None,
        compute_capability=m.cuda.devices[0].compute_capability if m.cuda.devices else None,
    )
    engines = scan_engines(Path(engines_dir), machine, status["onnxrt"].ready) if engines_dir else []
    install = {"jetpack6": list(JETPACK6_COMMANDS), "workstation": list(WORKSTATION_COMMANDS)}
    return DoctorReport(m, status, str(engines_dir) if engines_dir else None, engines, install)


def doctor_and_print(
    backend: str | None = None, json_out: bool = False, engines_dir: Path | None = None
) -> DoctorReport:
    """CLI entry: print the report; raise (exit 1) when `backend` cannot run here."""
    import typer

    from edge_ich.doctor.render import render
    from edge_ich.errors import InputError, MissingDependency

    if backend is not None and backend not in (*BACKENDS, "auto"):
        raise InputError(f"--backend must be one of auto, {', '.join(BACKENDS)}, not {backend!r}")
    if engines_dir is not None and not Path(engines_dir).is_dir():
        raise InputError(f"engines folder not found: {engines_dir}")
    rep = diagnose(engines_dir)
    typer.echo(json.dumps(rep.to_dict(), indent=2) if json_out else render(rep))
    asked = "onnxrt" if backend == "auto" else backend  # auto falls back to ONNX Runtime
    if asked is not None and not rep.backends[asked].ready:
        missing = "; ".join(rep.backends[asked].missing).replace("(how: below)", "(install commands above)")
        raise MissingDependency(f"the {backend} backend cannot run here: {missing}")
    return rep


__all__ = ["BACKENDS", "BackendStatus", "DoctorReport", "backend_status", "diagnose", "doctor_and_print"]

"""The text form of `edge-ich doctor`."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from edge_ich.doctor.report import DoctorReport


def _or(v: object, dash: str = "-") -> str:
    return dash if v is None or v == "" else str(v)


def render(rep: DoctorReport) -> str:
    m, lines = rep.machine, []
    p = m.platform
    where = f"{p.jetson_model} ({p.l4t})" if p.is_jetson else "not a Jetson"
    lines.append(f"edge-ich doctor: {p.machine}, {p.system}, Python {p.python}, {where}")
    lines.append("")
    for name, st in rep.backends.items():
        lines.append(f"{name:9s} {'READY' if st.ready else 'cannot run'}" + ("" if st.ready else ":"))
        lines += [f"            - {why}" for why in st.missing]
    lines.append("")
    o, t, c = m.onnxruntime, m.tensorrt, m.cuda
    gpus = ", ".join(
        f"{d.name} (sm {d.compute_capability}" + (f", {d.memory_mb:.0f} MiB)" if d.memory_mb else ")")
        for d in c.devices
    )
    rows = [
        ("ONNX Runtime", f"{o.version}, providers: {', '.join(o.providers)}" if o.version else f"missing: {o.error}"),
        ("TensorRT", t.version + ("" if t.supported else " (unsupported)") if t.version else "missing"),
        ("CUDA driver", f"CUDA {c.driver}" if c.driver else f"none ({c.driver_error})"),
        ("GPU", gpus or "none"),
        ("DLA cores", _or(t.dla_cores, "unknown (asked of TensorRT with a GPU)")),
        ("CUDA runtime", _or(c.runtime, "-" if c.bindings is None else "unknown")),
        (
            "cuda-python",
            _or(m.cuda_python, "not installed")
            + ("  (in use)" if (c.bindings or "").startswith("cuda-python") else ""),
        ),
        ("pycuda", _or(m.pycuda, "not installed") + ("  (in use)" if (c.bindings or "").startswith("pycuda") else "")),
    ]
    lines += [f"  {k:13s} {v}" for k, v in rows]
    lines += [f"  {'CUDA problem':13s} {why}" for why in c.problems]
    lines.append("")
    lines.append(f"engines in {rep.engines_dir}:" if rep.engines_dir else "engines: no bundled engines folder found")
    for e in rep.engines:
        lines.append(f"  {e.path.rsplit('/', 1)[-1]}  ({e.kind}, {_or(e.precision)})")
        lines += [f"      {be:9s} {verdict}" for be, verdict in e.loads.items()]
    lines.append("")
    lines.append("install for the tensorrt backend:")
    lines.append("  JetPack 6 (Orin Nano / NX / AGX: TensorRT 10.3, CUDA 12.6):")
    lines += [f"    {cmd}" for cmd in rep.install["jetpack6"]]
    lines.append("  workstation (x86-64, NVIDIA driver for CUDA 12 or later):")
    lines += [f"    {cmd}" for cmd in rep.install["workstation"]]
    return "\n".join(lines)

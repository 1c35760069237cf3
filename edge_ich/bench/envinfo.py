"""The environment block of a benchmark report: what ran where, and whether it ran alone.

Everything here is best effort and never raises for a missing tool: a report from a machine
without a GPU, without `nvidia-smi` or without `tegrastats` simply says "absent". Nothing here
reads patient data. Heavy or optional modules are imported inside the functions.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: CPU flags that decide which kernels ONNX Runtime / torch can use; the rest is noise in a report.
INTERESTING_FLAGS = (
    "sse4_2",
    "avx",
    "avx2",
    "fma",
    "f16c",
    "avx512f",
    "avx512bw",
    "avx512vl",
    "avx512_vnni",
    "avx512_bf16",
    "avx512_fp16",
    "avx_vnni",
    "amx_tile",
    "amx_int8",
    "amx_bf16",
    "asimd",
    "asimdhp",
    "asimddp",
    "sve",
    "sve2",
    "i8mm",
    "bf16",
)
#: Other processes using more than this many cores on average make the machine "busy".
BUSY_CORES = 0.25


def _run(cmd: list[str], timeout: float = 5.0) -> str | None:
    """stdout of a short command, or None if it is absent, fails or hangs."""
    exe = shutil.which(cmd[0])
    if exe is None:
        return None
    try:
        res = subprocess.run([exe, *cmd[1:]], capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return res.stdout if res.returncode == 0 else None


def _read(path: str | Path) -> str | None:
    try:
        return Path(path).read_text(errors="replace").strip("\x00\n ")
    except OSError:
        return None


def package_version(dist: str) -> str | None:
    """Installed version of a distribution, or None."""
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def cpu_info() -> dict[str, Any]:
    """CPU model, the kernel-relevant flags, physical cores, logical CPUs and the CPUs we may use."""
    model = None
    flags: set[str] = set()
    text = _read("/proc/cpuinfo") or ""
    for line in text.splitlines():
        key, _, val = line.partition(":")
        key = key.strip().lower()
        if key in ("model name", "hardware", "cpu model") and not model:
            model = val.strip()
        elif key in ("flags", "features") and not flags:
            flags = set(val.split())
    if not model:
        model = _read("/proc/device-tree/model") or platform.processor() or platform.machine()
    try:
        import psutil

        physical = psutil.cpu_count(logical=False)
        logical = psutil.cpu_count(logical=True)
    except ImportError:  # pragma: no cover - psutil is a runtime dependency
        physical, logical = None, os.cpu_count()
    usable: int | None
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - non-Linux
        usable = os.cpu_count()
    return {
        "model": model,
        "arch": platform.machine(),
        "flags": [f for f in INTERESTING_FLAGS if f in flags],
        "physical_cores": physical,
        "logical_cpus": logical,
        "usable_cpus": usable,
    }


def versions() -> dict[str, str | None]:
    """Versions of Python and of every package that shapes the numbers."""
    import numpy

    from edge_ich import __version__

    out: dict[str, str | None] = {
        "python": platform.python_version(),
        "edge-ich": __version__,
        "numpy": numpy.__version__,
        "onnxruntime": package_version("onnxruntime") or package_version("onnxruntime-gpu"),
        "onnx": package_version("onnx"),
        "pydicom": package_version("pydicom"),
        "tensorrt": None,
        "cuda_runtime": None,
        "cuda_driver": None,
        "nvidia_driver": None,
    }
    if importlib.util.find_spec("tensorrt") is not None:
        try:
            import tensorrt

            out["tensorrt"] = str(tensorrt.__version__)
        except Exception:  # a broken TensorRT install must not stop a CPU benchmark
            out["tensorrt"] = "present but not importable"
    cuda = _cuda_versions()
    if not gpu_info():  # cuda-python reports its bundled runtime even where no GPU exists
        cuda["cuda_runtime"] = cuda["cuda_driver"] = None
    out.update(cuda)
    return out


def _cudart() -> Any | None:
    """cuda-python's runtime module under either of its import paths, or None (the backends' own lookup)."""
    from edge_ich.backends.cudainfo import import_cudart

    return import_cudart()


def _fmt_cuda(v: int) -> str:
    return f"{v // 1000}.{(v % 1000) // 10}"


def _cuda_versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {"cuda_runtime": None, "cuda_driver": None, "nvidia_driver": None}
    rt = _cudart()
    if rt is not None:
        try:
            err, v = rt.cudaRuntimeGetVersion()
            if int(err) == 0:
                out["cuda_runtime"] = _fmt_cuda(int(v))
            err, v = rt.cudaDriverGetVersion()
            if int(err) == 0 and int(v) > 0:
                out["cuda_driver"] = _fmt_cuda(int(v))
        except Exception:
            pass
    smi = _run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"])
    if smi:
        out["nvidia_driver"] = smi.splitlines()[0].strip()
    elif txt := _read("/proc/driver/nvidia/version"):
        m = re.search(r"Kernel Module\s+(\S+)", txt)
        out["nvidia_driver"] = m.group(1) if m else None
    return out


def gpu_info() -> list[dict[str, Any]]:
    """Name, compute capability and memory of each visible NVIDIA GPU; empty without one."""
    gpus: list[dict[str, Any]] = []
    smi = _run(["nvidia-smi", "--query-gpu=name,compute_cap,memory.total", "--format=csv,noheader,nounits"])
    if smi:
        for line in smi.splitlines():
            parts = [p.strip() for p in line.split(",")]
            if len(parts) >= 3 and parts[0]:
                mem = float(parts[2]) if re.fullmatch(r"[0-9.]+", parts[2]) else None
                gpus.append(
                    {"name": parts[0], "compute_capability": parts[1], "memory_mb": mem, "source": "nvidia-smi"}
                )
    if gpus:
        return gpus
    rt = _cudart()
    if rt is None:
        return gpus
    try:
        err, count = rt.cudaGetDeviceCount()
        if int(err) != 0:
            return gpus
        for i in range(int(count)):
            err, prop = rt.cudaGetDeviceProperties(i)
            if int(err) != 0:
                continue
            name = prop.name.decode(errors="replace").rstrip("\x00") if isinstance(prop.name, bytes) else str(prop.name)
            gpus.append(
                {
                    "name": name,
                    "compute_capability": f"{prop.major}.{prop.minor}",
                    "memory_mb": round(prop.totalGlobalMem / 2**20, 1),
                    "source": "cuda-python",
                }
            )
    except Exception:
        pass
    return gpus


def gpu_memory_used_mb() -> float | None:
    """Device memory in use on GPU 0 (all processes), or None without a GPU.

    nvidia-smi first (it creates no CUDA context in this process); cudaMemGetInfo where
    nvidia-smi has no figure (Jetson's integrated GPU reports N/A).
    """
    smi = _run(["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits"])
    if smi and re.fullmatch(r"[0-9.]+", smi.splitlines()[0].strip()):
        return float(smi.splitlines()[0].strip())
    if not gpu_info():
        return None
    rt = _cudart()
    if rt is not None:
        try:
            err, free, total = rt.cudaMemGetInfo()
            if int(err) == 0:
                return round((total - free) / 2**20, 1)
        except Exception:
            pass
    return None


def is_jetson() -> bool:
    """True on an NVIDIA Jetson (L4T)."""
    if Path("/etc/nv_tegra_release").exists():
        return True
    model = _read("/proc/device-tree/model") or ""
    return "jetson" in model.lower() or "orin" in model.lower()


def parse_tegrastats(line: str) -> dict[str, Any]:
    """Temperatures (C) and power rails (mW, current) from one `tegrastats` line."""
    temps = {m.group(1).lower(): float(m.group(2)) for m in re.finditer(r"\b([A-Za-z0-9_]+)@(-?[0-9.]+)C\b", line)}
    power = {
        m.group(1): int(m.group(2))
        for m in re.finditer(r"\b(VDD_[A-Z0-9_]+|VIN_[A-Z0-9_]+|POM_[A-Z0-9_]+)\s+(\d+)mW", line)
    }
    gpu = re.search(r"GR3D_FREQ\s+(\d+)%", line)
    ram = re.search(r"RAM\s+(\d+)/(\d+)MB", line)
    return {
        "temperature_c": temps,
        "power_mw": power,
        "gpu_load_percent": int(gpu.group(1)) if gpu else None,
        "ram_used_mb": int(ram.group(1)) if ram else None,
        "ram_total_mb": int(ram.group(2)) if ram else None,
    }


def _tegrastats_line(timeout: float = 3.0) -> str | None:
    exe = shutil.which("tegrastats")
    if exe is None:
        return None
    try:
        proc = subprocess.Popen(
            [exe, "--interval", "250"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
        )
    except OSError:
        return None
    try:
        deadline = time.monotonic() + timeout
        line = ""
        while time.monotonic() < deadline and proc.stdout is not None:
            line = proc.stdout.readline().strip()
            if line:
                break
        return line or None
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=2)
        except subprocess.TimeoutExpired:  # pragma: no cover
            proc.kill()


def jetson_info() -> dict[str, Any] | None:
    """Power mode (nvpmodel), clocks, temperatures and power (tegrastats) on a Jetson; None elsewhere."""
    if not is_jetson():
        return None
    info: dict[str, Any] = {"model": _read("/proc/device-tree/model"), "l4t": _read("/etc/nv_tegra_release")}
    q = _run(["nvpmodel", "-q"])
    if q:
        m = re.search(r"NV Power Mode:\s*(.+)", q)
        info["power_mode"] = m.group(1).strip() if m else q.strip().splitlines()[0]
    cpu_mhz = []
    for f in sorted(Path("/sys/devices/system/cpu").glob("cpu[0-9]*/cpufreq/scaling_cur_freq")):
        v = _read(f)
        if v and v.isdigit():
            cpu_mhz.append(int(v) // 1000)
    info["cpu_clock_mhz"] = cpu_mhz
    for f in list(Path("/sys/class/devfreq").glob("*")):
        name = (_read(f / "name") or f.name).lower()
        if "gpu" in name or "gv11b" in name or "ga10b" in name or f.name.startswith("17000000"):
            cur, mx = _read(f / "cur_freq"), _read(f / "max_freq")
            if cur and cur.isdigit():
                info["gpu_clock_mhz"] = int(cur) // 1_000_000
                info["gpu_max_clock_mhz"] = int(mx) // 1_000_000 if mx and mx.isdigit() else None
            break
    line = _tegrastats_line()
    if line:
        info["tegrastats"] = line
        info.update(parse_tegrastats(line))
    return info


def thermal_zones() -> dict[str, float]:
    """Temperatures (C) from /sys/class/thermal, where the kernel exposes them."""
    out: dict[str, float] = {}
    for z in sorted(Path("/sys/class/thermal").glob("thermal_zone*")):
        t, name = _read(z / "temp"), _read(z / "type")
        if t and re.fullmatch(r"-?\d+", t) and name:
            out[name] = int(t) / 1000.0
    return out


@dataclass
class CpuAccount:
    """How much CPU other processes used while we measured.

    Whole-machine busy time (psutil.cpu_times) minus our own process's CPU time, over the wall
    time between start() and stop(): the average number of cores someone else was using.
    """

    t0: float = 0.0
    sys0: float = 0.0
    own0: float = 0.0
    load_before: tuple[float, float, float] | None = None
    result: dict[str, Any] = field(default_factory=dict)

    @staticmethod
    def _busy() -> float:
        import psutil

        t = psutil.cpu_times()
        return float(sum(t) - t.idle - getattr(t, "iowait", 0.0))

    @staticmethod
    def _own() -> float:
        import psutil

        c = psutil.Process().cpu_times()
        return float(c.user + c.system + c.children_user + c.children_system)

    def start(self) -> CpuAccount:
        self.load_before = os.getloadavg() if hasattr(os, "getloadavg") else None
        self.t0, self.sys0, self.own0 = time.perf_counter(), self._busy(), self._own()
        return self

    def stop(self, threads_used: int | None = None) -> dict[str, Any]:
        wall = max(time.perf_counter() - self.t0, 1e-9)
        others = max(0.0, (self._busy() - self.sys0) - (self._own() - self.own0)) / wall
        own = (self._own() - self.own0) / wall
        cpus = os.cpu_count() or 1
        busy = others > BUSY_CORES
        msg = None
        if busy:
            msg = (
                f"other processes used {others:.2f} of {cpus} CPUs on average while measuring "
                f"(this run used {own:.2f}); the numbers are slower and noisier than on an idle machine"
            )
        self.result = {
            "wall_s": wall,
            "others_cores": round(others, 3),
            "own_cores": round(own, 3),
            "load_avg_before": list(self.load_before) if self.load_before else None,
            "load_avg_after": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
            "cpus": cpus,
            "threads_used": threads_used,
            "busy": busy,
            "message": msg,
        }
        return self.result


def busy_snapshot(interval: float = 0.5) -> dict[str, Any]:
    """A quick look before measuring: load average and the other processes' CPU over `interval` s."""
    acct = CpuAccount().start()
    time.sleep(interval)
    return acct.stop()


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MiB.

    Linux: VmHWM of /proc/self/status, the high-water mark of this program's own memory
    (ru_maxrss would carry over a larger parent's peak across fork + exec).
    """
    status = _read("/proc/self/status")
    if status:
        m = re.search(r"^VmHWM:\s+(\d+)\s+kB", status, re.MULTILINE)
        if m:
            return round(int(m.group(1)) / 1024.0, 1)
    try:
        import resource

        kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return round(kb / 1024.0 if sys.platform != "darwin" else kb / 2**20, 1)
    except ImportError:  # pragma: no cover - Windows
        import psutil

        return round(psutil.Process().memory_info().peak_wset / 2**20, 1)


def environment(threads_used: int | None = None) -> dict[str, Any]:
    """The full environment block (no timing inside; call it outside the measured window)."""
    return {
        "hostname_hash": _host_hash(),
        "os": f"{platform.system()} {platform.release()}",
        "cpu": cpu_info(),
        "threads_used": threads_used,
        "versions": versions(),
        "gpus": gpu_info(),
        "jetson": jetson_info(),
        "temperatures_c": thermal_zones(),
    }


def _host_hash() -> str:
    """A short hash of the host name: tells runs on the same box apart without naming it."""
    import hashlib

    return hashlib.sha256(platform.node().encode()).hexdigest()[:8]

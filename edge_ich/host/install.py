"""How to install what the GPU backends need, per platform: one place, used by errors and `edge-ich doctor`.

TensorRT is not a pip extra of edge-ich: on a Jetson it comes with JetPack (apt), and on a
workstation from NVIDIA's wheels. CUDA's Python bindings must match the driver's CUDA major
version: JetPack 6 is CUDA 12.6, so it needs cuda-python 12.x (13.x needs a CUDA 13 driver).
"""

from __future__ import annotations

#: JetPack 6.x (Orin Nano / NX / AGX): TensorRT 10.3, CUDA 12.6, Python 3.10.
JETPACK6_COMMANDS: tuple[str, ...] = (
    "sudo apt update && sudo apt install -y nvidia-jetpack   # TensorRT 10.3 + python3-libnvinfer, CUDA 12.6",
    "python3 -m venv --system-site-packages .venv && . .venv/bin/activate   # sees JetPack's tensorrt module",
    "pip install -e '.[trt]'   # cuda-python>=12.6,<13 (JetPack 6's driver is CUDA 12.6)",
)

#: An x86-64 workstation or server with an NVIDIA driver for CUDA 12.
WORKSTATION_COMMANDS: tuple[str, ...] = (
    "python3 -m venv .venv && . .venv/bin/activate",
    "pip install tensorrt-cu12   # TensorRT 10.x/11.x; its libraries come from NVIDIA's index (pypi.nvidia.com)",
    "pip install -e '.[trt]'   # cuda-python>=12.6,<13 (runs on CUDA 12 and 13 drivers)",
)

#: One line for a missing tensorrt module.
TENSORRT_INSTALL = (
    "on a Jetson it comes with JetPack: sudo apt install nvidia-jetpack, then use a venv made with "
    "--system-site-packages; on a workstation: pip install tensorrt-cu12 (libraries from NVIDIA's index, "
    "pypi.nvidia.com); see edge-ich doctor"
)

#: One line for missing or mismatched CUDA Python bindings.
CUDA_PYTHON_INSTALL = (
    "pip install 'edge-ich[trt]' (cuda-python>=12.6,<13, for CUDA 12 drivers such as JetPack 6's 12.6; "
    "a CUDA 13 driver takes pip install 'cuda-python>=13'), or pycuda (JetPack images often have it)"
)

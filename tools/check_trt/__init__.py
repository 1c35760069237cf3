"""`make check-trt`: our TensorRT code checked against the real TensorRT 10.3 and 11.4 Python bindings.

No machine here has TensorRT or a GPU, so the builder and the backend never run in CI. This
check downloads the real `tensorrt-cu12-bindings` wheels, imports them against a stand-in
libnvinfer it compiles itself, and (a) looks up every TensorRT name the code uses in each
version (present, not deprecated), (b) runs mypy over the TensorRT modules with stubs generated
from those bindings, so `trt` and its objects are typed. Run: `python -m tools.check_trt`.
It lives in tools/ because it is a developer/CI check, not part of the runtime wheel: it needs
pip, a C compiler, mypy and pybind11-stubgen, none of which an edge device has.
"""

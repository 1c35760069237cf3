"""One thread budget for the whole process: BLAS pools, ONNX Runtime, the slice reader.

On a small edge CPU (2-6 cores) every pool that sizes itself to all cores oversubscribes the
others: numpy's OpenBLAS threads inside a small matmul, ONNX Runtime's intra-op threads, the
reader decoding ahead. The commands that run inference call `limit_blas()` before numpy is
first imported (BLAS reads its thread count from the environment once, at load), so BLAS runs
on the calling thread; where numpy was loaded first (edge_ich used as a library, `load_model`
calls it too) the pool is resized through threadpoolctl. ONNX Runtime gets
`inference_threads()` and never spins while idle. Nothing here imports numpy.
"""

from __future__ import annotations

import os
import sys

#: Environment variables that size the BLAS / OpenMP pools numpy or scipy may load.
BLAS_ENV = (
    "OPENBLAS_NUM_THREADS",
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "BLIS_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
)


_ENV_BEFORE_NUMPY = False  # set once the environment sized BLAS before numpy loaded


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - non-Linux
        return max(1, os.cpu_count() or 1)


def limit_blas(threads: int = 1) -> bool:
    """BLAS on `threads` threads (or the count the user set in OPENBLAS_NUM_THREADS and the like).

    Before numpy is first imported the environment does it (and is inherited by child processes);
    once numpy is loaded its pool already exists and threadpoolctl resizes it. False when neither
    could (numpy loaded and threadpoolctl missing).
    """
    global _ENV_BEFORE_NUMPY
    for name in BLAS_ENV:
        os.environ.setdefault(name, str(threads))
    if "numpy" not in sys.modules:
        _ENV_BEFORE_NUMPY = True
        return True
    if _ENV_BEFORE_NUMPY:  # numpy loaded after the environment was set: nothing left to do
        return True
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return False
    try:
        wanted = max(1, int(os.environ["OPENBLAS_NUM_THREADS"]))
    except ValueError:
        wanted = threads
    threadpool_limits(limits=wanted, user_api="blas")
    return True


def inference_threads(requested: int | None = None) -> int:
    """ONNX Runtime intra-op threads: the asked number, else every usable CPU."""
    if requested is not None and requested >= 1:
        return int(requested)
    return usable_cpus()

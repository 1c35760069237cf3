"""One thread budget for the process: BLAS on one thread, ONNX Runtime pools that do not spin."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _blas_threads(code: str) -> list[int]:
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            code + "\nfrom threadpoolctl import threadpool_info\n"
            "print(__import__('json').dumps([i['num_threads'] for i in threadpool_info() if i['user_api'] == 'blas']))",
        ],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)},
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_blas_is_one_thread_before_and_after_numpy_loads() -> None:
    before = _blas_threads("from edge_ich.host.threads import limit_blas\nassert limit_blas()\nimport numpy")
    after = _blas_threads("import numpy\nfrom edge_ich.host.threads import limit_blas\nassert limit_blas()")
    assert before and set(before) == {1}
    assert after and set(after) == {1}


def test_a_users_own_blas_count_is_kept() -> None:
    import os

    code = "import os\nos.environ['OPENBLAS_NUM_THREADS'] = '2'\nfrom edge_ich.host.threads import limit_blas\nlimit_blas()\nimport numpy"
    assert set(_blas_threads(code)) == {min(2, os.cpu_count() or 1)}


def test_onnx_runtime_pools_do_not_spin_and_take_the_asked_threads(tiny_model: Path) -> None:
    from edge_ich.runner import load_model

    model = load_model(tiny_model, "onnxrt", 1)
    try:
        opts = model.backend.session.get_session_options()  # type: ignore[attr-defined]
        assert opts.get_session_config_entry("session.intra_op.allow_spinning") == "0"
        assert opts.get_session_config_entry("session.inter_op.allow_spinning") == "0"
        assert opts.intra_op_num_threads == 1 and opts.inter_op_num_threads == 1
    finally:
        model.close()

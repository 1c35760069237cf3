"""python -m tools.check_trt [--root DIR] [--cache DIR] [--version V ...] [--verbose]; exit 0 pass, 1 fail."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tools.check_trt.bindings import BindingsError
from tools.check_trt.check import VERSIONS, run_check

REPO = Path(__file__).resolve().parents[2]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tools.check_trt", description=__doc__)
    ap.add_argument("--root", type=Path, default=REPO, help="tree to check (holds edge_ich/ and pyproject.toml)")
    ap.add_argument("--cache", type=Path, default=REPO / ".cache" / "check-trt", help="wheels, stand-ins, stubs")
    ap.add_argument("--version", dest="versions", action="append", help=f"TensorRT version (default: {VERSIONS})")
    ap.add_argument("--verbose", action="store_true", help="list every name with its verdict per version")
    args = ap.parse_args(argv)
    if not (args.root / "edge_ich").is_dir() or not (args.root / "pyproject.toml").is_file():
        print(f"check-trt: error: {args.root} holds no edge_ich/ and pyproject.toml", file=sys.stderr)
        return 1
    try:
        ok = run_check(args.root, args.cache, tuple(args.versions or VERSIONS), verbose=args.verbose)
    except BindingsError as exc:
        print(f"check-trt: error: {exc}", file=sys.stderr)
        return 1
    except ModuleNotFoundError as exc:
        print(f"check-trt: error: {exc.name} is not installed (pip install mypy pybind11-stubgen)", file=sys.stderr)
        return 1
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

"""placeholder until edge_ich.phantom_io lands"""
from __future__ import annotations
from pathlib import Path
from typing import Any
from edge_ich.errors import InputError
def open_phantom(root: Path, **kw: Any):
    raise InputError("phantom adapter not ready")

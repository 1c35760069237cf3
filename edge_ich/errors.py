"""Errors a user or the environment can cause; the CLI prints them as one line and exits 1.

Anything that is not an EdgeIchError is a bug and keeps its traceback.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType
from typing import Any


class EdgeIchError(Exception):
    """Root of user and environment errors (bad input, missing model, missing package)."""


class InputError(EdgeIchError):
    """The input data (DICOM, NIfTI, CSV) cannot be used; the message says why."""


class NotAssessable(InputError):
    """A readable series outside what the model was validated on (not head CT, HU not sane, too coarse).

    The CLI prints `not assessable: <reason>` and exits 1; `edge-ich run` also writes a report.json
    that says `assessable: false` and why, and claims nothing about hemorrhage.
    """

    def __init__(self, reason: str, facts: dict[str, Any] | None = None, checks: list[dict[str, Any]] | None = None):
        super().__init__(f"not assessable: {reason}")
        self.reason = reason
        self.facts: dict[str, Any] = dict(facts or {})
        self.checks: list[dict[str, Any]] = list(checks or [])
        self.report_path: Path | None = None  # where the runner wrote the not-assessable report


class ModelError(EdgeIchError):
    """A model, card, engine or manifest is missing, invalid, or does not match."""


class MissingDependency(EdgeIchError):
    """An optional package is not installed; the message names the extra to install."""


class OutputError(EdgeIchError):
    """An output location cannot be written."""


def require(module: str, extra: str | None = None, install: str | None = None) -> ModuleType:
    """Import an optional module, or raise MissingDependency naming how to install it.

    `install` replaces the default hint (`pip install 'edge-ich[extra]'` / `pip install module`) where
    pip is not the way (TensorRT).
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        top = module.split(".")[0]
        hint = install or (f"pip install 'edge-ich[{extra}]'" if extra else f"pip install {top}")
        raise MissingDependency(f"{top} is not installed ({hint}): {exc}") from None

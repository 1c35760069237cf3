"""What the assessability gate found: checks done, warnings for the clinician, the verdict."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Check:
    """One check of the gate: its name, whether it passed, and a safe detail (no patient data)."""

    name: str
    ok: bool
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return {"check": self.name, "ok": self.ok, "detail": self.detail}


@dataclass(frozen=True)
class Warn:
    """A warning the clinician sees: a stable code, the full message (report) and a short label (summary line)."""

    code: str
    message: str
    short: str

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "short": self.short}


@dataclass
class Assessment:
    """The gate's verdict on one series: assessable or why not, with every check and warning."""

    assessable: bool
    reason: str | None = None
    checks: list[Check] = field(default_factory=list)
    warnings: list[Warn] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "assessable": self.assessable,
            "reason": self.reason,
            "checks": [c.to_dict() for c in self.checks],
        }

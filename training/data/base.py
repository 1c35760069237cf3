"""The Case contract every dataset adapter returns, and the small helpers they share.

A Case is one CT series (one scan) with lazy loaders: opening a dataset reads headers and
label tables only, so a list of 25k RSNA series costs memory for labels, not for pixels.
Arrays follow edge_ich's conventions: [slice, row, col] in ascending slice order, DICOM
display orientation (rows run to posterior, cols to patient left), spacing (slice, row, col) mm.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

import numpy as np

from edge_ich.errors import InputError
from edge_ich.sources.volume import Skipped

Spacing = tuple[float, float, float]


class Subtype(str, Enum):
    """Hemorrhage subtypes in the fixed column order of `Case.subtype_labels`."""

    EPIDURAL = "epidural"
    INTRAPARENCHYMAL = "intraparenchymal"
    INTRAVENTRICULAR = "intraventricular"
    SUBARACHNOID = "subarachnoid"
    SUBDURAL = "subdural"


#: Column order of `Case.subtype_labels` (and mask codes 1..5 where a dataset has them).
SUBTYPES: tuple[Subtype, ...] = tuple(Subtype)


class DatasetKind(str, Enum):
    """The dataset layouts `open_dataset` understands."""

    PHANTOM = "phantom"
    RSNA = "rsna"
    PHYSIONET = "physionet"
    INSTANCE = "instance"
    BHSD = "bhsd"
    GENERIC = "generic"


class MissingPolicy(str, Enum):
    """What to do with a label whose image is not on disk."""

    ERROR = "error"  # one InputError line (default: a wrong root or a partial download shows at once)
    SKIP = "skip"  # leave the label out and count it in `CaseList.skipped`


@dataclass
class Case:
    """One scan: lazy HU volume, weak slice labels, optional subtypes and voxel truth."""

    case_id: str
    load: Callable[[], tuple[np.ndarray, Spacing]]
    slice_labels: np.ndarray | None
    subtype_labels: np.ndarray | None
    load_mask: Callable[[], np.ndarray] | None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def n_slices(self) -> int | None:
        """Number of slices if known without loading pixels."""
        n = self.meta.get("n_slices")
        return int(n) if n is not None else None


class CaseList(list[Case]):
    """A plain list of Cases that also carries what was left out and why."""

    def __init__(
        self, cases: Iterable[Case] = (), skipped: Iterable[Skipped] = (), meta: dict[str, Any] | None = None
    ) -> None:
        super().__init__(cases)
        self.skipped: list[Skipped] = list(skipped)
        self.meta: dict[str, Any] = dict(meta or {})

    def skip_counts(self) -> dict[str, int]:
        """Number of skipped items per reason (reasons never hold patient data)."""
        out: dict[str, int] = {}
        for s in self.skipped:
            out[s.reason] = out.get(s.reason, 0) + 1
        return out


def coerce_enum(enum: type[Enum], value: Any, what: str) -> Any:
    """Accept an enum member or its string value; anything else is one clear InputError."""
    if isinstance(value, enum):
        return value
    try:
        return enum(str(value).lower())
    except ValueError:
        allowed = ", ".join(str(m.value) for m in enum)  # type: ignore[attr-defined]
        raise InputError(f"unknown {what} {value!r} (expected one of: {allowed})") from None


def check_options(fn: Callable[..., Any], kw: dict[str, Any], what: str) -> None:
    """Refuse keyword options `fn` does not take, with one InputError line listing the ones it does."""
    import inspect

    params = inspect.signature(fn).parameters
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return
    unknown = sorted(set(kw) - set(params))
    if unknown:
        allowed = ", ".join(n for n in params if n != "root")
        raise InputError(f"{what} has no option {', '.join(unknown)} (options: {allowed})")


def refuse_or_skip_orphans(
    cases: CaseList, policy: MissingPolicy, paths: Sequence[str], reason: str, error: str
) -> None:
    """Labels whose image is not on disk: an InputError (`error` + how to skip) under
    MissingPolicy.ERROR, else each one counted in `cases.skipped` with `reason`."""
    if not paths:
        return
    if policy is MissingPolicy.ERROR:
        raise InputError(f"{error}; pass missing='skip' to leave them out")
    cases.skipped.extend(Skipped(p, reason) for p in paths)


def require_dir(path: Path, what: str) -> Path:
    """A folder that must exist, or one InputError line."""
    path = Path(path)
    if not path.is_dir():
        raise InputError(f"{what} folder not found: {path}")
    return path


def read_table(path: Path, required: Sequence[str], what: str) -> tuple[list[str], list[dict[str, str]]]:
    """Read a CSV with a header into dict rows; a missing file or column is one InputError line.

    Cells are stripped; header names are matched exactly after stripping (and a UTF-8 BOM).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{what} not found: {path}")
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            try:
                header = [h.strip() for h in next(reader)]
            except StopIteration:
                raise InputError(f"{what} is empty: {path.name}") from None
            rows: list[dict[str, str]] = []
            for line_no, cells in enumerate(reader, start=2):
                if not cells or all(not c.strip() for c in cells):
                    continue
                if len(cells) != len(header):
                    raise InputError(
                        f"{what} {path.name} line {line_no}: {len(cells)} fields, header has {len(header)}"
                    )
                rows.append({h: c.strip() for h, c in zip(header, cells)})
    except UnicodeDecodeError:
        raise InputError(f"{what} {path.name} is not a UTF-8 text CSV") from None
    except csv.Error as exc:
        raise InputError(f"{what} {path.name} is not a valid CSV: {exc}") from None
    except OSError as exc:
        raise InputError(f"cannot read {what} {path.name}: {exc.strerror or exc}") from None
    missing = [c for c in required if c not in header]
    if missing:
        raise InputError(
            f"{what} {path.name} lacks column(s) {', '.join(missing)} (has: {', '.join(header) or 'none'})"
        )
    return header, rows


def parse_flag(value: str, where: str) -> int:
    """A 0/1 label cell (also '0.0'/'1.0', 'true'/'false'); anything else is one InputError line."""
    v = value.strip().lower()
    if v in ("0", "0.0", "false", "no"):
        return 0
    if v in ("1", "1.0", "true", "yes"):
        return 1
    raise InputError(f"{where}: label {value[:20]!r} is not 0 or 1")


def parse_int(value: str, where: str) -> int:
    """An integer cell, or one InputError line."""
    try:
        f = float(value)
    except ValueError:
        raise InputError(f"{where}: {value[:20]!r} is not a number") from None
    if not f.is_integer():
        raise InputError(f"{where}: {value[:20]!r} is not a whole number")
    return int(f)


def any_from_subtypes(subtypes: np.ndarray) -> np.ndarray:
    """Slice 'any hemorrhage' labels from [Z, 5] subtype labels."""
    return (np.asarray(subtypes).max(axis=1) > 0).astype(np.uint8)


def mask_to_labels(mask: np.ndarray, subtype_codes: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """Slice labels (and, with codes 1..5, subtype labels) from a voxel mask [Z, Y, X]."""
    flat = mask.reshape(mask.shape[0], -1)
    slice_labels = (flat.max(axis=1) > 0).astype(np.uint8)
    if not subtype_codes:
        return slice_labels, None
    sub = np.zeros((mask.shape[0], len(SUBTYPES)), dtype=np.uint8)
    for k in range(len(SUBTYPES)):
        sub[:, k] = (flat == k + 1).any(axis=1)
    return slice_labels, sub


def stack_slices(read: Callable[[int], np.ndarray], n: int) -> np.ndarray:
    """Read n slices into one float32 [Z, Y, X] array (preallocated: one copy in memory)."""
    first = np.asarray(read(0), dtype=np.float32)
    out = np.empty((n,) + first.shape, dtype=np.float32)
    out[0] = first
    for i in range(1, n):
        s = read(i)
        if s.shape != first.shape:
            raise InputError(f"slice {i} has shape {tuple(s.shape)}, slice 0 has {tuple(first.shape)}")
        out[i] = s
    return out


def check_mask(mask: np.ndarray, shape: tuple[int, ...], case_id: str, max_code: int) -> np.ndarray:
    """Validate a voxel mask against its scan's shape and allowed codes; return it as uint8."""
    if tuple(mask.shape) != tuple(shape):
        raise InputError(f"case {case_id}: mask shape {tuple(mask.shape)} does not match scan shape {tuple(shape)}")
    if mask.size and (np.nanmin(mask) < 0 or np.nanmax(mask) > max_code or not np.all(np.isfinite(mask))):
        raise InputError(f"case {case_id}: mask values outside 0..{max_code}")
    rounded = np.rint(mask)
    if mask.size and not np.array_equal(rounded, mask):
        raise InputError(f"case {case_id}: mask holds non-integer values")
    return rounded.astype(np.uint8)

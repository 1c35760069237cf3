"""Sort the slices of one series along the slice normal and measure its grid.

Never sorts by InstanceNumber or file name. The normal (row x column cosine) is signed to point
superior, so sorted slices run inferior -> superior whatever the stored orientation. Slice spacing
comes from positions. Duplicates, gaps, uneven spacing, gantry tilt and mixed orientations/sizes
are detected: what can be handled becomes a warning (tilt -> sheared affine; a few missing slices
-> grid positions marked as not imaged), the rest is refused with one line.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edge_ich.errors import InputError
from edge_ich.sources.dicom import elements
from edge_ich.sources.volume import Geometry, Skipped, affine_from_dicom

#: Slices closer than this along the normal (mm) are at the same position.
DUPLICATE_MM = 0.01
#: A step larger than this times the typical step means slices are missing.
GAP_FACTOR = 1.5
#: Spread of steps (relative to the typical step) above which spacing is reported as uneven.
UNEVEN_FRACTION = 0.1
#: Orientation cosines within this are the same orientation.
ORIENTATION_TOL = 0.01
#: Gantry tilt (degrees) above which the tilt is reported; above MAX_TILT_DEG the series is refused.
TILT_REPORT_DEG = 0.5
MAX_TILT_DEG = 45.0
#: An incomplete series is processed (gaps marked, volumes a lower bound) unless more than this
#: fraction of its grid positions is missing or one gap is longer than MAX_GAP_MM: then it is refused.
MAX_MISSING_FRACTION = 0.2
MAX_GAP_MM = 20.0
#: Warnings that start with these words have their own code in the report.
TILT_WARNING = "gantry tilt"
GAP_WARNING = "missing slices"


@dataclass
class SortedSeries:
    """Files of one series sorted along the slice normal (ascending), with the measured grid."""

    files: list[Path]
    headers: list[Any]
    geometry: Geometry
    skipped: list[Skipped] = field(default_factory=list)
    grid_index: list[int] = field(default_factory=list)  # grid slice index of each file (gaps skip indices)


@dataclass
class _Slice:
    path: Path
    ds: Any
    iop: np.ndarray
    ipp: np.ndarray
    pixel_spacing: tuple[float, float]
    size: tuple[int, int]


def _parse(path: Path, ds: Any) -> tuple[_Slice | None, str]:
    """Geometry elements of one slice (validated in `elements`), or the element that is missing/invalid."""
    keyword = "ImagePositionPatient"
    try:
        ipp = np.asarray(elements.required(ds, keyword), dtype=float)
        keyword = "ImageOrientationPatient"
        iop = np.asarray(elements.required(ds, keyword), dtype=float)
        if not _orthonormal(iop):
            return None, keyword
        keyword = "PixelSpacing"
        ps = elements.required(ds, keyword)
        keyword = "Rows/Columns"
        size = (int(elements.required(ds, "Rows")[0]), int(elements.required(ds, "Columns")[0]))
    except elements.ElementError:
        return None, keyword
    return _Slice(path, ds, iop, ipp, (float(ps[0]), float(ps[1])), size), ""


def _orthonormal(iop: np.ndarray) -> bool:
    """Row and column cosines of unit length (within 1%) and at right angles (within ~0.6 degrees)."""
    r, c = iop[:3], iop[3:]
    return bool(
        abs(np.linalg.norm(r) - 1.0) < 0.01 and abs(np.linalg.norm(c) - 1.0) < 0.01 and abs(float(r @ c)) < 0.01
    )


def _rel(path: Path, root: Path | None) -> str:
    if root is not None:
        try:
            return path.relative_to(root).as_posix()
        except ValueError:
            pass
    return path.name


def _same_kind(a: _Slice, b: _Slice) -> bool:
    return (
        a.size == b.size
        and bool(np.all(np.abs(a.iop - b.iop) <= ORIENTATION_TOL))
        and abs(a.pixel_spacing[0] - b.pixel_spacing[0]) <= 1e-3 * b.pixel_spacing[0]
        and abs(a.pixel_spacing[1] - b.pixel_spacing[1]) <= 1e-3 * b.pixel_spacing[1]
    )


def _how_differs(a: _Slice, ref: _Slice) -> str:
    if a.size != ref.size:
        return "image size differs from the rest of the series"
    if not np.all(np.abs(a.iop - ref.iop) <= ORIENTATION_TOL):
        return "orientation differs from the rest of the series (localizer?)"
    return "pixel spacing differs from the rest of the series"


def _minor(count: int, total: int) -> bool:
    """Few enough odd files to leave out rather than refuse the series."""
    return count <= max(2, int(0.1 * total))


def sort_and_measure(
    items: list[tuple[Path, Any]],
    root: Path | None = None,
    read_hu: Callable[[Path], np.ndarray] | None = None,
    allow_gaps: bool = False,
) -> SortedSeries:
    """Sort one series' (path, header) pairs along the slice normal; measure spacing, tilt, gaps, duplicates.

    read_hu(path) is used only to compare two different instances found at the same position.
    allow_gaps: place the slices on a regular grid whose missing positions are listed in
    `geometry.missing` (within MAX_MISSING_FRACTION / MAX_GAP_MM), instead of refusing any gap.
    """
    if not items:
        raise InputError("the series has no image files")
    skipped: list[Skipped] = []
    warnings: list[str] = []
    slices: list[_Slice] = []
    missing: dict[str, int] = {}
    for path, ds in items:
        s, tag = _parse(path, ds)
        if s is None:
            missing[tag] = missing.get(tag, 0) + 1
            skipped.append(Skipped(_rel(path, root), f"missing or invalid {tag}", _series_uid(ds)))
        else:
            slices.append(s)
    total = len(items)
    n_missing = total - len(slices)
    if n_missing and (not slices or not _minor(n_missing, total)):
        tag, cnt = max(missing.items(), key=lambda kv: kv[1])
        raise InputError(f"{cnt} of {total} slices lack a valid {tag}; cannot place the slices in space")

    # Keep the largest group of same size/orientation/pixel spacing; leave out a few odd ones, else refuse.
    groups: list[list[_Slice]] = []
    for s in slices:
        for g in groups:
            if _same_kind(s, g[0]):
                g.append(s)
                break
        else:
            groups.append([s])
    groups.sort(key=len, reverse=True)
    main = groups[0]
    odd = [s for g in groups[1:] for s in g]
    if odd:
        if not _minor(len(odd), total):
            sizes = sorted({f"{s.size[0]}x{s.size[1]}" for s in slices})
            raise InputError(
                f"the series mixes {len(groups)} kinds of slices (sizes {', '.join(sizes)}; "
                f"orientation or pixel spacing may differ too); cannot build one volume"
            )
        for s in odd:
            skipped.append(Skipped(_rel(s.path, root), _how_differs(s, main[0]), _series_uid(s.ds)))

    iop = np.mean([s.iop for s in main], axis=0)
    r, c = iop[:3] / np.linalg.norm(iop[:3]), iop[3:] / np.linalg.norm(iop[3:])
    normal = np.cross(r, c)
    normal /= np.linalg.norm(normal)
    if normal[2] < 0:  # axial: point the normal to the patient's head so slices run inferior -> superior
        normal = -normal
    main.sort(key=lambda s: (float(s.ipp @ normal), str(s.path)))
    kept = _drop_duplicates(main, normal, root, skipped, warnings, read_hu)

    if len(kept) < 2:
        raise InputError("the series has only one usable slice; a volume needs at least two")
    d = np.array([float(s.ipp @ normal) for s in kept])
    steps = np.diff(d)
    typical = float(np.median(steps))
    big = steps > GAP_FACTOR * typical
    index = np.arange(len(kept))
    gaps: list[dict[str, Any]] = []
    if big.any():
        index = np.rint((d - d[0]) / typical).astype(int)
        n_grid = int(index[-1]) + 1
        lost = n_grid - len(kept)
        j = int(np.argmax(np.where(big, steps, 0.0)))
        where = (
            f"a gap of {steps[j]:.2f} mm after sorted slice {j} where slices are {typical:.2f} mm apart "
            f"({lost} of {n_grid} positions missing in {int(big.sum())} gap(s))"
        )
        if not allow_gaps:
            raise InputError(f"{GAP_WARNING}: {where}")
        if np.any(np.diff(index) < 1):
            raise InputError(f"{GAP_WARNING} and uneven spacing: {where}; cannot place the slices on one grid")
        if lost > MAX_MISSING_FRACTION * n_grid or float(steps.max()) > MAX_GAP_MM:
            raise InputError(
                f"{GAP_WARNING}: {where}; more is missing than can be processed "
                f"(limits: {MAX_MISSING_FRACTION:.0%} of the positions, no gap over {MAX_GAP_MM:g} mm)"
            )
        for k in np.flatnonzero(big):
            gaps.append(
                {
                    "after_slice": int(index[k]),
                    "missing": int(index[k + 1] - index[k] - 1),
                    "size_mm": round(float(steps[k]), 2),
                    "offset_mm": round(float(d[k] - d[0]), 2),
                }
            )
        warnings.append(
            f"{GAP_WARNING}: {lost} slice position(s) not imaged in {len(gaps)} gap(s) (largest {steps.max():.1f} mm); "
            "processed, volumes are a lower bound"
        )
    regular = steps[~big]
    off_grid = float(np.max(np.abs(d - d[0] - index * typical)))
    spread = float(regular.max() - regular.min()) if regular.size else 0.0
    if spread > max(0.02, UNEVEN_FRACTION * typical) or off_grid > max(0.02, 0.25 * typical):
        lo, hi = (regular.min(), regular.max()) if regular.size else (typical, typical)
        warnings.append(f"uneven slice spacing: steps from {lo:.3f} to {hi:.3f} mm (volume uses the mean step)")

    n_grid = int(index[-1]) + 1
    first, last = kept[0].ipp, kept[-1].ipp
    step = (last - first) / (n_grid - 1)
    along = float(step @ normal)
    tilt = float(np.degrees(np.arccos(min(1.0, abs(along) / float(np.linalg.norm(step))))))
    if tilt > MAX_TILT_DEG:
        raise InputError(f"slice positions are {tilt:.0f} degrees off the slice normal; cannot build a volume")
    if tilt > TILT_REPORT_DEG:
        warnings.append(
            f"{TILT_WARNING} {tilt:.1f} degrees: slice positions are not along the slice normal; "
            f"the affine is sheared to follow them"
        )
    pred = first + np.outer((d - d[0]) / along, step)
    dev = float(np.max(np.linalg.norm(np.array([s.ipp for s in kept]) - pred, axis=1)))
    row_mm, col_mm = kept[0].pixel_spacing
    if dev > 0.5 * min(row_mm, col_mm):
        warnings.append(f"slice positions do not lie on one straight line (up to {dev:.2f} mm off)")
    fors = {str(elements.optional(s.ds, "FrameOfReferenceUID") or "") for s in kept}
    if len(fors) > 1:
        warnings.append("slices carry more than one FrameOfReferenceUID")
    elif fors == {""}:
        warnings.append("the series has no FrameOfReferenceUID")

    orientation = np.concatenate([r, c])
    affine = affine_from_dicom(orientation, first, row_mm, col_mm, step)
    rows, cols = kept[0].size
    present = {int(i) for i in index}
    geom = Geometry(
        shape=(n_grid, rows, cols),
        spacing=(along, row_mm, col_mm),
        affine_lps=affine,
        warnings=warnings,
        missing=tuple(i for i in range(n_grid) if i not in present),
        gaps=gaps,
        tilt_deg=tilt if tilt > TILT_REPORT_DEG else 0.0,
    )
    return SortedSeries(
        files=[s.path for s in kept],
        headers=[s.ds for s in kept],
        geometry=geom,
        skipped=skipped,
        grid_index=[int(i) for i in index],
    )


def _series_uid(ds: Any) -> str | None:
    return elements.optional(ds, "SeriesInstanceUID")


def _drop_duplicates(
    sorted_slices: list[_Slice],
    normal: np.ndarray,
    root: Path | None,
    skipped: list[Skipped],
    warnings: list[str],
    read_hu: Callable[[Path], np.ndarray] | None,
) -> list[_Slice]:
    """Keep one slice per position; identical copies are left out with a reason, differing images refuse."""
    kept: list[_Slice] = []
    n_same_instance = n_identical = 0
    for s in sorted_slices:
        if kept and abs(float((s.ipp - kept[-1].ipp) @ normal)) < DUPLICATE_MM:
            prev = kept[-1]
            uid_a = str(elements.optional(prev.ds, "SOPInstanceUID") or "")
            uid_b = str(elements.optional(s.ds, "SOPInstanceUID") or "")
            if uid_a and uid_a == uid_b:
                n_same_instance += 1
                skipped.append(Skipped(_rel(s.path, root), "duplicate copy of an instance already in the series"))
                continue
            if (
                read_hu is not None
                and np.array_equal(read_hu(prev.path), read_hu(s.path))
                and float(np.linalg.norm(s.ipp - prev.ipp)) < DUPLICATE_MM
            ):
                n_identical += 1
                skipped.append(Skipped(_rel(s.path, root), "duplicate position with identical pixels"))
                continue
            raise InputError(
                "duplicate slice positions: two different images lie at the same position along "
                "the slice normal (two acquisitions in one series?); cannot choose between them"
            )
        kept.append(s)
    if n_same_instance:
        warnings.append(f"{n_same_instance} duplicate file(s) of the same instance left out")
    if n_identical:
        warnings.append(f"{n_identical} slice(s) at an already used position with identical pixels left out")
    return kept

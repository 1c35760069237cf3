"""The assessability gate: before inference, is this series one the model may answer on?

`assess(source, card)` runs the header checks (`header`: modality, body part, matrix and field of
view, rescale, compression, kernel and slice thickness against the card) and the pixel checks
(`pixels`: HU sanity and an intracranial cavity on a few sampled slices), and gathers every
warning the clinician should see with the answer (`findings.Warn`). A series that fails gets
`NotAssessable` from `require_assessable`; nothing is inferred or claimed for it.
"""

from __future__ import annotations

from typing import Any

from edge_ich.errors import NotAssessable
from edge_ich.sources.findings import Assessment, Check, Warn

__all__ = ["Assessment", "Check", "Warn", "assess", "require_assessable", "source_warnings"]

#: Slices further apart than this cannot be assessed for a bleed of reportable size.
MAX_SLICE_SPACING_MM = 10.0


def source_warnings(source: Any) -> list[Warn]:
    """Warnings from how the series was put together: gaps, excluded slices, tilt, other geometry."""
    from edge_ich.sources.dicom.geometry import GAP_WARNING, TILT_WARNING

    geo = source.geometry
    out: list[Warn] = []
    for text in geo.warnings:
        if text.startswith(GAP_WARNING):
            n = len(geo.missing)
            out.append(Warn("incomplete_series", text, f"{n} slice(s) missing: volume is a lower bound"))
        elif text.startswith(TILT_WARNING):
            out.append(Warn("tilt_corrected", text, f"tilt {geo.tilt_deg:.1f} deg corrected"))
        else:
            out.append(Warn("geometry", text, text.split(":")[0]))
    uid = getattr(source, "series_uid", None)
    inside = [s for s in getattr(source, "skipped", []) if uid and s.series_uid == uid]
    if inside:
        reasons: dict[str, int] = {}
        for s in inside:
            reasons[s.reason] = reasons.get(s.reason, 0) + 1
        what = "; ".join(f"{r}: {c}" for r, c in sorted(reasons.items(), key=lambda kv: -kv[1]))
        out.append(
            Warn(
                "slices_excluded",
                f"{len(inside)} file(s) of this series left out ({what}); their positions are not assessed",
                f"{len(inside)} slice(s) excluded",
            )
        )
    return out


def assess(source: Any, card: Any = None) -> Assessment:
    """Header and pixel checks of one opened series (DICOM, NIfTI or in-memory array)."""
    from edge_ich.assess.pixels import pixel_checks
    from edge_ich.sources.dicom.checks import grid_problem_of, header_checks

    card_range: dict[str, Any] = card.input_range() if card is not None else {}
    geo = source.geometry
    n, rows, cols = geo.shape
    checks: list[Check] = []
    warns = source_warnings(source)
    headers = getattr(source, "present_headers", None)
    reason: str | None = None
    rescale = "present"
    if source.kind == "dicom" and headers:
        from edge_ich.sources.dicom.checks import rescale_state

        reason, hchecks, hwarns = header_checks(headers, card_range)
        checks += hchecks
        warns += hwarns
        rescale = rescale_state(headers)[0]
    else:
        checks.append(Check("modality", True, f"{source.kind} input states none: taken as CT in HU, checked in pixels"))
        grid = grid_problem_of(rows, cols, float(geo.spacing[1]), float(geo.spacing[2]))
        checks.append(Check("matrix and field of view", grid is None, grid or "ok"))
        reason = grid
    spacing = float(geo.spacing[0])
    checks.append(Check("slice spacing", spacing <= MAX_SLICE_SPACING_MM, f"{spacing:.2f} mm"))
    if reason is None and spacing > MAX_SLICE_SPACING_MM:
        reason = f"slices are {spacing:.1f} mm apart (at most {MAX_SLICE_SPACING_MM:g} mm)"
    if reason is None:
        present = [i for i in range(n) if i not in set(geo.missing)]
        preason, pchecks, pwarns = pixel_checks(source.read_hu, present, (geo.spacing[1], geo.spacing[2]), rescale)
        checks += pchecks
        warns += pwarns
        reason = preason
    return Assessment(assessable=reason is None, reason=reason, checks=checks, warnings=warns)


def require_assessable(source: Any, card: Any = None) -> Assessment:
    """`assess`, raising NotAssessable (with the checks, for the report) when the series fails."""
    result = assess(source, card)
    if not result.assessable:
        raise NotAssessable(result.reason or "unknown", source_facts(source), [c.to_dict() for c in result.checks])
    return result


def source_facts(source: Any) -> dict[str, Any]:
    """Non-identifying description of the input for a not-assessable report."""
    facts = dict(source.summary())
    facts.setdefault("kind", getattr(source, "kind", "unknown"))
    return facts

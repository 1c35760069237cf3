"""report.json (schema edge_ich/schemas/report.schema.json) and the one summary line for the clinician.

The verdict and every probability figure speak of regions: a region is reported when it reaches
the card's minimum size, and each smaller one is listed as a candidate with its volume, slices
and probability. The summary line and `finding` are built from the same lists, so they cannot
contradict each other.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Sequence
from typing import Any

import numpy as np

from edge_ich import __version__
from edge_ich.analysis.masks import slice_counts

REPORT_SCHEMA_VERSION = "2.0"
INTENDED_USE = "research use only; not a medical device"


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _stats_ms(values: list[float]) -> dict[str, float]:
    """Per-stage timing, with the same median and nearest-rank p95 as `edge-ich bench`."""
    from edge_ich.analysis.stats import median, percentile

    if not values:
        return {"total_s": 0.0, "mean_ms": 0.0, "p50_ms": 0.0, "p95_ms": 0.0}
    ms = sorted(v * 1000.0 for v in values)
    return {
        "total_s": float(sum(values)),
        "mean_ms": sum(ms) / len(ms),
        "p50_ms": median(ms),
        "p95_ms": percentile(ms, 95),
    }


def _region(c: Any) -> dict[str, Any]:
    return {
        "id": c.id,
        "volume_ml": round(c.volume_ml, 3),
        "voxels": c.voxels,
        "slices": list(c.slices),
        "centroid_voxel": [round(v, 2) for v in c.centroid_voxel],
        "centroid_lps_mm": [round(v, 2) for v in c.centroid_lps_mm],
        "max_probability": None if c.max_probability is None else round(c.max_probability, 4),
    }


def model_section(card: Any) -> dict[str, Any]:
    return {
        "name": card.name,
        "card_id": card.card_id,
        "sha256": card.model_sha256,
        "precision": card.precision,
        "threshold": card.threshold,
        "min_component_mm3": card.min_component_mm3,
        "input_size": list(card.input_size),
        "context": card.context,
        "windows": [w.name for w in card.windows],
        "validated_input": card.input_range(),
    }


def _max_prob(regions: Sequence[Any]) -> float | None:
    vals = [c.max_probability for c in regions if c.max_probability is not None]
    return round(max(vals), 4) if vals else None


def build_report(
    source: Any,
    model: Any,
    seg: Any,
    kept: np.ndarray,
    comps: Sequence[Any],
    candidates: Sequence[Any],
    outputs: dict[str, Any],
    assessment: Any,
    unassessed: Sequence[int],
) -> dict[str, Any]:
    """The report of an assessable series. `unassessed`: slice positions without an answer (gaps, blank)."""
    geo = source.geometry
    n = geo.shape[0]
    area_mm2 = slice_counts(kept) * geo.spacing[1] * geo.spacing[2]
    sop = getattr(source, "sop_instance_uids", None)
    step_mm = float(np.linalg.norm(geo.affine_lps[:3, 2]))
    skip = {int(i) for i in unassessed}
    slices = []
    for i in range(n):
        row: dict[str, Any] = {
            "index": i,
            "offset_mm": round(step_mm * i, 3),
            "assessed": i not in skip,
            "max_probability": round(float(seg.slice_prob[i]), 4),
            "lesion_area_mm2": round(float(area_mm2[i]), 2),
            "positive": bool(area_mm2[i] > 0),
        }
        if sop and sop[i]:
            row["sop_instance_uid"] = sop[i]
        slices.append(row)
    card = model.card
    small_ml = float(sum(c.volume_ml for c in candidates))
    return {
        "schema": "edge-ich/report",
        "schema_version": REPORT_SCHEMA_VERSION,
        "edge_ich_version": __version__,
        "created_utc": _now(),
        "intended_use": INTENDED_USE,
        "assessable": True,
        "assessment": assessment.to_dict(),
        "warnings": [w.to_dict() for w in assessment.warnings],
        "input": {
            **source.summary(),
            "kind": source.kind,
            "shape": list(geo.shape),
            "spacing_mm": [round(float(s), 4) for s in geo.spacing],
            "geometry_warnings": list(geo.warnings),
            "skipped": [_skipped(s, getattr(source, "series_uid", None)) for s in source.skipped],
            "unassessed_slices": sorted(skip),
        },
        "model": model_section(card),
        "backend": {
            "name": model.backend.info.name,
            "device": model.backend.info.device,
            "precision": model.backend.info.precision,
            "details": dict(model.backend.info.details),
        },
        "finding": {
            "hemorrhage": bool(comps),
            "total_volume_ml": round(float(sum(c.volume_ml for c in comps)), 3),
            "volume_is_lower_bound": bool(skip),
            "n_components": len(comps),
            "positive_slices": [i for i in range(n) if area_mm2[i] > 0],
            "max_region_probability": _max_prob(comps),
            "reporting_size_ml": round(card.min_component_mm3 / 1000.0, 4),
            "candidates_below_reporting_size": {
                "count": len(candidates),
                "total_volume_ml": round(small_ml, 3),
                "max_probability": _max_prob(candidates),
            },
        },
        "components": [_region(c) for c in comps],
        "candidates": [_region(c) for c in candidates],
        "slices": slices,
        "timings": {
            "load": {k: round(v, 4) for k, v in model.load_s.items()},
            "first_infer_s": round(seg.timings.first_infer_s or 0.0, 4),
            "segment_wall_s": round(seg.timings.wall_s, 4),
            "stages": {s: _stats_ms(v) for s, v in seg.timings.per_slice.items()},
        },
        "outputs": outputs,
    }


def _skipped(s: Any, uid: str | None) -> dict[str, Any]:
    row: dict[str, Any] = {"path": s.path, "reason": s.reason}
    if uid and s.series_uid == uid:
        row["in_series"] = True
    return row


def not_assessable_report(
    reason: str, facts: dict[str, Any], checks: list[dict[str, Any]], card: Any, warnings: list[dict[str, Any]]
) -> dict[str, Any]:
    """The report of a series the gate refused: why, what was checked, and no finding at all."""
    doc: dict[str, Any] = {
        "schema": "edge-ich/report",
        "schema_version": REPORT_SCHEMA_VERSION,
        "edge_ich_version": __version__,
        "created_utc": _now(),
        "intended_use": INTENDED_USE,
        "assessable": False,
        "assessment": {"assessable": False, "reason": reason, "checks": checks},
        "warnings": warnings,
        "input": {k: v for k, v in facts.items() if k != "affine_lps"},
        "outputs": {"report": "report.json"},
    }
    if card is not None:
        doc["model"] = model_section(card)
    return doc


def _warning_tail(report: dict[str, Any]) -> str:
    shorts = list(dict.fromkeys(w["short"] for w in report.get("warnings", [])))
    return f" | WARNINGS: {'; '.join(shorts)}" if shorts else ""


def summary_line(report: dict[str, Any]) -> str:
    """One line for the clinician: the call, volume, slices, candidates, and every warning's label."""
    f = report["finding"]
    n = report["input"]["shape"][0]
    cand = f["candidates_below_reporting_size"]
    size = f"{f['reporting_size_ml']:g} mL"
    tail = f"[{report['model']['card_id']}, {report['backend']['name']} {report['backend']['device']}, {report['timings']['segment_wall_s']:.2f} s]"
    if cand["count"]:
        p = cand["max_probability"]
        small = (
            f"; {cand['count']} smaller candidate(s) below {size} ({cand['total_volume_ml']:.2f} mL"
            f"{f', probability up to {p:.2f}' if p is not None else ''}) listed in report.json"
        )
    else:
        small = ""
    if f["hemorrhage"]:
        pos = f["positive_slices"]
        vol = f"{'at least ' if f['volume_is_lower_bound'] else ''}{f['total_volume_ml']:.1f} mL"
        prob = f["max_region_probability"]
        text = (
            f"HEMORRHAGE SUSPECTED: {vol} in {f['n_components']} region(s), slices {pos[0] + 1}-{pos[-1] + 1} of {n}"
            f"{f'; region probability up to {prob:.2f}' if prob is not None else ''}{small}"
        )
    else:
        text = (
            f"No hemorrhage of reportable size ({size} or more) found on {n} slices{small or '; no candidate region'}"
        )
    return f"{text} {tail}{_warning_tail(report)}"

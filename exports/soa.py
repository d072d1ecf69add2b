"""The Statement of Applicability (ISO/IEC 27001:2022 6.1.3 d) as a table: the owner's
declaration beside Annexa's measurement, for soa.csv, the report and `annexa soa`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from exports.exporter import iso

SOA_COLUMNS = [
    "control",
    "title",
    "theme",
    "applicable",
    "justification",
    "declared",
    "measured",
    "contradiction",
    "owner",
    "implementation",
    "risks",
    "policies",
    "findings",
    "failing",
    "evidence_items",
    "manual_evidence",
    "soa_version",
    "soa_approved_by",
    "soa_approved_on",
    "as_of",
]


def implementation_label(status: str, counts: Mapping[str, int], applicable: bool) -> str:
    """What the measured status says about implementation, in an SoA's words."""
    if not applicable:
        return "excluded"
    if status == "pass":
        return "implemented"
    if status == "excepted":
        return "implemented with approved exceptions"
    if status == "undocumented":
        return "implemented, not documented"
    if status == "fail":
        return "partially implemented" if counts.get("pass") else "not implemented"
    if status == "not_applicable":
        return "implemented (nothing in scope to check)"
    return "not verified"


def soa_table(
    statuses: Iterable[Mapping[str, Any]], scope: Any, *, as_of: datetime | None = None
) -> list[dict[str, Any]]:
    """The Statement of Applicability (ISO/IEC 27001:2022 6.1.3 d): every Annex A
    control and every additional control, the owner's declaration beside Annexa's
    measurement, and where the two disagree."""
    from mappings.soa import contradiction

    meta = scope.meta() if hasattr(scope, "meta") else {}
    stamp = iso(as_of) if as_of else None
    rows = []
    seen: set[str] = set()
    by_id = {c["control"]: c for c in statuses}
    for cid, app in scope.controls.items():
        c = by_id.get(cid)
        seen.add(cid)
        counts = c["counts"] if c else {}
        measured = c["status"] if c else "not_measured"
        automated = sum(
            v for k, v in counts.items() if k not in ("manual_evidence", "manual_expired")
        )
        rows.append(
            {
                "control": cid,
                "title": c["title"] if c else (app.title or ""),
                "theme": c["theme"] if c else "additional",
                "applicable": "yes" if app.applicable else "no",
                "justification": app.justification,
                "declared": app.status or "",
                "measured": measured,
                "status": measured,
                "contradiction": contradiction(app.status, measured, app.applicable) or "",
                "implementation": app.implementation
                or implementation_label(measured, counts, app.applicable),
                "owner": app.owner or "",
                "risks": ", ".join(app.risks),
                "policies": ", ".join(app.policies),
                "findings": automated,
                "failing": counts.get("fail", 0),
                "evidence_items": c.get("evidence_items", 0) if c else 0,
                "manual_evidence": counts.get("manual_evidence", 0),
                "soa_version": meta.get("version") or "",
                "soa_approved_by": meta.get("approved_by") or "",
                "soa_approved_on": meta.get("approved_on") or "",
                "as_of": stamp,
            }
        )
    for cid, c in by_id.items():
        if cid not in seen:  # a control the recorded SoA did not know (catalog grew)
            rows.append(
                {
                    **{k: "" for k in SOA_COLUMNS},
                    "control": cid,
                    "title": c["title"],
                    "measured": c["status"],
                    "status": c["status"],
                    "as_of": stamp,
                }
            )
    return rows

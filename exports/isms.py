"""The ISMS parts of the audit package: clauses 4-10 and the risk register as CSV rows,
and the report's ISMS and trend sections.

The figures are read by the store (:func:`store.isms.clause_statuses`,
:mod:`store.risks`, :mod:`store.trends`); this module only shapes and renders them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine

from store.isms import clause_statuses

ISMS_COLUMNS = [
    "clause",
    "title",
    "status",
    "document",
    "documents",
    "counts",
    "register",
    "expected_evidence",
    "explanation",
]


RISK_COLUMNS = [
    "id",
    "title",
    "source",
    "owner",
    "asset",
    "threat",
    "vulnerability",
    "likelihood",
    "impact",
    "inherent_score",
    "treatment",
    "controls",
    "additional_controls",
    "target_residual",
    "effective_residual",
    "appetite",
    "review_date",
    "accepted_by",
    "accepted_on",
    "acceptance_recorded_at",
    "flags",
    "accepted_flags",
    "status",
]


def package_parts(
    engine: Engine,
    index: Any,
    *,
    start: datetime,
    end: datetime,
    timelines: Mapping[str, Any],
    applicable: Iterable[str],
    freshness: timedelta,
    exceptions: Iterable[Any],
) -> dict[str, Any]:
    """What the audit package adds for the ISMS (exports/package.py): the clauses and the
    risk register at the end of the period, and the monthly trends for the report.

    Control statuses come from the package's own timelines, so every figure agrees with
    ``controls.csv``; the risk policy is the one recorded (else the default, no appetite).
    """
    import json

    from exports.trends import trends_html
    from store.risk_input import RiskPolicy
    from store.risks import read_history, register_rows
    from store.status import STATUS_RANK
    from store.trends import control_share_series, month_points, risk_series

    rules = list(exceptions)
    with engine.connect() as conn:
        history = read_history(conn)
    fallback = RiskPolicy.default()
    at_end = {cid: tl.status_at(end) for cid, tl in timelines.items()}
    rows, _, _ = register_rows(
        history, at=end, statuses=at_end, fallback=fallback, catalog=index.catalog, rank=STATUS_RANK
    )
    clauses = clause_statuses(engine, end, register=rows, freshness=freshness, exceptions=rules)
    points = month_points(start, end)
    controls = control_share_series(timelines, points, set(applicable))
    risks = risk_series(
        history, timelines, points, fallback=fallback, catalog=index.catalog, rank=STATUS_RANK
    )

    def flat(d: dict[str, Any]) -> dict[str, Any]:
        return {k: json.dumps(v) if isinstance(v, dict | list) else v for k, v in d.items()}

    return {
        "sections": [
            (
                "ISMS clauses 4-10 at the end of the period",
                isms_table([c.as_dict() for c in clauses]),
            ),
            ("Continual improvement: month by month", trends_html(controls, risks)),
        ],
        "isms": [c.as_dict() for c in clauses],
        "isms_csv": [flat(c.as_dict()) for c in clauses],
        "risks_csv": [flat(r.as_dict()) for r in rows],
        "trends": {"controls": controls, "risks": risks},
        "trends_html": trends_html(controls, risks),
    }


def isms_table(rows: Iterable[Mapping[str, Any]]) -> str:
    """The report's ISMS section: one row per clause (HTML, escaped)."""
    from html import escape

    from exports.report import STATUS_COLORS

    def badge(s: str) -> str:
        return (
            f'<span class="badge" style="background:{STATUS_COLORS.get(s, "#555")}">'
            f"{escape(s)}</span>"
        )

    body = "".join(
        f"<tr><td>{escape(c['clause'])}</td><td>{escape(c['title'])}</td>"
        f"<td>{badge(c['status'])}</td><td>{escape(c['document'])}</td>"
        f"<td>{escape(c['explanation'])}</td></tr>"
        for c in rows
    )
    return (
        '<table id="isms"><thead><tr><th>Clause</th><th>Title</th><th>Status</th>'
        f"<th>Document</th><th>Why</th></tr></thead><tbody>{body}</tbody></table>"
    )

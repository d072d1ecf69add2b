"""Continual improvement made visible (ISO/IEC 27001 clause 10.1): month by month, the
share of applicable controls passing and the risk scores, for the audit package.

Both series are read from what the package already computed — each control's status
timeline over the period (``store.timelines.control_timelines``), so a month's point is
exactly the status ``annexa controls --at`` gives for that instant — and the recorded
risk register (``store.risks``) judged against those statuses. The charts are inline SVG
(no script, no external resource), so the report stays one self-contained file.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from store.risk_input import RiskPolicy
from store.risks import RegisterHistory, register_rows


def month_points(start: datetime, end: datetime) -> list[datetime]:
    """The end of every month that ends inside ``(start, end]``, then ``end`` itself."""
    points: list[datetime] = []
    t = start.astimezone(UTC)
    while True:
        nxt = datetime(t.year + (t.month == 12), t.month % 12 + 1, 1, tzinfo=UTC)
        if nxt >= end:
            break
        points.append(nxt - timedelta(microseconds=1))
        t = nxt
    points.append(end)
    return points


def control_share_series(
    timelines: Mapping[str, Any], points: Sequence[datetime], applicable: Collection[str]
) -> list[dict[str, Any]]:
    """Per point: how many applicable controls are ``pass`` (strictly: not excepted)."""
    out = []
    for t in points:
        states = [tl.status_at(t) for cid, tl in timelines.items() if cid in applicable]
        passing = sum(1 for s in states if s == "pass")
        out.append(
            {
                "month": f"{t:%Y-%m}",
                "at": t.isoformat(),
                "passing": passing,
                "applicable": len(states),
                "pct": round(100.0 * passing / len(states), 1) if states else 0.0,
            }
        )
    return out


def risk_series(
    history: RegisterHistory,
    timelines: Mapping[str, Any],
    points: Sequence[datetime],
    *,
    fallback: RiskPolicy,
    catalog: Collection[str],
    rank: Mapping[str, int],
) -> list[dict[str, Any]]:
    """Per point: number of risks, summed inherent and effective residual scores, flagged."""
    out = []
    for t in points:
        statuses = {cid: tl.status_at(t) for cid, tl in timelines.items()}
        rows, policy, _ = register_rows(
            history, at=t, statuses=statuses, fallback=fallback, catalog=catalog, rank=rank
        )
        scored = [r for r in rows if r.inherent_score is not None]
        out.append(
            {
                "month": f"{t:%Y-%m}",
                "at": t.isoformat(),
                "risks": len(rows),
                "inherent": sum(r.inherent_score or 0 for r in scored),
                "residual": sum(r.effective_residual or 0 for r in scored),
                "flagged": sum(1 for r in rows if r.flagged),
                "appetite": policy.threshold,
            }
        )
    return out

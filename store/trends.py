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
from html import escape
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


def _line_chart(
    title: str,
    labels: Sequence[str],
    lines: Sequence[tuple[str, str, Sequence[float]]],
    top: float,
    suffix: str,
    chart_id: str,
    width: int = 900,
    height: int = 200,
) -> str:
    left, right, pad_top, bottom = 44, 10, 24, 28
    w, h = width - left - right, height - pad_top - bottom
    n = max(len(labels), 1)
    step = w / max(n - 1, 1)
    top = top or 1.0
    parts = [
        f'<svg id="{chart_id}" role="img" aria-label="{escape(title)}" '
        f'xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}">',
        f'<text x="{left}" y="14" font-size="12" font-weight="bold">{escape(title)}</text>',
        f'<rect x="{left}" y="{pad_top}" width="{w}" height="{h}" fill="#fafafa" stroke="#ccc"/>',
    ]
    for frac in (0.0, 0.5, 1.0):
        y = pad_top + h - h * frac
        parts.append(
            f'<text x="{left - 4}" y="{y + 4:.1f}" font-size="10" text-anchor="end">'
            f"{top * frac:g}{suffix}</text>"
        )
    for i, label in enumerate(labels):
        x = left + (i * step if n > 1 else w / 2)
        # The first and last labels sit at the plot's edges: anchor them inside it.
        anchor = "start" if i == 0 and n > 1 else "end" if i == n - 1 and n > 1 else "middle"
        parts.append(
            f'<text x="{x:.1f}" y="{height - 10}" font-size="10" '
            f'text-anchor="{anchor}">{escape(label)}</text>'
        )
    for lx, (name, color, values) in enumerate(lines):
        pts = []
        for i, v in enumerate(values):
            x = left + (i * step if n > 1 else w / 2)
            y = pad_top + h - h * min(float(v), top) / top
            pts.append(f"{x:.1f},{y:.1f}")
            parts.append(
                f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{color}">'
                f"<title>{escape(labels[i])}: {escape(name)} {v:g}</title></circle>"
            )
        # Later series dashed, so that one drawn over an equal one stays visible.
        dash = ' stroke-dasharray="6 4"' if lx else ""
        parts.append(
            f'<polyline class="series" data-name="{escape(name)}" fill="none" '
            f'stroke="{color}" stroke-width="2"{dash} points="{" ".join(pts)}"/>'
        )
        parts.append(
            f'<text x="{left + w - 4}" y="{pad_top + 14 + 13 * lx}" font-size="11" '
            f'text-anchor="end" fill="{color}">{escape(name)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def trends_html(controls: Sequence[Mapping[str, Any]], risks: Sequence[Mapping[str, Any]]) -> str:
    """The report's continual-improvement section body: two charts and their numbers."""
    labels = [p["month"] for p in controls]
    out = [
        _line_chart(
            "Applicable controls passing (%), at the end of each month",
            labels,
            [("passing", "#2e7d32", [p["pct"] for p in controls])],
            100.0,
            "%",
            "trend-controls",
        )
    ]
    if any(p["risks"] for p in risks):
        top = max(max(p["inherent"] for p in risks), 1)
        out.append(
            _line_chart(
                "Risk scores (sum over the register), at the end of each month",
                labels,
                [
                    ("inherent", "#8e24aa", [p["inherent"] for p in risks]),
                    ("effective residual", "#c62828", [p["residual"] for p in risks]),
                ],
                float(top),
                "",
                "trend-risks",
            )
        )
    rows = "".join(
        f"<tr><td>{escape(c['month'])}</td><td>{c['passing']}/{c['applicable']}</td>"
        f"<td>{c['pct']}</td><td>{r['risks']}</td><td>{r['inherent']}</td>"
        f"<td>{r['residual']}</td><td>{r['flagged']}</td></tr>"
        for c, r in zip(controls, risks, strict=True)
    )
    out.append(
        '<table id="trends"><thead><tr><th>Month</th><th>Controls passing</th>'
        "<th>%</th><th>Risks</th><th>Inherent</th><th>Effective residual</th>"
        f"<th>Flagged</th></tr></thead><tbody>{rows}</tbody></table>"
    )
    return "".join(out)

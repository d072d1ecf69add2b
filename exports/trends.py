"""The report's continual-improvement charts (ISO/IEC 27001 clause 10.1): inline SVG of
the monthly series :mod:`store.trends` reads — no script, no external resource, so the
report stays one self-contained file.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape
from typing import Any


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

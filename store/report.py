"""The audit package's HTML report: one self-contained file an auditor opens offline.

Self-contained means: inline CSS, inline JavaScript, the chart as inline SVG, and a
Content-Security-Policy that forbids every network request (``default-src 'none'``),
so opening it can neither leak anything nor depend on anything. Everything is
rendered server-side; the script only adds a filter box, so the report reads the
same with JavaScript disabled. Drill-down uses ``<details>`` elements: control →
findings → the evidence payload each finding was judged on.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from html import escape
from typing import Any

STATUS_COLORS = {
    "fail": "#c62828",
    "error": "#8e24aa",
    "stale": "#d4c000",
    "excepted": "#1565c0",
    "pass": "#2e7d32",
    "not_applicable": "#9e9e9e",
    "no_evidence": "#ff8f00",
    "manual": "#00838f",
}
MAX_PAYLOAD_CHARS = 20_000


def _t(value: datetime | None) -> str:
    if value is None:
        return ""
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _badge(status: str) -> str:
    color = STATUS_COLORS.get(status, "#555")
    return f'<span class="badge" style="background:{color}">{escape(status)}</span>'


def chart_svg(series: Sequence[Mapping[str, Any]], width: int = 900, height: int = 260) -> str:
    """Stacked bars of control statuses over the period, with the compliant % line."""
    if not series:
        return '<svg id="chart" xmlns="http://www.w3.org/2000/svg" width="10" height="10"></svg>'
    left, right, top, bottom = 40, 10, 10, 40
    w = width - left - right
    h = height - top - bottom
    n = len(series)
    bw = w / n
    parts = [
        f'<svg id="chart" role="img" aria-label="Compliance over the period" '
        f'xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}">',
        f'<rect x="{left}" y="{top}" width="{w}" height="{h}" fill="#fafafa" stroke="#ccc"/>',
    ]
    for pct in (0, 50, 100):
        y = top + h - h * pct / 100
        parts.append(f'<line x1="{left}" x2="{left + w}" y1="{y:.1f}" y2="{y:.1f}" '
                     'stroke="#ddd"/>')
        parts.append(f'<text x="{left - 4}" y="{y + 4:.1f}" font-size="10" '
                     f'text-anchor="end">{pct}%</text>')
    points = []
    for i, s in enumerate(series):
        counts = s["counts"]
        total = sum(counts.values()) or 1
        y = top + h
        x = left + i * bw
        for status in STATUS_COLORS:
            c = counts.get(status, 0)
            if not c:
                continue
            bh = h * c / total
            y -= bh
            parts.append(
                f'<rect class="bar" x="{x:.2f}" y="{y:.2f}" width="{max(bw - 0.5, 0.5):.2f}" '
                f'height="{bh:.2f}" fill="{STATUS_COLORS[status]}" opacity="0.55">'
                f"<title>{escape(s['at'])}: {status} {c}</title></rect>"
            )
        py = top + h - h * float(s["compliant_pct"]) / 100
        points.append(f"{x + bw / 2:.2f},{py:.2f}")
    parts.append(f'<polyline id="compliance-line" fill="none" stroke="#111" stroke-width="2" '
                 f'points="{" ".join(points)}"/>')
    first, last = series[0]["at"][:10], series[-1]["at"][:10]
    parts.append(f'<text x="{left}" y="{height - 20}" font-size="11">{escape(first)}</text>')
    parts.append(f'<text x="{left + w}" y="{height - 20}" font-size="11" '
                 f'text-anchor="end">{escape(last)}</text>')
    lx = left
    for status, color in STATUS_COLORS.items():
        parts.append(f'<rect x="{lx}" y="{height - 12}" width="10" height="10" fill="{color}"/>')
        parts.append(f'<text x="{lx + 13}" y="{height - 3}" font-size="10">{status}</text>')
        lx += 95
    parts.append("</svg>")
    return "".join(parts)


_CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#222}
h1{font-size:22px;margin:0 0 4px} h2{font-size:17px;margin:28px 0 8px}
.meta{color:#555} table{border-collapse:collapse;width:100%}
th,td{border-bottom:1px solid #e3e3e3;padding:4px 6px;text-align:left;vertical-align:top;
overflow-wrap:anywhere}
th{background:#f3f3f3;position:sticky;top:0}
.badge{color:#fff;border-radius:3px;padding:1px 6px;font-size:12px;white-space:nowrap}
details>summary{cursor:pointer;color:#1565c0} pre{background:#f7f7f7;padding:8px;
overflow:auto;max-height:320px;font-size:12px} .excluded{color:#999}
.cards span{display:inline-block;margin:0 12px 6px 0} #filter{padding:4px;width:260px}
"""

_JS = """
(function () {
  var box = document.getElementById('filter');
  var rows = document.querySelectorAll('#controls tbody tr.control');
  function apply() {
    var q = box.value.toLowerCase();
    for (var i = 0; i < rows.length; i++) {
      var hit = rows[i].textContent.toLowerCase().indexOf(q) >= 0;
      rows[i].style.display = hit ? '' : 'none';
    }
  }
  box.addEventListener('input', apply);
  document.body.setAttribute('data-ready', String(rows.length));
})();
"""


def render_report(
    *,
    title: str,
    organisation: str,
    scope_description: str,
    start: datetime,
    end: datetime,
    generated_at: datetime,
    controls: Sequence[Mapping[str, Any]],
    series: Sequence[Mapping[str, Any]],
    drill: Mapping[str, Sequence[Mapping[str, Any]]],
    payloads: Mapping[str, str],
    exceptions: Sequence[Mapping[str, Any]],
    runs_count: int,
    soa: Sequence[Mapping[str, Any]] = (),
) -> str:
    """The whole HTML document.

    ``controls``: one dict per control (status at end, worst, applicability …);
    ``drill``: control → findings in force at the end; ``payloads``: hash → body.
    """
    counts: dict[str, int] = {}
    for c in controls:
        if c.get("applicable", True):
            counts[c["status"]] = counts.get(c["status"], 0) + 1
    cards = " ".join(
        f"<span>{_badge(s)} {n}</span>" for s, n in sorted(counts.items(), key=lambda kv: kv[0])
    )
    body: list[str] = []
    for c in controls:
        cid = c["control"]
        cls = "control" + ("" if c.get("applicable", True) else " excluded")
        findings = drill.get(cid, [])
        detail = []
        if findings:
            detail.append(f"<details><summary>{len(findings)} finding(s)</summary><table>"
                          "<tr><th>Check</th><th>Resource</th><th>Status</th><th>Observed</th>"
                          "<th>Message</th><th>Evidence</th></tr>")
            for f in findings:
                h = f.get("evidence_hash") or ""
                if h and h in payloads:
                    text = payloads[h]
                    try:
                        text = json.dumps(json.loads(text), indent=2, sort_keys=True)
                    except ValueError:
                        pass
                    if len(text) > MAX_PAYLOAD_CHARS:
                        text = text[:MAX_PAYLOAD_CHARS] + "\n… (truncated; see evidence.jsonl)"
                    ev = (f"<details><summary>{escape(h[:16])}</summary>"
                          f"<pre>{escape(text)}</pre></details>")
                elif h:
                    ev = f"{escape(h[:16])} (see evidence.jsonl)"
                else:
                    ev = ""
                exc = f.get("exception")
                status = _badge(f["effective_status"]) + (
                    f"<br><small>{escape(exc)}</small>" if exc else ""
                )
                detail.append(
                    f"<tr><td>{escape(f['check_id'])}</td><td>{escape(str(f['resource_id']))}"
                    f"</td><td>{status}</td><td>{_t(f['observed_at'])}</td>"
                    f"<td>{escape(f['message'])}</td><td>{ev}</td></tr>"
                )
            detail.append("</table></details>")
        for m in c.get("manual_evidence", []):
            detail.append(
                f"<div>manual: {escape(m['filename'])} ({escape(m['state'])}, valid until "
                f"{escape(m['valid_until'][:10])}, by {escape(m['added_by'])}, sha256 "
                f"{escape(m['file_sha256'][:16])}…)</div>"
            )
        if not detail:
            detail.append('<span class="meta">no evidence in force</span>')
        fail_h = c.get("fail_hours", 0)
        body.append(
            f'<tr class="{cls}" id="c-{escape(cid)}"><td>{escape(cid)}</td>'
            f"<td>{escape(c['title'])}</td><td>{'yes' if c.get('applicable', True) else 'no'}"
            f"<br><small>{escape(c.get('justification', ''))}</small></td>"
            f"<td>{_badge(c['status'])}</td><td>{_badge(c.get('worst', c['status']))}</td>"
            f"<td>{c.get('compliant_pct', '')}</td><td>{fail_h}</td>"
            f"<td>{''.join(detail)}</td></tr>"
        )
    exc_rows = "".join(
        f"<tr><td>{escape(e['id'])}</td><td>{escape(e['check'])}</td>"
        f"<td>{escape(e['resource'])}</td><td>{escape(e['reason'])}</td>"
        f"<td>{escape(e['approved_by'])}</td><td>{escape(e['expires'][:19])}</td></tr>"
        for e in exceptions
    ) or '<tr><td colspan="6">none</td></tr>'
    soa_rows = "".join(
        f"<tr><td>{escape(r['control'])}</td><td>{escape(r['title'])}</td>"
        f"<td>{escape(r['applicable'])}</td><td>{escape(r['justification'])}</td>"
        f"<td>{_badge(r['status'])}</td><td>{escape(r['implementation'])}</td>"
        f"<td>{r['findings']}</td><td>{r['evidence_items']}</td><td>{r['manual_evidence']}</td>"
        "</tr>"
        for r in soa
    )
    csp = ("default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; "
           "img-src data:")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{csp}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(title)}</title><style>{_CSS}</style></head>
<body data-ready="0">
<h1>{escape(title)}</h1>
<div class="meta">{escape(organisation)}{' — ' if organisation else ''}{escape(scope_description)}
<br>Period {_t(start)} → {_t(end)} · generated {_t(generated_at)} · {runs_count} runs relied on ·
verify this package offline with <code>annexa verify-package</code></div>
<h2>Status of applicable controls at the end of the period</h2>
<div class="cards">{cards}</div>
<h2>Compliance over the period</h2>
{chart_svg(series)}
<h2>Controls</h2>
<input id="filter" type="search" placeholder="Filter controls…" aria-label="Filter controls">
<table id="controls"><thead><tr><th>Control</th><th>Title</th><th>Applicable</th>
<th>Status at end</th><th>Worst in period</th><th>Compliant %</th><th>Hours failing</th>
<th>Evidence</th></tr></thead><tbody>
{''.join(body)}
</tbody></table>
<h2>Statement of Applicability</h2>
<table id="soa"><thead><tr><th>Control</th><th>Title</th><th>Applicable</th>
<th>Justification</th><th>Status</th><th>Implementation</th><th>Findings</th>
<th>Evidence items</th><th>Manual evidence</th></tr></thead><tbody>{soa_rows}</tbody></table>
<h2>Exceptions applied</h2>
<table id="exceptions"><tr><th>Id</th><th>Check</th><th>Resources</th><th>Reason</th>
<th>Approved by</th><th>Expires</th></tr>{exc_rows}</table>
<script>{_JS}</script>
</body></html>
"""

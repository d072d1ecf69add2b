"""The audit package's HTML report: one self-contained file, on screen and on paper.

Self-contained: inline CSS and script, charts as inline SVG, and a
Content-Security-Policy that forbids every network request (``default-src 'none'``).
Rendered server-side, so it reads the same with JavaScript disabled; the script only
adds a filter box and folds long sections *on screen*. Nothing is hidden in a
``<details>`` element: printed (or saved as PDF) every section is open, so no failing
resource, reason or timeline is lost on paper.

Order, as an auditor reads it: what fails first (each failing control expanded with
its explanation, failing resources, when each was first observed and last confirmed,
and its status timeline), then every control, the runs relied on with their digests
and signatures, the Statement of Applicability, the exceptions and the samples.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from html import escape
from typing import Any

STATUS_COLORS = {
    "fail": "#c62828",
    "error": "#8e24aa",
    "stale": "#b59a00",
    "undocumented": "#e65100",
    "excepted": "#1565c0",
    "pass": "#2e7d32",
    "not_applicable": "#9e9e9e",
    "no_evidence": "#ff8f00",
    "manual": "#00838f",
}
#: Statuses charted over the period: evaluated controls. Controls without automated
#: evidence (manual, no_evidence) are counted apart, not stacked on top of the others.
CHARTED = ("fail", "error", "stale", "undocumented", "excepted", "pass", "not_applicable")
NEEDS_ATTENTION = ("fail", "error", "stale", "undocumented")
MAX_PAYLOAD_CHARS = 6_000


def _t(value: datetime | None) -> str:
    if value is None:
        return ""
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _iso_t(value: str | None) -> str:
    if not value:
        return ""
    return _t(datetime.fromisoformat(value.replace("Z", "+00:00")))


def _last_day(value: str | None) -> str:
    """An exclusive instant as the inclusive date it ends (2027-02-01T00:00 → 2027-01-31)."""
    if not value:
        return ""
    t = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return (t - timedelta(microseconds=1)).date().isoformat()


def _badge(status: str) -> str:
    return f'<span class="badge s-{escape(status)}">{escape(status)}</span>'


def timeline_svg(intervals: Sequence[tuple[datetime, datetime, str]], width: int = 560) -> str:
    """One control's statuses over the period as a coloured strip."""
    if not intervals:
        return ""
    start, end = intervals[0][0], intervals[-1][1]
    total = (end - start).total_seconds() or 1.0
    parts = [
        f'<svg class="strip" xmlns="http://www.w3.org/2000/svg" width="{width}" '
        f'height="14" viewBox="0 0 {width} 14" role="img" aria-label="status timeline">'
    ]
    for a, b, s in intervals:
        x = width * (a - start).total_seconds() / total
        w = max(width * (b - a).total_seconds() / total, 1.0)
        parts.append(
            f'<rect x="{x:.2f}" y="0" width="{w:.2f}" height="14" '
            f'fill="{STATUS_COLORS.get(s, "#555")}"><title>{escape(s)} {_t(a)} → '
            f"{_t(b)}</title></rect>"
        )
    parts.append("</svg>")
    return "".join(parts)


def chart_svg(series: Sequence[Mapping[str, Any]], width: int = 900, height: int = 260) -> str:
    """Stacked bars of the evaluated controls' statuses, with the compliant % line."""
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
        parts.append(f'<line x1="{left}" x2="{left + w}" y1="{y:.1f}" y2="{y:.1f}" stroke="#ddd"/>')
        parts.append(
            f'<text x="{left - 4}" y="{y + 4:.1f}" font-size="10" text-anchor="end">{pct}%</text>'
        )
    points = []
    for i, s in enumerate(series):
        counts = {k: v for k, v in s["counts"].items() if k in CHARTED}
        total = sum(counts.values()) or 1
        y = top + h
        x = left + i * bw
        for status in CHARTED:
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
        evaluated = sum(counts.values())
        passing = counts.get("pass", 0) + counts.get("not_applicable", 0)
        pct = 100.0 * passing / evaluated if evaluated else 0.0
        py = top + h - h * pct / 100
        points.append(f"{x + bw / 2:.2f},{py:.2f}")
    parts.append(
        f'<polyline id="compliance-line" fill="none" stroke="#111" stroke-width="2" '
        f'points="{" ".join(points)}"/>'
    )
    first, last = series[0]["at"][:10], series[-1]["at"][:10]
    parts.append(f'<text x="{left}" y="{height - 20}" font-size="11">{escape(first)}</text>')
    parts.append(
        f'<text x="{left + w}" y="{height - 20}" font-size="11" '
        f'text-anchor="end">{escape(last)}</text>'
    )
    lx = left
    for status in CHARTED:
        parts.append(
            f'<rect x="{lx}" y="{height - 12}" width="10" height="10" '
            f'fill="{STATUS_COLORS[status]}"/>'
        )
        parts.append(f'<text x="{lx + 13}" y="{height - 3}" font-size="10">{status}</text>')
        lx += 110
    parts.append("</svg>")
    return "".join(parts)


_CSS = (
    """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#222}
h1{font-size:22px;margin:0 0 4px} h2{font-size:17px;margin:28px 0 8px}
h3{font-size:15px;margin:18px 0 4px}
.meta{color:#555} table{border-collapse:collapse;width:100%}
th,td{border-bottom:1px solid #e3e3e3;padding:4px 6px;text-align:left;vertical-align:top}
td{overflow-wrap:break-word} th{background:#f3f3f3;white-space:nowrap}
.id,.cid{white-space:nowrap;font-family:ui-monospace,Menlo,Consolas,monospace;font-size:12px}
.badge{color:#fff;border-radius:3px;padding:1px 6px;font-size:12px;white-space:nowrap}
"""
    + "".join(f".s-{s}{{background:{c}}}" for s, c in STATUS_COLORS.items())
    + """
pre{background:#f7f7f7;padding:8px;overflow:auto;max-height:320px;font-size:12px;
white-space:pre-wrap} .excluded{color:#999}
.cards span{display:inline-block;margin:0 12px 6px 0} #filter{padding:4px;width:260px}
.failing{border-left:4px solid #c62828;padding-left:10px;margin:14px 0}
tr{page-break-inside:avoid} .explain{margin:2px 0 6px} .strip{display:block;margin:4px 0}
.folded .more{display:none} .toggle{cursor:pointer;color:#1565c0;border:0;background:none;
padding:0;font:inherit}
@media print{
 body{margin:0;font-size:10.5px} h2{page-break-after:avoid}
 .more{display:block !important} .toggle,#filter{display:none}
 pre{max-height:none;overflow:visible} th{position:static}
 @page{size:A4 landscape;margin:12mm}
}
"""
)

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
  var folds = document.querySelectorAll('.foldable');
  for (var j = 0; j < folds.length; j++) {
    (function (f) {
      var b = document.createElement('button');
      b.className = 'toggle';
      b.textContent = 'show / hide details';
      b.addEventListener('click', function () { f.classList.toggle('folded'); });
      f.insertBefore(b, f.firstChild);
      f.classList.add('folded');
    })(folds[j]);
  }
  document.body.setAttribute('data-ready', String(rows.length));
})();
"""


def _payload(h: str, payloads: Mapping[str, str]) -> str:
    if not h:
        return ""
    if h not in payloads:
        return f'<span class="id">{escape(h[:16])}</span> (see evidence.jsonl)'
    text = payloads[h]
    try:
        text = json.dumps(json.loads(text), indent=2, sort_keys=True)
    except ValueError:
        pass
    if len(text) > MAX_PAYLOAD_CHARS:
        text = text[:MAX_PAYLOAD_CHARS] + "\n… (truncated; the whole body is in evidence.jsonl)"
    return (
        f'<div class="foldable"><span class="id">{escape(h[:16])}</span>'
        f'<div class="more"><pre>{escape(text)}</pre></div></div>'
    )


def _findings_table(findings: Sequence[Mapping[str, Any]], payloads: Mapping[str, str]) -> str:
    order = {"fail": 0, "error": 1, "excepted": 2, "pass": 3, "not_applicable": 4}
    rows = []
    for f in sorted(
        findings,
        key=lambda f: (
            order.get(f["effective_status"], 5),
            str(f["check_id"]),
            str(f["resource_id"]),
        ),
    ):
        exc = f.get("exception")
        status = _badge(f["effective_status"]) + (
            f"<br><small>{escape(exc)}</small>" if exc else ""
        )
        rows.append(
            f'<tr><td class="id">{escape(f["check_id"])}</td>'
            f'<td class="id">{escape(str(f["resource_id"]))}</td><td>{status}</td>'
            f"<td>{escape(f['message'])}</td>"
            f"<td>{_t(f.get('first_observed'))}</td><td>{_t(f.get('last_confirmed'))}</td>"
            f"<td>{_payload(f.get('evidence_hash') or '', payloads)}</td></tr>"
        )
    return (
        "<table><tr><th>Check</th><th>Resource</th><th>Status</th><th>Reason</th>"
        "<th>First observed</th><th>Last confirmed</th><th>Evidence</th></tr>"
        + "".join(rows)
        + "</table>"
    )


def _intervals_text(intervals: Sequence[tuple[datetime, datetime, str]]) -> str:
    return "<br>".join(f"{_t(a)} → {_t(b)} {_badge(s)}" for a, b, s in intervals)


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
    runs: Sequence[Mapping[str, Any]] = (),
    soa: Sequence[Mapping[str, Any]] = (),
    timelines: Mapping[str, Sequence[tuple[datetime, datetime, str]]] | None = None,
    samples: Sequence[Mapping[str, Any]] = (),
    soa_meta: Mapping[str, Any] | None = None,
    extra_sections: Sequence[tuple[str, str]] = (),
) -> str:
    """The whole HTML document.

    ``controls``: one dict per control (status at end, worst, explanation, applicability);
    ``drill``: control → findings in force at the end (with ``first_observed`` and
    ``last_confirmed``); ``payloads``: hash → body; ``timelines``: control → status
    intervals over the period; ``runs``: the runs relied on; ``extra_sections``:
    (title, HTML) appended at the end.
    """
    timelines = timelines or {}
    evaluated: dict[str, int] = {}
    unevidenced: dict[str, int] = {}
    for c in controls:
        if c.get("applicable", True):
            bucket = unevidenced if c["status"] in ("manual", "no_evidence") else evaluated
            bucket[c["status"]] = bucket.get(c["status"], 0) + 1
    cards = " ".join(
        f"<span>{_badge(s)} {evaluated[s]}</span>" for s in STATUS_COLORS if s in evaluated
    )
    apart = " ".join(
        f"<span>{_badge(s)} {unevidenced[s]}</span>" for s in STATUS_COLORS if s in unevidenced
    )
    attention = [
        c for c in controls if c.get("applicable", True) and c["status"] in NEEDS_ATTENTION
    ]
    order = {s: i for i, s in enumerate(NEEDS_ATTENTION)}
    attention.sort(key=lambda c: (order[c["status"]], c["control"]))
    failing_blocks = []
    for c in attention:
        cid = c["control"]
        tl = timelines.get(cid, ())
        findings = [
            f for f in drill.get(cid, []) if f["effective_status"] in ("fail", "error", "excepted")
        ]
        failing_blocks.append(
            f'<div class="failing" id="f-{escape(cid)}"><h3><span class="cid">{escape(cid)}'
            f"</span> {escape(c['title'])} {_badge(c['status'])}</h3>"
            f'<div class="explain">{escape(c.get("explanation") or "")}</div>'
            + (_findings_table(findings, payloads) if findings else "")
            + (f"{timeline_svg(tl)}<div>{_intervals_text(tl)}</div>" if tl else "")
            + "</div>"
        )
    body: list[str] = []
    for c in controls:
        cid = c["control"]
        cls = "control" + ("" if c.get("applicable", True) else " excluded")
        findings = drill.get(cid, [])
        detail = []
        if findings:
            detail.append(
                f'<div class="foldable">{len(findings)} finding(s)<div class="more">'
                f"{_findings_table(findings, payloads)}</div></div>"
            )
        for m in c.get("manual_evidence", []):
            detail.append(
                f"<div>document: {escape(m['filename'])} ({escape(m['state'])}, valid until "
                f"{escape(_last_day(m['valid_until']))}, by {escape(m['added_by'])}, sha256 "
                f'<span class="id">{escape(m["file_sha256"][:16])}</span>…)</div>'
            )
        if not detail:
            detail.append('<span class="meta">no evidence in force</span>')
        tl = timelines.get(cid, ())
        body.append(
            f'<tr class="{cls}" id="c-{escape(cid)}"><td class="cid">{escape(cid)}</td>'
            f"<td>{escape(c['title'])}</td><td>{'yes' if c.get('applicable', True) else 'no'}"
            f"<br><small>{escape(c.get('justification', ''))}</small></td>"
            f"<td>{_badge(c['status'])}</td><td>{_badge(c.get('worst', c['status']))}</td>"
            f"<td>{c.get('compliant_pct', '')}</td><td>{c.get('fail_hours', 0)}</td>"
            f"<td>{timeline_svg(tl, 160) if len(tl) > 1 else ''}{''.join(detail)}</td></tr>"
        )
    run_rows = (
        "".join(
            f'<tr><td class="id">{escape(r["source"])}</td><td class="id">{escape(r["id"])}</td>'
            f"<td>{_badge(r['status'])}</td><td>{_iso_t(r.get('started_at'))}</td>"
            f"<td>{_iso_t(r.get('finished_at'))}</td>"
            f'<td class="id">{escape((r.get("digest") or "")[:16])}</td>'
            f"<td>{escape('signed by ' + r['key_id'] if r.get('key_id') else 'unsigned')}</td>"
            f"<td>{'yes' if r.get('in_period') else 'before'}</td></tr>"
            for r in runs
        )
        or '<tr><td colspan="8">none</td></tr>'
    )
    exc_rows = (
        "".join(
            f'<tr><td class="id">{escape(e["id"])}</td><td class="id">{escape(e["check"])}</td>'
            f"<td>{escape(e['resource'])}</td><td>{escape(e['reason'])}</td>"
            f"<td>{escape(e['approved_by'])}</td><td>{escape((e.get('starts') or '')[:10])}</td>"
            f"<td>{_iso_t(e.get('recorded_at'))}"
            f"{' <b>backdated</b>' if e.get('backdated') else ''}</td>"
            f"<td>{escape(_last_day(e['expires']))}</td></tr>"
            for e in exceptions
        )
        or '<tr><td colspan="8">none</td></tr>'
    )
    soa_rows = "".join(
        f'<tr><td class="cid">{escape(r["control"])}</td><td>{escape(r["title"])}</td>'
        f"<td>{escape(r['applicable'])}</td><td>{escape(r['justification'])}</td>"
        f"<td>{escape(r.get('declared') or '')}</td><td>{_badge(r['measured'])}</td>"
        f"<td>{escape(r.get('contradiction') or '')}</td><td>{escape(r.get('owner') or '')}</td>"
        f"<td>{escape(r['implementation'])}</td></tr>"
        for r in soa
    )
    sample_rows = (
        "".join(
            f'<tr><td class="id">{escape(s["id"])}</td><td>{escape(json.dumps(s["population"]))}'
            f"</td><td>{s['size']} of {s['population_size']}</td>"
            f'<td class="id">{escape(s["seed"])}</td>'
            f'<td class="id">{escape(s["population_digest"][:16])}</td>'
            f"<td>{escape(', '.join(s['items']))}</td></tr>"
            for s in samples
        )
        or '<tr><td colspan="6">none</td></tr>'
    )
    meta = soa_meta or {}
    soa_line = ""
    if meta.get("version") or meta.get("approved_by"):
        soa_line = (
            f"<br>Statement of Applicability v{escape(str(meta.get('version') or '?'))}"
            f", approved by {escape(str(meta.get('approved_by') or '—'))} on "
            f"{escape(str(meta.get('approved_on') or '—'))}"
        )
    extras = "".join(f"<h2>{escape(t)}</h2>{html}" for t, html in extra_sections)
    csp = "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{csp}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(title)}</title><style>{_CSS}</style></head>
<body data-ready="0">
<h1>{escape(title)}</h1>
<div class="meta">{escape(organisation)}{" — " if organisation else ""}{escape(scope_description)}
<br>Period {_t(start)} → {_t(end)} · generated {_t(generated_at)} · {len(runs)} runs relied on ·
verify this package offline with <code>annexa verify-package --trusted-keys …</code>{soa_line}</div>
<h2>Status of applicable controls at the end of the period</h2>
<div class="cards">{cards}</div>
<div class="cards meta">Without automated evidence (not charted): {apart or "none"}</div>
<h2>Needing attention at the end of the period ({len(attention)})</h2>
{"".join(failing_blocks) or "<p>none</p>"}
<h2>Compliance over the period</h2>
{chart_svg(series)}
<h2>Controls</h2>
<input id="filter" type="search" placeholder="Filter controls…" aria-label="Filter controls">
<table id="controls"><thead><tr><th>Control</th><th>Title</th><th>Applicable</th>
<th>Status at end</th><th>Worst in period</th><th>Compliant %</th><th>Hours failing</th>
<th>Evidence</th></tr></thead><tbody>
{"".join(body)}
</tbody></table>
<h2>Runs relied on</h2>
<table id="runs"><tr><th>Source</th><th>Run</th><th>Status</th><th>Started</th>
<th>Finished</th><th>Digest</th><th>Signature</th><th>In period</th></tr>{run_rows}</table>
<h2>Statement of Applicability</h2>
<table id="soa"><thead><tr><th>Control</th><th>Title</th><th>Applicable</th>
<th>Justification</th><th>Declared</th><th>Measured</th><th>Contradiction</th><th>Owner</th>
<th>Implementation</th></tr></thead><tbody>{soa_rows}</tbody></table>
<h2>Exceptions in force during the period</h2>
<table id="exceptions"><tr><th>Id</th><th>Check</th><th>Resources</th><th>Reason</th>
<th>Approved by</th><th>Approved on</th><th>Recorded</th><th>Expires (last day)</th></tr>
{exc_rows}</table>
<h2>Samples</h2>
<table id="samples"><tr><th>Sample</th><th>Population</th><th>Size</th><th>Seed</th>
<th>Population digest</th><th>Items</th></tr>{sample_rows}</table>
{extras}
<script>{_JS}</script>
</body></html>
"""

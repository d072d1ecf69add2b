"""What each console page shows, read through the store's own point-in-time queries.

Nothing here computes a status or walks history itself: control status comes from
``store.status.control_statuses``, timelines from ``control_timelines``, findings and
evidence from ``findings_at`` / ``item_versions``, decisions from the recorded
decisions (``collector.decisions.decided``) — so the console, the CLI and the audit
package cannot disagree about an instant. Each table is returned as rows plus the
CLI's columns, so a download is byte-for-byte what ``--format csv|json`` prints.
"""

from __future__ import annotations

import base64
import difflib
import json
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine

from collector.decisions import decided
from collector.output import CONTROL_COLUMNS, FINDING_COLUMNS, RUN_COLUMNS
from core.records import utcnow
from mappings.loader import MappingIndex
from store.exceptions import exception_for
from store.queries import bodies, control_findings_page, findings_at, item_versions, list_runs
from store.status import CONTROL_STATUSES, control_statuses
from store.timelines import control_timelines

THEMES = ("organizational", "people", "physical", "technological")
EVIDENCE_COLUMNS = [
    ("id", "Version"),
    ("source", "source"),
    ("resource_type", "resource_type"),
    ("resource_id", "resource_id"),
    ("content_hash", "content_hash"),
    ("collected_at", "collected_at"),
    ("run_id", "run_id"),
]
#: Failing first: the order an auditor reads a control's findings in.
_FINDING_ORDER = {"fail": 0, "error": 1, "excepted": 2, "pass": 3, "not_applicable": 4}
TIMELINE_DAYS = 30
#: Finding rows per control page (failing first; "next" continues); the downloads have all.
PAGE_ROWS = 200


@dataclass
class Context:
    """What every page needs: the store, the mapping index, the freshness window."""

    engine: Engine
    index: MappingIndex
    freshness: timedelta
    #: resource type → the ids of the checks registered for it (the connectors' specs).
    checks_by_type: dict[str, set[str]] = field(default_factory=dict)
    #: The configured ``[audit.risk]`` appetite: what risks are judged against when no
    #: appetite was recorded then (as ``annexa risks`` does).
    risk_policy: Any = None


def evidence_key(f: dict[str, Any]) -> str:
    """The evidence item a finding was judged on (``Evidence.key``)."""
    return f"{f['resource_type']}|{f['scope']}|{f['region']}|{f['resource_id']}"


def overview(
    ctx: Context, at: datetime | None, theme: str | None, status: str | None
) -> dict[str, Any]:
    rules, _ = decided(ctx.engine, ctx.index, at)
    statuses = control_statuses(ctx.engine, ctx.index, at, ctx.freshness, exceptions=rules)
    by_theme: dict[str, Counter[str]] = {t: Counter() for t in THEMES}
    rows = []
    for c in statuses:
        by_theme.setdefault(c.theme, Counter())[c.status] += 1
        r = c.as_dict()
        r["summary"] = " ".join(f"{k}={v}" for k, v in c.counts.items())
        listed = r["failing_resources"] or r["error_scopes"] or r["excepted_resources"]
        r["resources"] = listed[:5] + ([f"… +{len(listed) - 5} more"] if len(listed) > 5 else [])
        if (theme and r["theme"] != theme) or (status and r["status"] != status):
            continue
        rows.append(r)
    themes = [
        {
            "theme": t,
            "counts": [(s, n[s]) for s in CONTROL_STATUSES if n[s]],
            "total": sum(n.values()),
        }
        for t, n in by_theme.items()
    ]
    return {"rows": rows, "themes": themes, "columns": CONTROL_COLUMNS}


def _annotate(f: dict[str, Any], rules: list[Any], when: datetime) -> dict[str, Any]:
    """A finding row as the control page and its downloads show it."""
    exc = exception_for(rules, f, when) if f["status"] == "fail" else None
    f["effective_status"] = "excepted" if exc else f["status"]
    f["exception"] = exc.id if exc else None
    f["evidence_key"] = evidence_key(f)
    f["target"] = f"{f['source']} {f['key']}"
    return f


def encode_cursor(key: tuple[Any, ...] | None) -> str:
    """The opaque ``after=`` of a control page's "next" link."""
    if key is None:
        return ""
    return base64.urlsafe_b64encode(json.dumps(list(key)).encode()).decode().rstrip("=")


def decode_cursor(text: str | None) -> tuple[int, str, str, str] | None:
    """``after=`` back to the key; ValueError when it is not one this console made."""
    if not text:
        return None
    try:
        raw = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError("not a page cursor") from exc
    if (not isinstance(raw, list) or len(raw) != 4 or not isinstance(raw[0], int)
            or not all(isinstance(x, str) for x in raw[1:])):
        raise ValueError("not a page cursor")
    return (raw[0], raw[1], raw[2], raw[3])


def control(
    ctx: Context, cid: str, at: datetime | None, after: tuple[int, str, str, str] | None = None
) -> dict[str, Any]:
    """A control page: its status, one page of :data:`PAGE_ROWS` findings (failing first,
    continued by ``after``), its exceptions and documents. The complete findings are
    :func:`control_findings` (the downloads), never read for the page."""
    when = at or utcnow()
    rules, scope = decided(ctx.engine, ctx.index, at)
    status = next(
        c
        for c in control_statuses(ctx.engine, ctx.index, when, ctx.freshness, exceptions=rules,
                                  controls=[cid])
        if c.id == cid
    )
    checks = set(ctx.index.checks_for(cid))
    with ctx.engine.connect() as conn:
        shown, more = control_findings_page(conn, when, checks, cid, after, PAGE_ROWS)
    for f in shown:
        _annotate(f, rules, when)
    exceptions = [
        r.as_dict()
        for r in rules
        if r.check in checks
        and (r.effective_from is None or r.effective_from <= when)
        and (r.recorded_at is None or r.recorded_at <= when)
    ]
    part = ctx.index.documented(cid)
    applicability = scope.controls.get(cid)
    return {
        "status": status.as_dict(),
        "columns": FINDING_COLUMNS,
        "shown": shown,
        "first_page": after is None,
        "next_after": encode_cursor(more),
        "exceptions": exceptions,
        "expected": part.expected_evidence,
        "review_days": part.review_interval.days if part.review_interval else None,
        "applicable": applicability.applicable if applicability else True,
        "justification": applicability.justification if applicability else "",
        "checks": sorted(checks),
        "targets": [f["target"] for f in shown],
    }


def control_findings(ctx: Context, cid: str, at: datetime | None) -> list[dict[str, Any]]:
    """Every finding in force at ``at`` that counts for ``cid``, failing first by
    effective status: the control's CSV/JSON downloads (what ``annexa findings`` lists)."""
    when = at or utcnow()
    rules, _ = decided(ctx.engine, ctx.index, at)
    checks = set(ctx.index.checks_for(cid))
    with ctx.engine.connect() as conn:
        found = [f for f in findings_at(conn, when, check_ids=checks) if cid in f["controls"]]
    for f in found:
        _annotate(f, rules, when)
    found.sort(key=lambda f: (_FINDING_ORDER.get(f["effective_status"], 9), f["check_id"],
                              f["resource_id"]))
    return found


def _resource_findings(
    conn: Any, ctx: Context, source: str, ev: dict[str, Any], at: datetime
) -> list[dict[str, Any]]:
    """The findings in force at ``at`` on the resource of evidence row ``ev``.

    A finding's key is ``check|scope|region|resource``: each check registered for the
    resource type is one probe of the index (``item_versions``), instead of walking every
    finding of the source. Without a known check for the type, the walk it is.
    """
    checks = ctx.checks_by_type.get(ev["resource_type"])
    if not checks:
        return [
            f for f in findings_at(conn, at, source=source)
            if (f["resource_type"], f["scope"], f["region"], f["resource_id"])
            == (ev["resource_type"], ev["scope"], ev["region"], ev["resource_id"])
        ]
    out = []
    for check in sorted(checks):
        key = f"{check}|{ev['scope']}|{ev['region']}|{ev['resource_id']}"
        versions = item_versions(conn, source, key, at, kind="findings")
        if versions and versions[-1]["status"] is not None:
            out.append(versions[-1])
    return out


def timeline(ctx: Context, cid: str, at: datetime | None) -> list[dict[str, Any]]:
    """A control's status intervals over the last :data:`TIMELINE_DAYS` before ``at``
    (a fragment of its own: the replay costs more than the rest of the page)."""
    when = at or utcnow()
    rules, _ = decided(ctx.engine, ctx.index, at)
    tl = control_timelines(
        ctx.engine, ctx.index, when - timedelta(days=TIMELINE_DAYS), when, ctx.freshness,
        exceptions=rules, controls=[cid],
    )[cid]
    return [
        {"from": a, "to": b, "status": s, "hours": round((b - a).total_seconds() / 3600, 2)}
        for a, b, s in tl.intervals()
    ]


def _pretty(body: str | None) -> list[str]:
    if body is None:
        return ["(body removed by retention; its hash is kept)"]
    return json.dumps(json.loads(body), indent=2, sort_keys=True, ensure_ascii=False).splitlines()


def resource(
    ctx: Context,
    source: str,
    key: str,
    at: datetime | None,
    a: int | None = None,
    b: int | None = None,
) -> dict[str, Any] | None:
    """An evidence item's versions by ``at``, its findings then, and a diff of two versions."""
    when = at or utcnow()
    with ctx.engine.connect() as conn:
        versions = item_versions(conn, source, key, when)
        alive = [v for v in versions if v["content_hash"] is not None]
        if not versions:
            return None
        stored = bodies(conn, {v["content_hash"] for v in alive})
        head = versions[-1]
        found = _resource_findings(conn, ctx, source, head, when)
    by_id = {v["id"]: v for v in alive}
    new = by_id.get(b) if b is not None else (alive[-1] if alive else None)
    old = by_id.get(a) if a is not None else None
    if old is None and a is None and new is not None:
        earlier = [v for v in alive if v["id"] < new["id"]]
        old = earlier[-1] if earlier else None
    diff: list[tuple[str, str]] = []
    if old is not None and new is not None:
        for line in difflib.unified_diff(
            _pretty(stored.get(old["content_hash"])),
            _pretty(stored.get(new["content_hash"])),
            fromfile=f"version {old['id']} ({old['content_hash'][:12]})",
            tofile=f"version {new['id']} ({new['content_hash'][:12]})",
            lineterm="",
            n=3,
        ):
            kind = (
                "meta" if line.startswith(("---", "+++", "@@"))
                else "add" if line.startswith("+")
                else "del" if line.startswith("-")
                else "ctx"
            )
            diff.append((kind, line))
    return {
        "source": source,
        "key": key,
        "head": head,
        "gone": head["content_hash"] is None,
        "versions": versions,
        "columns": EVIDENCE_COLUMNS,
        "current": new,
        "current_body": _pretty(stored.get(new["content_hash"])) if new else [],
        "old": old,
        "diff": diff,
        "findings": found,
    }


def runs(ctx: Context, at: datetime | None, limit: int = 100) -> dict[str, Any]:
    with ctx.engine.connect() as conn:
        rows = list_runs(conn, limit=limit, at=at)
    for r in rows:
        r["signed_by"] = r.get("key_id") or ("unsigned" if r["digest"] else "")
        r["reason"] = r["errors"][-1] if r["errors"] else ""
        r["signature"] = (
            "not sealed" if not r["digest"] else f"signed ({r['key_id']})" if r.get("signature")
            else "unsigned"
        )
    return {"rows": rows, "columns": RUN_COLUMNS}


def verify_run(ctx: Context, run_id: str) -> dict[str, Any]:
    """Recompute one run's digest from its stored rows and check its signature."""
    from core.signing import RUN_DOMAIN
    from store.integrity import digest_from_lines, run_manifest_lines
    from store.keys import stored_keys
    from store.schema import runs as runs_table

    with ctx.engine.connect() as conn:
        from sqlalchemy import select

        row = conn.execute(select(runs_table).where(runs_table.c.id == run_id)).mappings().first()
        if row is None:
            return {"ok": False, "run_id": run_id, "problems": ["no such run"]}
        run = dict(row)
        if run["digest"] is None:
            return {"ok": False, "run_id": run_id, "problems": ["not sealed yet (running?)"]}
        lines = run_manifest_lines(conn, run_id)
        keys = stored_keys(conn)
    problems = []
    recomputed = digest_from_lines(run, lines)
    if recomputed != run["digest"]:
        problems.append(f"digest mismatch: rows give {recomputed[:16]}…, stored "
                        f"{run['digest'][:16]}…")
    if run.get("signature"):
        key = keys.get(str(run["key_id"]))
        if key is None:
            problems.append(f"signed with key {run['key_id']}, not among the store's keys")
        elif not key.verify(RUN_DOMAIN, run["digest"], run["signature"]):
            problems.append(f"signature by key {run['key_id']} does not match the digest")
    return {
        "ok": not problems,
        "run_id": run_id,
        "rows": len(lines),
        "digest": run["digest"],
        "signed": bool(run.get("signature")),
        "key_id": run.get("key_id"),
        "problems": problems,
    }


# -- SoA, risks, populations, samples: the CLI commands' own row builders ------------------


def soa(ctx: Context, at: datetime | None) -> dict[str, Any]:
    """The Statement of Applicability recorded at ``at``, as ``annexa soa`` builds it."""
    from collector.commands.auditor import soa_columns, soa_rows

    rules, scope = decided(ctx.engine, ctx.index, at)
    rows = soa_rows(ctx.engine, ctx.index, at, ctx.freshness, rules, scope)
    return {"rows": rows, "columns": soa_columns(), "meta": scope.meta(),
            "contradictions": sum(1 for r in rows if r["contradiction"])}


def risks(ctx: Context, at: datetime | None, flagged: bool) -> dict[str, Any]:
    """The risk register at ``at``, as ``annexa risks`` builds it."""
    from collector.commands.isms import risk_columns, risk_rows
    from store.risks import register_at

    rules, _ = decided(ctx.engine, ctx.index, at)
    rows, policy, recorded = register_at(
        ctx.engine, ctx.index, at or utcnow(), fallback=ctx.risk_policy,
        freshness=ctx.freshness, exceptions=rules,
    )
    return {"rows": risk_rows(rows, flagged=flagged), "columns": risk_columns(full=True),
            "appetite": policy.threshold, "policy_recorded": recorded}


def population(
    ctx: Context, process: str, period: str, at: datetime | None, source: str | None,
    by: str | None,
) -> dict[str, Any]:
    """A process population, as ``annexa population`` reads it (store/populations.py)."""
    from collector.commands.population import COLUMNS
    from store.populations import parse_period
    from store.populations import population as read_population

    span = parse_period(period)  # ValueError: the page says why
    with ctx.engine.connect() as conn:
        result = read_population(conn, process, span, at=at, source=source, by=by)
    return {"rows": result.rows, "columns": COLUMNS, "warnings": result.warnings,
            "by_used": result.by, "instant": result.instant, "span": span}


def samples(ctx: Context, at: datetime | None) -> dict[str, Any]:
    """The samples recorded by ``at``, as ``annexa samples`` lists them."""
    from collector.commands.samples import SAMPLES_COLUMNS, sample_rows

    with ctx.engine.connect() as conn:
        rows = sample_rows(conn, at)
    return {"rows": rows, "columns": SAMPLES_COLUMNS}


#: The overview's trend chart: plot box (SVG user units) and days shown.
TREND_W, TREND_H, TREND_DAYS = 720, 160, 30


def trend(ctx: Context, at: datetime | None) -> dict[str, Any]:
    """Share of applicable controls passing at the end of each of the last
    :data:`TREND_DAYS` days before ``at``: the audit report's continual-improvement series
    (``store.trends.control_share_series`` over ``control_timelines``), day by day, so
    each point is what the overview showed at that instant. A fragment of its own: the
    replay of every control costs more than the rest of the overview."""
    from store.trends import control_share_series

    when = at or utcnow()
    rules, scope = decided(ctx.engine, ctx.index, at)
    timelines = control_timelines(
        ctx.engine, ctx.index, when - timedelta(days=TREND_DAYS), when, ctx.freshness,
        exceptions=rules,
    )
    applicable = {
        cid for cid in timelines
        if (a := scope.controls.get(cid)) is None or a.applicable
    }
    points = [when - timedelta(days=d) for d in range(TREND_DAYS - 1, -1, -1)]
    series = control_share_series(timelines, points, applicable)
    step = TREND_W / max(len(series) - 1, 1)
    for i, p in enumerate(series):
        p["x"] = round(i * step, 1)
        p["y"] = round(TREND_H - TREND_H * p["pct"] / 100, 1)
        p["day"] = f"{points[i]:%Y-%m-%d}"
    last = Counter(tl.status_at(when) for tl in timelines.values())
    return {
        "series": series,
        "last_counts": [(st, last[st]) for st in CONTROL_STATUSES if last[st]],
        "polyline": " ".join(f"{p['x']},{p['y']}" for p in series),
        "width": TREND_W,
        "height": TREND_H,
    }

"""Process populations for auditors, read from stored evidence as it was at an instant.

An auditor samples a population — every change implemented in the period, every
incident raised in it — and wants the attributes to sample on (key, title, created,
approved by/at, implemented at, SLA met…). Reading them from the live source would give
today's answers; the evidence store gives the answers *as recorded* at the end of the
period (or any ``--at`` instant), so the same command prints the same population next
year, even after tickets were edited, re-keyed or dropped out of the source's query.

Items are the evidence of any connector built on :mod:`connectors.process` (service =
the process kind, payloads carrying ``derived`` facts), read with
:func:`store.queries.evidence_at` at the instant; the findings in force at the same
instant (:func:`store.queries.findings_at`) say which checks each item failed.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, func, select

from core.records import utcnow
from store.queries import evidence_at, findings_at
from store.schema import evidence, sealed

KINDS = ("change", "emergency_change", "incident", "vulnerability", "access_review", "leaver")
#: Which date places an item in a period, by default, per kind.
DEFAULT_BY = {
    "change": "implemented",
    "emergency_change": "implemented",
    "access_review": "resolved",
}
BY_CHOICES = ("created", "approved", "implemented", "resolved")
_BY_PATH = {
    "created": ("ticket", "created"),
    "approved": ("derived", "approved_at"),
    "implemented": ("derived", "implemented_at"),
    "resolved": ("derived", "resolved_at"),
}


@dataclass(frozen=True)
class Period:
    start: date
    end: date  # inclusive
    label: str

    @property
    def end_instant(self) -> datetime:
        """The last instant of the period (UTC)."""
        nxt = self.end + timedelta(days=1)
        return datetime(nxt.year, nxt.month, nxt.day, tzinfo=UTC) - timedelta(microseconds=1)


def parse_period(text: str) -> Period:
    """``2026-01-01..2026-06-30``, ``2026-Q1``, ``2026-H1``, ``2026-03`` or ``2026``."""
    t = text.strip()
    try:
        if ".." in t:
            a, b = t.split("..", 1)
            start, end = date.fromisoformat(a.strip()), date.fromisoformat(b.strip())
        elif m := re.fullmatch(r"(\d{4})-[Qq]([1-4])", t):
            y, q = int(m[1]), int(m[2])
            start = date(y, 3 * q - 2, 1)
            end = _month_end(y, 3 * q)
        elif m := re.fullmatch(r"(\d{4})-[Hh]([12])", t):
            y, h = int(m[1]), int(m[2])
            start, end = date(y, 6 * h - 5, 1), _month_end(y, 6 * h)
        elif m := re.fullmatch(r"(\d{4})-(\d{2})", t):
            y, mo = int(m[1]), int(m[2])
            start, end = date(y, mo, 1), _month_end(y, mo)
        elif re.fullmatch(r"\d{4}", t):
            start, end = date(int(t), 1, 1), date(int(t), 12, 31)
        else:
            raise ValueError
    except ValueError:
        raise ValueError(
            f"{text!r} is not a period: use START..END (ISO dates), 2026-Q1, 2026-H1, "
            "2026-03 or 2026"
        ) from None
    if end < start:
        raise ValueError(f"{text!r}: the period ends before it starts")
    return Period(start, end, t)


def _month_end(year: int, month: int) -> date:
    nxt = date(year + month // 12, month % 12 + 1, 1)
    return nxt - timedelta(days=1)


def _ts(value: Any) -> datetime | None:
    if not value:
        return None
    try:
        dt = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def _who(p: Any) -> str | None:
    if not isinstance(p, Mapping) or not p.get("id"):
        return None
    return f"{p['name']} ({p['id']})" if p.get("name") else str(p["id"])


def _people(ps: Any) -> list[str]:
    return [w for p in ps or [] if (w := _who(p))]


def sla_met(kind: str, derived: Mapping[str, Any], instant: datetime) -> str | None:
    """``yes``/``no``/``pending`` at ``instant`` for the item's deadline, or None."""
    if kind == "emergency_change":
        done, due = derived.get("reviewed_at"), derived.get("review_due_at")
    else:
        done, due = derived.get("resolved_at"), derived.get("due_at")
    due_t = _ts(due)
    if due_t is None:
        return None
    done_t = _ts(done)
    if done_t is not None and done_t <= instant:
        return "yes" if done_t <= due_t else "no"
    return "no" if instant > due_t else "pending"


@dataclass
class Population:
    kind: str
    period: Period
    instant: datetime
    by: str
    rows: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def _findings_by_item(
    conn: Connection, kind: str, instant: datetime, source: str | None
) -> tuple[dict[tuple[str, str], dict[str, str]], list[str]]:
    """Check outcomes per item in force at ``instant``, and the units unreadable then."""
    out: dict[tuple[str, str], dict[str, str]] = {}
    unit_errors: dict[str, str] = {}
    for f in findings_at(conn, instant, source=source):
        if f["service"] != kind:
            continue
        if str(f["resource_type"]).endswith(".unit"):
            unit_errors.setdefault(f"{f['source']}: {f['resource_id']}", f["message"])
            continue
        out.setdefault((f["source"], f["resource_id"]), {})[f["check_id"]] = f["status"]
    warnings = [
        f"{unit} could not be read at that time, so the population may be incomplete ({msg})"
        for unit, msg in sorted(unit_errors.items())
    ]
    return out, warnings


def _item_types(conn: Connection, kind: str, source: str | None) -> list[str]:
    """Resource types of the process's items (not its population summaries)."""
    q = (
        select(evidence.c.resource_type)
        .distinct()
        .where(evidence.c.service == kind, sealed(evidence))
    )
    if source:
        q = q.where(evidence.c.source == source)
    return sorted(t for (t,) in conn.execute(q) if not t.endswith(".population"))


def _items(
    conn: Connection, kind: str, instant: datetime, source: str | None, removed: list[str]
) -> Iterator[dict[str, Any]]:
    for rtype in _item_types(conn, kind, source):
        for row in evidence_at(conn, instant, resource_type=rtype, source=source):
            payload = row.get("payload")
            if payload is None:
                removed.append(f"{row['source']}: {row['resource_id']}")
                continue
            if not isinstance(payload, dict) or payload.get("process") != kind:
                continue
            if not isinstance(payload.get("derived"), dict):
                continue
            yield {
                "source": row["source"],
                "scope": row["scope"],
                "resource_id": row["resource_id"],
                "hash": row["content_hash"],
                "collected_at": row["collected_at"],
                "run_id": row["run_id"],
                "evidence_id": row["id"],
                "payload": payload,
            }


def population(
    conn: Connection,
    kind: str,
    period: Period,
    *,
    at: datetime | None = None,
    source: str | None = None,
    by: str | None = None,
) -> Population:
    """The ``kind`` population of ``period`` as stored at ``at`` (default: the period's
    end, or now if that is still to come)."""
    if kind not in KINDS:
        raise ValueError(f"unknown process {kind!r} (one of {', '.join(KINDS)})")
    by = by or DEFAULT_BY.get(kind, "created")
    if by not in BY_CHOICES:
        raise ValueError(f"--by must be one of {', '.join(BY_CHOICES)}")
    now = utcnow()
    instant = at or min(period.end_instant, now)
    result = Population(kind, period, instant, by)
    checks, result.warnings = _findings_by_item(conn, kind, instant, source)
    section, name = _BY_PATH[by]
    keyed: list[tuple[tuple[datetime, str, str], dict[str, Any]]] = []
    removed: list[str] = []
    for item in _items(conn, kind, instant, source, removed):
        p = item["payload"]
        t, d = p.get("ticket") or {}, p["derived"]
        when = _ts((t if section == "ticket" else d).get(name))
        if when is None or not (period.start <= when.date() <= period.end):
            continue
        verdicts = checks.get((item["source"], item["resource_id"]), {})
        keyed.append(
            (
                (when, item["source"], str(t.get("key") or item["resource_id"])),
                {
                    "source": item["source"],
                    "scope": item["scope"],
                    "key": t.get("key") or item["resource_id"],
                    "title": t.get("title"),
                    "type": t.get("type"),
                    "status": t.get("status"),
                    "severity": t.get("severity"),
                    "created": t.get("created"),
                    "requested_by": _who(d.get("requested_by")),
                    "approved_by": _people(d.get("approved_by")),
                    "approved_at": d.get("approved_at"),
                    "implemented_by": _people(d.get("implemented_by")),
                    "implemented_at": d.get("implemented_at"),
                    "reviewed_at": d.get("reviewed_at"),
                    "acknowledged_at": d.get("acknowledged_at"),
                    "resolved_at": d.get("resolved_at"),
                    "due_at": d.get("review_due_at")
                    if kind == "emergency_change"
                    else d.get("due_at"),
                    "sla_met": sla_met(kind, d, instant),
                    "checks_failed": sorted(c for c, s in verdicts.items() if s == "fail"),
                    "checks_error": sorted(c for c, s in verdicts.items() if s == "error"),
                    "checks_passed": sorted(c for c, s in verdicts.items() if s == "pass"),
                    "url": t.get("url"),
                    "evidence_hash": item["hash"],
                    "evidence_id": item["evidence_id"],
                    "run_id": item["run_id"],
                    "collected_at": item["collected_at"],
                    "as_of": instant,
                },
            )
        )
    keyed.sort(key=lambda kr: kr[0])
    result.rows = [row for _, row in keyed]
    if removed:
        result.warnings.append(
            f"{len(removed)} item(s) had their evidence body removed by retention and are "
            f"not listed: {', '.join(removed[:5])}"
        )
    if not result.rows:
        first = _first_collected(conn, kind, source)
        if first is None:
            result.warnings.append(f"no {kind} evidence has been collected yet")
        elif first > instant:
            result.warnings.append(
                f"no {kind} evidence had been collected by "
                f"{instant.isoformat(timespec='seconds')}; the first was collected "
                f"{first.isoformat(timespec='seconds')}: use --at to read the population as "
                "recorded then"
            )
    return result


def _first_collected(conn: Connection, kind: str, source: str | None) -> datetime | None:
    q = select(func.min(evidence.c.collected_at)).where(
        evidence.c.service == kind, sealed(evidence)
    )
    if source:
        q = q.where(evidence.c.source == source)
    first = conn.execute(q).scalar_one_or_none()
    if isinstance(first, datetime) and first.tzinfo is None:
        first = first.replace(tzinfo=UTC)
    return first

"""Read-side queries, every one answerable at any instant (``at``; default: now).

The latest version of an item at instant T is its row with the greatest
``observed_at``/``collected_at`` not after T; a tombstone there means the item was gone.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, func, select

from connectors.records import utcnow
from store.schema import blobs, evidence, findings, run_units, runs

CONTROL_STATUSES = ("fail", "error", "stale", "pass", "not_applicable", "no_evidence", "manual")
MAX_LISTED = 50


def _latest(table: Any, time_col: Any, at: datetime, *where: Any) -> Any:
    rn = (
        func.row_number()
        .over(
            partition_by=(table.c.source, table.c.key),
            order_by=(time_col.desc(), table.c.id.desc()),
        )
        .label("rn")
    )
    inner = select(table, rn).where(time_col <= at, *where).subquery()
    return inner


def findings_at(
    conn: Connection,
    at: datetime | None = None,
    *,
    check_id: str | None = None,
    source: str | None = None,
    status: str | None = None,
) -> Iterator[dict[str, Any]]:
    """Current findings at ``at`` (tombstoned ones excluded), streamed."""
    at = at or utcnow()
    where = []
    if check_id:
        where.append(findings.c.check_id == check_id)
    if source:
        where.append(findings.c.source == source)
    inner = _latest(findings, findings.c.observed_at, at, *where)
    q = select(inner).where(inner.c.rn == 1, inner.c.status.is_not(None))
    if status:
        q = q.where(inner.c.status == status)
    q = q.order_by(inner.c.check_id, inner.c.source, inner.c.key)
    for row in conn.execute(q).mappings():
        out = dict(row)
        out.pop("rn", None)
        out["controls"] = json.loads(out["controls"])
        yield out


def evidence_at(
    conn: Connection,
    at: datetime | None = None,
    *,
    resource: str | None = None,
    resource_type: str | None = None,
    content_hash: str | None = None,
    source: str | None = None,
    with_payload: bool = True,
) -> Iterator[dict[str, Any]]:
    """Evidence current at ``at``; ``resource`` matches a substring of the resource id."""
    at = at or utcnow()
    where = []
    if resource:
        where.append(evidence.c.resource_id.contains(resource, autoescape=True))
    if resource_type:
        where.append(evidence.c.resource_type == resource_type)
    if source:
        where.append(evidence.c.source == source)
    if content_hash:
        where.append(evidence.c.content_hash == content_hash)
    inner = _latest(evidence, evidence.c.collected_at, at, *where)
    cols = [inner]
    q = select(*cols, blobs.c.body) if with_payload else select(inner)
    if with_payload:
        q = q.select_from(inner.outerjoin(blobs, blobs.c.hash == inner.c.content_hash))
    q = q.where(inner.c.rn == 1, inner.c.content_hash.is_not(None)).order_by(
        inner.c.source, inner.c.key
    )
    for row in conn.execute(q).mappings():
        out = dict(row)
        out.pop("rn", None)
        if with_payload:
            body = out.pop("body")
            out["payload"] = json.loads(body) if body is not None else None
        yield out


def last_ok_units(conn: Connection, at: datetime) -> dict[tuple[str, str, str, str], datetime]:
    """(source, scope, region, service) → finish time of the latest clean read at ``at``."""
    q = (
        select(
            runs.c.source,
            run_units.c.scope,
            run_units.c.region,
            run_units.c.service,
            func.max(runs.c.finished_at),
        )
        .select_from(run_units.join(runs, runs.c.id == run_units.c.run_id))
        .where(run_units.c.ok.is_(True), runs.c.finished_at.is_not(None), runs.c.finished_at <= at)
        .group_by(runs.c.source, run_units.c.scope, run_units.c.region, run_units.c.service)
    )
    found: dict[tuple[str, str, str, str], datetime] = {}
    for source, scope, region, service, finished in conn.execute(q):
        found[(source, scope, region, service)] = finished
    return found


def _confirmed_at(
    units: Mapping[tuple[str, str, str, str], datetime], f: Mapping[str, Any]
) -> datetime | None:
    times = [
        t
        for t in (
            units.get((f["source"], f["scope"], f["region"], f["service"])),
            units.get((f["source"], f["scope"], "global", f["service"])),
        )
        if t is not None
    ]
    return max(times) if times else None


@dataclass
class ControlStatus:
    id: str
    title: str
    theme: str
    status: str
    checks: tuple[str, ...]
    manual: bool
    expected_evidence: str | None = None
    counts: dict[str, int] = field(default_factory=dict)
    failing: list[str] = field(default_factory=list)
    erroring: list[str] = field(default_factory=list)
    last_confirmed: datetime | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "control": self.id,
            "title": self.title,
            "theme": self.theme,
            "status": self.status,
            "checks": list(self.checks),
            "manual": self.manual,
            "expected_evidence": self.expected_evidence,
            "counts": self.counts,
            "failing_resources": self.failing,
            "error_scopes": self.erroring,
            "last_confirmed": self.last_confirmed.isoformat() if self.last_confirmed else None,
        }


@dataclass
class _Acc:
    counts: dict[str, int] = field(default_factory=dict)
    failing: list[str] = field(default_factory=list)
    erroring: list[str] = field(default_factory=list)
    oldest_pass_confirmation: datetime | None = None
    unconfirmed_pass: bool = False
    last_confirmed: datetime | None = None


def _resource_label(f: Mapping[str, Any]) -> str:
    return f"{f['resource_id']} ({f['check_id']})"


def control_statuses(
    engine: Engine,
    index: Any,
    at: datetime | None = None,
    freshness: timedelta = timedelta(days=7),
) -> list[ControlStatus]:
    """Every catalog control's status at ``at``.

    Precedence: ``fail`` > ``error`` > ``stale`` > ``pass`` > ``not_applicable``.
    A control with no current finding is ``no_evidence`` — or ``manual`` when no
    automated check is mapped to it and the mapping marks it manual. Nothing passes by
    absence, and a pass whose unit has not been read cleanly within ``freshness`` is
    ``stale``.
    """
    at = at or utcnow()
    acc: dict[str, _Acc] = {}
    with engine.connect() as conn:
        units = last_ok_units(conn, at)
        for f in findings_at(conn, at):
            confirmed = _confirmed_at(units, f)
            for cid in f["controls"]:
                a = acc.setdefault(cid, _Acc())
                a.counts[f["status"]] = a.counts.get(f["status"], 0) + 1
                if f["status"] == "fail" and len(a.failing) < MAX_LISTED:
                    a.failing.append(_resource_label(f))
                elif f["status"] == "error" and len(a.erroring) < MAX_LISTED:
                    a.erroring.append(_resource_label(f))
                elif f["status"] == "pass":
                    if confirmed is None:
                        a.unconfirmed_pass = True
                    elif (
                        a.oldest_pass_confirmation is None or confirmed < a.oldest_pass_confirmation
                    ):
                        a.oldest_pass_confirmation = confirmed
                if confirmed and (a.last_confirmed is None or confirmed > a.last_confirmed):
                    a.last_confirmed = confirmed
    out: list[ControlStatus] = []
    for cid, control in index.catalog.items():
        checks = index.checks_for(cid)
        manual = index.is_manual(cid)
        expected = index.manual[cid].expected_evidence if manual else None
        a = acc.get(cid)
        if a is None:
            status = "manual" if manual and not checks else "no_evidence"
            a = _Acc()
        elif a.counts.get("fail"):
            status = "fail"
        elif a.counts.get("error"):
            status = "error"
        elif a.counts.get("pass"):
            stale = a.unconfirmed_pass or (
                a.oldest_pass_confirmation is not None
                and a.oldest_pass_confirmation < at - freshness
            )
            status = "stale" if stale else "pass"
        else:
            status = "not_applicable"
        out.append(
            ControlStatus(
                id=cid,
                title=control.title,
                theme=control.theme,
                status=status,
                checks=tuple(checks),
                manual=manual,
                expected_evidence=expected,
                counts=dict(sorted(a.counts.items())),
                failing=a.failing,
                erroring=a.erroring,
                last_confirmed=a.last_confirmed,
            )
        )
    return out


def list_runs(
    conn: Connection, *, source: str | None = None, limit: int = 50
) -> list[dict[str, Any]]:
    q = select(runs).order_by(runs.c.started_at.desc()).limit(limit)
    if source:
        q = q.where(runs.c.source == source)
    rows = []
    for row in conn.execute(q).mappings():
        r = dict(row)
        r["counts"] = json.loads(r["counts"]) if r["counts"] else {}
        r["errors"] = json.loads(r["errors"]) if r["errors"] else []
        rows.append(r)
    return rows

"""A control's status over a period: the change log replayed in time order.

Every event (finding versions, clean unit reads, manual evidence, exception bounds,
freshness deadlines) re-evaluates the touched controls with
:func:`store.status.combine_status`, so the status a timeline gives for instant T is the
one :func:`store.status.control_statuses` gives at T.
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from sqlite3 import sqlite_version_info
from typing import Any

from sqlalchemy import (
    BigInteger,
    Engine,
    Integer,
    Text,
    any_,
    bindparam,
    cast,
    column,
    select,
    text,
    type_coerce,
)
from sqlalchemy.dialects.postgresql import ARRAY

from store import status_changes
from store.current import touching
from store.exceptions import ExceptionRule, exception_for
from store.manual_records import ManualRecord
from store.queries import findings_at, last_ok_units, manual_history, unit_confirmation
from store.schema import ControlsTexts, UTCDateTime, evidence, findings, run_units, runs
from store.status import STATUS_RANK, combine_status, within_review


@dataclass
class Timeline:
    """A control's status over ``[start, end]``: the status at start, then every change."""

    control: str
    start: datetime
    end: datetime
    changes: list[tuple[datetime, str]]

    def status_at(self, at: datetime) -> str:
        current = self.changes[0][1]
        for t, s in self.changes:
            if t <= at:
                current = s
            else:
                break
        return current

    def intervals(self) -> list[tuple[datetime, datetime, str]]:
        out = []
        for i, (t, s) in enumerate(self.changes):
            until = self.changes[i + 1][0] if i + 1 < len(self.changes) else self.end
            if until > t or len(self.changes) == 1:
                out.append((t, until, s))
        return out

    def durations(self) -> dict[str, timedelta]:
        d: dict[str, timedelta] = {}
        for a, b, s in self.intervals():
            d[s] = d.get(s, timedelta(0)) + (b - a)
        return d

    @property
    def final(self) -> str:
        return self.changes[-1][1]

    @property
    def worst(self) -> str:
        return min((s for _, _, s in self.intervals()), key=lambda s: STATUS_RANK[s])

    def as_dict(self) -> dict[str, Any]:
        total = (self.end - self.start).total_seconds() or 1.0
        durations = self.durations()
        return {
            "control": self.control,
            "status": self.final,
            "worst": self.worst,
            "changes": len(self.changes) - 1,
            "seconds": {s: round(v.total_seconds(), 3) for s, v in sorted(durations.items())},
            "fail_periods": [
                {
                    "from": a.isoformat(),
                    "to": b.isoformat(),
                    "hours": round((b - a).total_seconds() / 3600, 2),
                }
                for a, b, s in self.intervals()
                if s == "fail"
            ],
            "compliant_pct": round(
                100.0
                * sum(
                    v.total_seconds()
                    for s, v in durations.items()
                    if s in ("pass", "excepted", "not_applicable")
                )
                / total,
                2,
            ),
            "history": [{"at": t.isoformat(), "status": s} for t, s in self.changes],
        }


_EPS = timedelta(microseconds=1)

Unit = tuple[str, str, str, str]
Controls = tuple[str, ...]

# The kinds of change the sweep applies at an instant.
_COUNT, _AGE, _READ, _MANUAL, _BOUND = range(5)


def _global(u: Unit) -> Unit:
    return (u[0], u[1], "global", u[3])


class _Sweep:
    """Control statuses while the period's changes are applied in time order.

    A finding version counts for the controls stored with it while it is in force,
    ``[a, b)``: from its observation until its key's next version. A passing one is
    *old* once its own observation (capped by its evidence's as-of) is more than
    ``freshness`` behind. A control is ``stale`` while one of its passing findings is
    old and the latest clean read of that finding's unit is too: as in
    :func:`store.status.control_statuses`, a pass is confirmed by the later of both.
    """

    def __init__(self, index: Any, freshness: timedelta, controls: Collection[str]) -> None:
        self.index = index
        self.freshness = freshness
        self.controls = set(controls)
        self.counts: dict[str, Counter[str]] = {c: Counter() for c in self.controls}
        self.old: dict[str, Counter[Unit]] = {c: Counter() for c in self.controls}
        self.old_by_unit: dict[Unit, Counter[str]] = {}
        self.units: dict[Unit, datetime] = {}
        self.manual: dict[str, ManualRecord] = {}
        self.manual_by_control: dict[str, set[str]] = {}
        self.deadlines: list[tuple[datetime, Unit]] = []
        self._scheduled: dict[Unit, datetime] = {}

    def count(self, controls: Controls, status: str, n: int) -> set[str]:
        touched = self.controls.intersection(controls)
        for cid in touched:
            self.counts[cid][status] += n
        return touched

    def age(self, unit: Unit, controls: Controls, n: int, t: datetime) -> set[str]:
        touched = self.controls.intersection(controls)
        if not touched:
            return touched
        by_unit = self.old_by_unit.setdefault(unit, Counter())
        for cid in touched:
            self.old[cid][unit] += n
            by_unit[cid] += n
        self.schedule(unit, t)
        return touched

    def confirmation(self, u: Unit) -> datetime | None:
        times = [x for x in (self.units.get(u), self.units.get(_global(u))) if x is not None]
        return max(times) if times else None

    def schedule(self, u: Unit, t: datetime) -> None:
        """Re-evaluate ``u``'s controls when its confirmation falls out of the window."""
        c = self.confirmation(u)
        if c is None:
            return
        due = c + self.freshness + _EPS
        if due > t and self._scheduled.get(u) != due:
            self._scheduled[u] = due
            heapq.heappush(self.deadlines, (due, u))

    def users(self, u: Unit) -> set[str]:
        return {c for c, n in self.old_by_unit.get(u, {}).items() if n > 0}

    def read(self, unit: Unit, confirmed: datetime, t: datetime) -> set[str]:
        """The latest clean read of ``unit`` confirms as of ``confirmed`` (as
        ``last_ok_units``: the latest read, even if it confirms less than an earlier one)."""
        self.units[unit] = confirmed
        if unit[2] == "global":
            affected = [u for u in self.old_by_unit
                        if (u[0], u[1], u[3]) == (unit[0], unit[1], unit[3])]
        else:
            affected = [unit]
        touched: set[str] = set()
        for u in affected:
            touched |= self.users(u)
            self.schedule(u, t)
        return touched

    def apply_manual(self, key: str, rec: ManualRecord | None) -> set[str]:
        touched = set()
        old = self.manual.pop(key, None)
        if old is not None:
            self.manual_by_control.get(old.control, set()).discard(key)
            touched.add(old.control)
        if rec is not None:
            self.manual[key] = rec
            self.manual_by_control.setdefault(rec.control, set()).add(key)
            touched.add(rec.control)
        return touched & self.controls

    def evaluate(self, cid: str, t: datetime) -> str:
        stale = False
        for u, n in self.old[cid].items():
            if n > 0:
                c = self.confirmation(u)
                if c is None or c < t - self.freshness:
                    stale = True
                    break
        recs = [self.manual[k] for k in self.manual_by_control.get(cid, ())]
        return combine_status(
            self.counts[cid],
            stale_pass=stale,
            manual_valid=sum(1 for r in recs if r.valid(t)),
            manual_expired=sum(1 for r in recs if r.expired(t)),
            manual_control=self.index.is_manual(cid),
            has_checks=bool(self.index.checks_for(cid)),
            automated_sufficient=self.index.documented(cid).automated_sufficient,
        )


class _Changes:
    """What changes at each instant of the period, keyed by instant; anything at or
    before its start is part of the starting state."""

    def __init__(self, start: datetime, end: datetime, freshness: timedelta,
                 rules: list[ExceptionRule]) -> None:
        self.start, self.end, self.freshness, self.rules = start, end, freshness, rules
        self.rule_checks = {r.check for r in rules}
        self.at: dict[datetime, list[tuple[Any, ...]]] = {}

    def add(self, t: datetime, *op: Any) -> None:
        if t <= self.end:
            self.at.setdefault(max(t, self.start), []).append(op)

    def version(self, f: Mapping[str, Any], a: datetime, b: datetime | None,
                controls: Controls, own: datetime) -> None:
        """A finding version in force over ``[a, b)`` (``b`` None: past the end), its
        own observation capped by its evidence's as-of at ``own``."""
        status = f["status"]
        if status is None:
            return
        if status == "fail" and f["check_id"] in self.rule_checks:
            self._excepted_pieces(f, a, b, controls)
        else:
            self.add(a, _COUNT, controls, status, 1)
            if b is not None:
                self.add(b, _COUNT, controls, status, -1)
        if status == "pass":
            self.old_pass(f, a, b, own, controls)

    def old_pass(self, f: Mapping[str, Any], a: datetime, b: datetime | None,
                 own: datetime, controls: Controls) -> None:
        """A passing version is old from when its own observation leaves the window."""
        since = max(a, own + self.freshness + _EPS)
        if since <= self.end and (b is None or since < b):
            unit = (f["source"], f["scope"], f["region"], f["service"])
            self.add(since, _AGE, unit, controls, 1)
            if b is not None:
                self.add(b, _AGE, unit, controls, -1)

    def _excepted_pieces(self, f: Mapping[str, Any], a: datetime, b: datetime | None,
                         controls: Controls) -> None:
        # A failure counts as excepted while a matching exception is active: its
        # effective status changes only at those exceptions' bounds.
        bounds = sorted({
            x for r in self.rules if r.matches(f)
            for x in (r.effective_from, r.effective_until)
            if x is not None and a < x and (b is None or x < b) and x <= self.end
        })
        pieces: list[tuple[datetime, str]] = []
        for t in (a, *bounds):
            s = "excepted" if exception_for(self.rules, f, t) else "fail"
            if not pieces or pieces[-1][1] != s:
                pieces.append((t, s))
        for i, (t, s) in enumerate(pieces):
            self.add(t, _COUNT, controls, s, 1)
            until = pieces[i + 1][0] if i + 1 < len(pieces) else b
            if until is not None:
                self.add(until, _COUNT, controls, s, -1)


def _as_of_by_id(conn: Any, ids: list[int]) -> dict[int, datetime]:

    """The as-of of the inventory records the findings ``ids`` were judged on (only those
    judged on one: none for a store of direct reads) — probed by id, so the cost follows
    the findings in force, not the history before them."""
    out: dict[int, datetime] = {}
    pg = conn.dialect.name == "postgresql"
    step = (len(ids) or 1) if pg else 5000
    for i in range(0, len(ids), step):
        chunk = ids[i:i + step]
        # PostgreSQL: one array parameter; parsing and planning an IN list of thousands
        # of parameters cost it more than the probes themselves.
        among = (
            findings.c.id == any_(bindparam("ids", chunk, type_=ARRAY(BigInteger)))
            if pg else findings.c.id.in_(chunk)
        )
        q = (
            select(findings.c.id, evidence.c.source_updated_at)
            .select_from(findings.join(evidence, evidence.c.id == findings.c.evidence_id))
            .where(among, evidence.c.source_updated_at.is_not(None))
        )
        out.update(dict(conn.execute(q).all()))
    return out


#: The finding columns the replay reads (besides ``controls``): its unit, what an
#: exception matches, and its observation; not the message, hashes or mapping digest.
_REPLAY_COLUMNS = (
    "source", "key", "check_id", "scope", "region", "service", "resource_id", "status",
    "observed_at",
)


class _ControlsCache:
    """A row's ``controls`` text replaced by its parsed tuple, each distinct text parsed
    once (``store.schema.ControlsTexts``)."""

    def __init__(self) -> None:
        self._parsed = ControlsTexts(tuple)

    def row(self, f: dict[str, Any]) -> dict[str, Any]:
        f["controls"] = self._parsed[f["controls"]]
        return f


def _controls_text(conn: Any) -> Any:
    """``findings.controls`` as its stored text: jsonb on PostgreSQL (migration 0005) is
    cast; SQLite's text skips the signed-JSON type's row-by-row re-serialisation."""
    if conn.dialect.name == "postgresql":
        return cast(findings.c.controls, Text)
    return type_coerce(findings.c.controls, Text)


def _starting_findings(
    conn: Any, start: datetime, checks: Collection[str] | None, controls: Collection[str]
) -> list[dict[str, Any]]:
    """The findings in force at ``start`` with the columns the replay reads.

    From the materialised findings in force (or a snapshot and the history since it:
    ``store.snapshots.in_force``) when they answer ``start``: their ``seen_at`` is the
    observation capped by the evidence's as-of, which the replay derives otherwise, so
    neither the ``findings`` rows nor the evidence are read. Else the history walk and
    the as-of probed by id.
    """
    from store.snapshots import in_force

    rel = in_force(conn, start)
    if rel is None:
        rows = list(findings_at(conn, start))
        as_of_by_id = _as_of_by_id(conn, [f["id"] for f in rows])
        for f in rows:
            f["source_updated_at"] = as_of_by_id.get(f["id"])
        return rows
    cur = rel.c
    q = select(
        *(cur[c] for c in _REPLAY_COLUMNS if c != "observed_at"),
        cur.seen_at.label("observed_at"),
        cur.controls,
    ).where(cur.status.is_not(None))
    if checks is not None:  # a superset: the caller keeps the exact condition
        q = q.where(touching(cur.check_id, cur.controls, checks, controls))
    parse = _ControlsCache()
    return [
        parse.row({**row, "source_updated_at": None}) for row in conn.execute(q).mappings()
    ]


def _window_sql(conn: Any, checks: Collection[str] | None, rule_checks: Collection[str]) -> Any:
    """SQL: the period's finding versions, aggregated where the sweep needs no row.

    Each version is in force until its key's next one (``LEAD``). Rows come back as
    ``kind``: 0 each key's first version in the period (where its version in force at
    the start ends); 1 and 2 versions starting and ending at ``t`` counted per (status,
    stored controls); 3 passing versions in force longer than the freshness window
    (they can make a control stale); 4 failures an exception may cover, one by one.
    """
    pg = conn.dialect.name == "postgresql"
    ctl = "f.controls::text" if pg else "f.controls"
    ts = "NULL::timestamptz" if pg else "NULL"
    txt = "NULL::text" if pg else "NULL"
    among = " AND f.check_id IN :checks" if checks is not None else ""
    # Exception-covered failures change status at the exceptions' bounds: row by row.
    ruled = "(w.status = 'fail' AND w.check_id IN :rule_checks)" if rule_checks else "(1 = 0)"
    own = ("CASE WHEN e.source_updated_at IS NOT NULL AND e.source_updated_at < w.a"
           " THEN e.source_updated_at ELSE w.a END")
    # A superset (the sweep keeps the exact condition): in force for longer than the
    # window after its own observation.
    lasting = (f"(w.b - {own}) > :fresh" if pg
               else f"julianday(w.b) - julianday({own}) > :fresh_days")
    materialised = "MATERIALIZED " if pg or sqlite_version_info >= (3, 35) else ""
    sql = f"""
WITH w AS {materialised}(
  SELECT f.source, f.key, f.status, f.check_id, f.scope, f.region, f.service,
         f.resource_id, f.evidence_id, {ctl} AS controls, f.observed_at AS a,
         LEAD(f.observed_at) OVER k AS b, ROW_NUMBER() OVER k AS nth
  FROM findings f JOIN runs r ON r.id = f.run_id AND r.digest IS NOT NULL
  WHERE f.observed_at > :start AND f.observed_at <= :end{among}
  WINDOW k AS (PARTITION BY f.source, f.key ORDER BY f.observed_at, f.id)
)
SELECT 0 AS kind, a AS at, {ts} AS b, {ts} AS own, source, key, {txt} AS status,
       {txt} AS controls, {txt} AS check_id, {txt} AS scope, {txt} AS region,
       {txt} AS service, {txt} AS resource_id, 1 AS n
  FROM w WHERE nth = 1
UNION ALL
SELECT 1, a, {ts}, {ts}, {txt}, {txt}, status, controls, {txt}, {txt}, {txt}, {txt},
       {txt}, count(*)
  FROM w WHERE status IS NOT NULL AND NOT {ruled} GROUP BY a, status, controls
UNION ALL
SELECT 2, b, {ts}, {ts}, {txt}, {txt}, status, controls, {txt}, {txt}, {txt}, {txt},
       {txt}, -count(*)
  FROM w WHERE b IS NOT NULL AND status IS NOT NULL AND NOT {ruled}
  GROUP BY b, status, controls
UNION ALL
SELECT 3, w.a, w.b, {own}, w.source, {txt}, w.status, w.controls, w.check_id, w.scope,
       w.region, w.service, {txt}, 1
  FROM w LEFT JOIN evidence e ON e.id = w.evidence_id
  WHERE w.status = 'pass' AND (w.b IS NULL AND {own} < :old_by_end OR {lasting})
UNION ALL
SELECT 4, a, b, {ts}, source, key, status, controls, check_id, scope, region, service,
       resource_id, 1
  FROM w WHERE {ruled}
"""
    q = text(sql).columns(
        column("kind", Integer), column("at", UTCDateTime()), column("b", UTCDateTime()),
        column("own", UTCDateTime()), column("source", Text), column("key", Text),
        column("status", Text), column("controls", Text), column("check_id", Text),
        column("scope", Text), column("region", Text), column("service", Text),
        column("resource_id", Text), column("n", Integer),
    )
    params = [bindparam("start", type_=UTCDateTime()), bindparam("end", type_=UTCDateTime()),
              bindparam("old_by_end", type_=UTCDateTime())]
    if checks is not None:
        params.append(bindparam("checks", expanding=True))
    if rule_checks:
        params.append(bindparam("rule_checks", expanding=True))
    return q.bindparams(*params)


def _remapped_checks(conn: Any, start: datetime, end: datetime, checks: Collection[str],
                     controls: Collection[str]) -> set[str]:
    """Checks outside ``checks`` whose versions in the period were stored mapped to one
    of ``controls`` (a mapping since changed): all their keys' versions are read, so
    that each version ends where its key's next one starts."""
    q = (
        select(findings.c.check_id).distinct()
        .where(findings.c.observed_at > start, findings.c.observed_at <= end,
               findings.c.check_id.not_in(sorted(checks) or [""]),
               touching(findings.c.check_id, _controls_text(conn), (), controls))
    )
    return set(conn.execute(q).scalars())


def control_timelines(
    engine: Engine,
    index: Any,
    start: datetime,
    end: datetime,
    freshness: timedelta = timedelta(days=7),
    *,
    exceptions: Iterable[ExceptionRule] = (),
    controls: Collection[str] | None = None,
) -> dict[str, Timeline]:
    """Each control's status history over ``[start, end]``.

    Inputs, as :func:`store.status.control_statuses` reads them at any instant: the
    findings in force (each for its stored controls; failures covered by an active
    exception count as excepted), the clean unit reads and the freshness window, and
    the manual evidence. They are applied in time order, each instant re-evaluating the
    controls it touches with :func:`combine_status`, so the status a timeline gives for
    instant T is the one ``control_statuses(at=T)`` gives.

    The findings come as counts per instant (:mod:`store.status_changes`) when those
    account for every sealed run. Counts alone decide a control unless it may be stale
    (a pass in a unit not read within the window, when nothing fails) or an exception
    names one of its failing checks; those controls, and every control when the counts
    cannot be used, are read from the finding versions (:func:`_from_versions`).
    """
    if end < start:
        raise ValueError("the period ends before it starts")
    rules = list(exceptions)
    selected = list(controls) if controls is not None else list(index.catalog)
    with engine.connect() as conn:
        known = _reads_and_documents(conn, index, start, end)
        if status_changes.trusted(conn):
            history, unsure = _from_counts(conn, index, start, end, freshness, rules,
                                           selected, known)
            if unsure:
                history.update(_from_versions(conn, index, start, end, freshness, rules,
                                              sorted(unsure), known, narrow=True))
        else:
            history = _from_versions(conn, index, start, end, freshness, rules, selected,
                                     known, narrow=controls is not None)
    return {
        cid: Timeline(control=cid, start=start, end=end, changes=history[cid])
        for cid in selected
    }


History = dict[str, list[tuple[datetime, str]]]
#: What both paths apply besides the findings: the unit reads confirmed by ``start``,
#: and the period's reads and documents as :class:`_Changes` operations.
Known = tuple[dict[Unit, datetime], list[tuple[Any, ...]]]


def _from_counts(conn: Any, index: Any, start: datetime, end: datetime, freshness: timedelta,
                 rules: list[ExceptionRule], selected: list[str], known: Known
                 ) -> tuple[History, set[str]]:
    """The timelines from the counts of findings per status; and the controls the counts
    cannot decide. Every pass counts as possibly old here, so a control that is never
    ``stale`` by this sweep is never stale (its unit is read within the window whenever
    nothing else decides it); one that is, is returned as undecided."""
    sweep = _Sweep(index, freshness, selected)
    changes = _Changes(start, end, freshness, rules)
    parse = ControlsTexts(tuple)
    unsure: set[str] = set()

    def add(t: datetime, source: str, check: str, scope: str, region: str, service: str,
            text_: str, status: str, n: int) -> None:
        controls = parse[text_]
        if status == "fail" and check in changes.rule_checks:
            unsure.update(sweep.controls.intersection(controls))
        changes.add(t, _COUNT, controls, status, n)
        if status == "pass":
            changes.add(t, _AGE, (source, scope, region, service), controls, n)

    for row in status_changes.totals(conn, start):
        add(start, *row)
    for row in status_changes.between(conn, start, end):
        add(*row)
    _apply_known(sweep, changes, known)
    history = _sweep(sweep, changes, selected, start, end)
    unsure |= {cid for cid in selected if any(s == "stale" for _, s in history[cid])}
    return history, unsure


def _apply_known(sweep: _Sweep, changes: _Changes, known: Known) -> None:
    units, ops = known
    sweep.units = dict(units)
    for op in ops:
        changes.add(*op)


def _reads_and_documents(conn: Any, index: Any, start: datetime, end: datetime) -> Known:
    """The clean unit reads by ``start`` and in the period, and every manual evidence and
    approved policy version with its validity bounds (read once for both paths)."""
    ops: list[tuple[Any, ...]] = []
    uq = (
        select(
            runs.c.finished_at, runs.c.source, run_units.c.scope, run_units.c.region,
            run_units.c.service, unit_confirmation(runs.c.finished_at,
                                                   run_units.c.source_as_of),
        )
        .select_from(run_units.join(runs, runs.c.id == run_units.c.run_id))
        .where(
            run_units.c.ok.is_(True),
            runs.c.digest.is_not(None),
            runs.c.finished_at > start,
            runs.c.finished_at <= end,
        )
    )
    reads: dict[tuple[datetime, Unit], datetime] = {}
    for fin, src, scope, region, service, confirmed in conn.execute(uq):
        k = (fin, (src, scope, region, service))
        # Reads finishing together: the one confirming least (as last_ok_units).
        reads[k] = confirmed if k not in reads else min(reads[k], confirmed)
    for (fin, unit), confirmed in reads.items():
        ops.append((fin, _READ, unit, confirmed))
    from store.policy_documents import policy_history

    for t, key, rec in sorted([*manual_history(conn), *policy_history(conn)],
                              key=lambda e: e[0]):
        rec = within_review(rec, index)
        ops.append((t, _MANUAL, key, rec))
        if rec is not None:
            for bound in (rec.valid_from, rec.valid_until):
                if start < bound:
                    ops.append((bound, _BOUND, rec.control))
    return dict(last_ok_units(conn, start)), ops


def _from_versions(conn: Any, index: Any, start: datetime, end: datetime,
                   freshness: timedelta, rules: list[ExceptionRule], selected: list[str],
                   known: Known, *, narrow: bool) -> History:
    """The timelines from the finding versions: those in force at ``start`` (the
    materialised table or a snapshot) and the period's, aggregated in SQL
    (:func:`_window_sql`) except where a row is needed. ``narrow``: read only the
    versions that can touch ``selected``."""
    sweep = _Sweep(index, freshness, selected)
    changes = _Changes(start, end, freshness, rules)
    check_filter: set[str] | None = None
    if narrow:
        check_filter = {c for cid in selected for c in index.checks_for(cid)}
    parse = ControlsTexts(tuple)
    first = [
        f for f in _starting_findings(conn, start, check_filter, selected)
        if check_filter is None or f["check_id"] in check_filter
        or not sweep.controls.isdisjoint(f["controls"])
    ]
    checks: set[str] | None = None
    if check_filter is not None:
        checks = check_filter | {f["check_id"] for f in first}
        checks |= _remapped_checks(conn, start, end, checks, selected)
    params: dict[str, Any] = {
        "start": start, "end": end, "old_by_end": end - freshness,
        "fresh": freshness,
        "fresh_days": freshness.total_seconds() / 86400 - 1e-6,
    }
    if checks is not None:
        params["checks"] = sorted(checks) or [""]
    if changes.rule_checks:
        params["rule_checks"] = sorted(changes.rule_checks)
    ends: dict[tuple[str, str], datetime] = {}
    for row in conn.execute(_window_sql(conn, checks, changes.rule_checks), params):
        kind = row.kind
        if kind == 0:
            ends[(row.source, row.key)] = row.at
        elif kind in (1, 2):
            changes.add(row.at, _COUNT, parse[row.controls], row.status, row.n)
        elif kind == 3:
            changes.old_pass(row._mapping, row.at, row.b, row.own, parse[row.controls])
        else:
            changes.version(row._mapping, row.at, row.b, parse[row.controls], row.at)
    for f in first:
        seen, as_of = f["observed_at"], f.get("source_updated_at")
        own = as_of if as_of is not None and as_of < seen else seen
        changes.version(f, start, ends.get((f["source"], f["key"])), f["controls"], own)
    _apply_known(sweep, changes, known)
    return _sweep(sweep, changes, selected, start, end)


def _sweep(sweep: _Sweep, changes: _Changes, selected: list[str], start: datetime,
           end: datetime) -> History:
    """Apply the changes in time order (and the freshness deadlines they set), keeping
    each control's status after every instant that touches it."""

    def apply(t: datetime) -> set[str]:
        touched: set[str] = set()
        for op in changes.at.pop(t, ()):
            kind = op[0]
            if kind == _COUNT:
                touched |= sweep.count(op[1], op[2], op[3])
            elif kind == _AGE:
                touched |= sweep.age(op[1], op[2], op[3], t)
            elif kind == _READ:
                touched |= sweep.read(op[1], op[2], t)
            elif kind == _MANUAL:
                touched |= sweep.apply_manual(op[1], op[2])
            elif op[1] in sweep.controls:
                touched.add(op[1])
        return touched

    apply(start)
    for u in list(sweep.old_by_unit):
        sweep.schedule(u, start)
    status = {cid: sweep.evaluate(cid, start) for cid in selected}
    history: History = {cid: [(start, s)] for cid, s in status.items()}
    times = sorted(changes.at)
    i = 0
    while True:
        nxt = times[i] if i < len(times) else None
        due = sweep.deadlines[0][0] if sweep.deadlines else None
        if due is not None and due > end:
            due = None
        if nxt is None and due is None:
            break
        t = min(x for x in (nxt, due) if x is not None)
        touched: set[str] = set()
        if t == nxt:
            touched |= apply(t)
            i += 1
        while sweep.deadlines and sweep.deadlines[0][0] == t:
            touched |= sweep.users(heapq.heappop(sweep.deadlines)[1])
        for cid in touched:
            s = sweep.evaluate(cid, t)
            if s != status[cid]:
                status[cid] = s
                history[cid].append((t, s))
    return history


def compliance_series(
    timelines: Mapping[str, Timeline], points: int = 60, applicable: Collection[str] | None = None
) -> list[dict[str, Any]]:
    """Status counts of the (applicable) controls at ``points`` evenly spaced instants."""
    if not timelines:
        return []
    any_tl = next(iter(timelines.values()))
    start, end = any_tl.start, any_tl.end
    span = end - start
    n = max(2, points)
    out = []
    for i in range(n):
        t = start + span * i / (n - 1)
        counts: Counter[str] = Counter()
        for cid, tl in timelines.items():
            if applicable is not None and cid not in applicable:
                continue
            counts[tl.status_at(t)] += 1
        total = sum(counts.values()) or 1
        ok = counts["pass"] + counts["excepted"] + counts["not_applicable"]
        out.append(
            {
                "at": t.isoformat(),
                "counts": dict(counts),
                "compliant_pct": round(100.0 * ok / total, 2),
            }
        )
    return out

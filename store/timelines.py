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
from typing import Any

from sqlalchemy import (
    BigInteger,
    Engine,
    Text,
    any_,
    bindparam,
    cast,
    or_,
    select,
    type_coerce,
)
from sqlalchemy.dialects.postgresql import ARRAY

from store.exceptions import ExceptionRule, exception_for
from store.manual_records import ManualRecord
from store.queries import STREAM, findings_at, last_ok_units, manual_history
from store.schema import ControlsTexts, evidence, findings, run_units, runs, sealed
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


class _Replay:
    """Incremental control statuses while the change log is replayed in time order."""

    def __init__(
        self,
        index: Any,
        freshness: timedelta,
        rules: list[ExceptionRule],
        controls: Collection[str],
    ) -> None:
        self.index = index
        self.freshness = freshness
        self.rules = rules
        self.controls = set(controls)
        self.findings: dict[tuple[str, str], dict[str, Any]] = {}
        self.eff: dict[tuple[str, str], str] = {}
        self.counts: dict[str, Counter[str]] = {c: Counter() for c in self.controls}
        self.pass_units: dict[str, Counter[tuple[str, str, str, str]]] = {
            c: Counter() for c in self.controls
        }
        self.unit_controls: dict[tuple[str, str, str], Counter[str]] = {}
        self.units: dict[tuple[str, str, str, str], datetime] = {}
        self.by_check: dict[str, set[tuple[str, str]]] = {}
        self.manual: dict[str, ManualRecord] = {}
        self.manual_by_control: dict[str, set[str]] = {}
        self.status: dict[str, str] = {}
        self.deadlines: list[tuple[datetime, str]] = []

    # finding state
    def _unit(self, f: Mapping[str, Any]) -> tuple[str, str, str, str]:
        return (f["source"], f["scope"], f["region"], f["service"])

    def _effective(self, f: Mapping[str, Any], t: datetime) -> str:
        return "excepted" if exception_for(self.rules, f, t) else f["status"]

    def _remove(self, fk: tuple[str, str]) -> set[str]:
        old = self.findings.pop(fk, None)
        if old is None:
            return set()
        eff = self.eff.pop(fk)
        touched = set()
        for cid in old["controls"]:
            if cid not in self.controls:
                continue
            self.counts[cid][eff] -= 1
            if eff == "pass":
                u = self._unit(old)
                self.pass_units[cid][u] -= 1
                if self.pass_units[cid][u] <= 0:
                    del self.pass_units[cid][u]
                uc = self.unit_controls[(u[0], u[1], u[3])]
                uc[cid] -= 1
            touched.add(cid)
        self.by_check.get(old["check_id"], set()).discard(fk)
        return touched

    def _add(self, fk: tuple[str, str], f: dict[str, Any], t: datetime) -> set[str]:
        self.findings[fk] = f
        eff = self._effective(f, t)
        self.eff[fk] = eff
        self.by_check.setdefault(f["check_id"], set()).add(fk)
        touched = set()
        for cid in f["controls"]:
            if cid not in self.controls:
                continue
            self.counts[cid][eff] += 1
            if eff == "pass":
                u = self._unit(f)
                self.pass_units[cid][u] += 1
                self.unit_controls.setdefault((u[0], u[1], u[3]), Counter())[cid] += 1
                self._confirm_own(f)
            touched.add(cid)
        return touched

    def _confirm_own(self, f: Mapping[str, Any]) -> None:
        # A passing finding's own observation confirms its unit (as in control_statuses),
        # no later than the as-of of the inventory record it was judged on.
        u = self._unit(f)
        seen = f.get("observed_at")
        as_of = f.get("source_updated_at")
        if seen is not None and as_of is not None and as_of < seen:
            seen = as_of
        if seen is not None and (u not in self.units or self.units[u] < seen):
            self.units[u] = seen

    def _same_standing(self, old: Mapping[str, Any], f: Mapping[str, Any], t: datetime) -> bool:
        """``f`` replaces ``old`` without changing any count: same check, unit, controls
        and effective status."""
        return (
            old["check_id"] == f["check_id"]
            and old["controls"] == f["controls"]
            and self._unit(old) == self._unit(f)
            and self.eff[(f["source"], f["key"])] == self._effective(f, t)
        )

    def apply_finding(self, f: dict[str, Any], t: datetime) -> set[str]:
        fk = (f["source"], f["key"])
        old = self.findings.get(fk)
        if old is not None and f["status"] is not None and self._same_standing(old, f, t):
            # Same counts as before: only the stored row and its unit's confirmation move
            # (what removing and adding it again would leave).
            self.findings[fk] = f
            touched = {cid for cid in f["controls"] if cid in self.controls}
            if touched and self.eff[fk] == "pass":
                self._confirm_own(f)
            return touched
        touched = self._remove(fk)
        if f["status"] is not None:
            touched |= self._add(fk, f, t)
        return touched

    def recheck(self, check: str, t: datetime) -> set[str]:
        touched: set[str] = set()
        for fk in list(self.by_check.get(check, ())):
            f = self.findings[fk]
            if self._effective(f, t) != self.eff[fk]:
                touched |= self._remove(fk)
                touched |= self._add(fk, f, t)
        return touched

    def confirm(
        self, unit: tuple[str, str, str, str], t: datetime, as_of: datetime | None = None
    ) -> set[str]:
        # The latest clean read confirms as of its snapshot (as in last_ok_units).
        self.units[unit] = as_of if as_of is not None and as_of < t else t
        users = self.unit_controls.get((unit[0], unit[1], unit[3]), {})
        return {c for c, n in users.items() if n > 0}

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

    # evaluation
    def _confirmation(self, u: tuple[str, str, str, str]) -> datetime | None:
        times = [
            x
            for x in (self.units.get(u), self.units.get((u[0], u[1], "global", u[3])))
            if x is not None
        ]
        return max(times) if times else None

    def evaluate(self, cid: str, t: datetime) -> str:
        stale = False
        next_deadline: datetime | None = None
        for u in self.pass_units[cid]:
            c = self._confirmation(u)
            if c is None or c < t - self.freshness:
                stale = True
            else:
                d = c + self.freshness + _EPS
                if next_deadline is None or d < next_deadline:
                    next_deadline = d
        if next_deadline is not None:
            heapq.heappush(self.deadlines, (next_deadline, cid))
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


def _touching(check_col: Any, controls_text: Any, checks: Collection[str],
              controls: Collection[str]) -> Any:
    """SQL: the row can touch ``controls``: one of their ``checks``, or a stored mapping
    naming one of them (it may differ from today's, hence both conditions)."""
    return or_(
        check_col.in_(sorted(checks) or [""]),
        *(controls_text.contains(f'"{cid}"') for cid in controls),
    )


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
        q = q.where(_touching(cur.check_id, cur.controls, checks, controls))
    parse = _ControlsCache()
    return [
        parse.row({**row, "source_updated_at": None}) for row in conn.execute(q).mappings()
    ]


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
    """Each control's status history over ``[start, end]`` by replaying the change log.

    Events: finding versions, clean unit reads (run finish times), manual evidence
    versions and validity bounds, exception bounds, and freshness deadlines. At each
    event the touched controls are re-evaluated with :func:`combine_status`, so the
    status a timeline gives for instant T is the one ``control_statuses(at=T)`` gives.
    """
    if end < start:
        raise ValueError("the period ends before it starts")
    rules = list(exceptions)
    selected = list(controls) if controls is not None else list(index.catalog)
    rp = _Replay(index, freshness, rules, selected)
    check_filter: set[str] | None = None
    if controls is not None:
        check_filter = {c for cid in selected for c in index.checks_for(cid)}
    with engine.connect() as conn:
        rp.units = dict(last_ok_units(conn, start))
        for f in _starting_findings(conn, start, check_filter, selected):
            if (
                check_filter is None or f["check_id"] in check_filter
                or not rp.controls.isdisjoint(f["controls"])
            ):
                rp.apply_finding(f, start)
        from store.policy_documents import policy_history

        mhist = [
            (t, key, within_review(rec, index))
            for t, key, rec in sorted(
                [*manual_history(conn), *policy_history(conn)], key=lambda e: e[0]
            )
        ]
        for t, key, rec in mhist:
            if t <= start:
                rp.apply_manual(key, rec)
        events: list[tuple[datetime, int, int, Any]] = []
        seq = 0

        def push(t: datetime, kind: int, payload: Any) -> None:
            nonlocal seq
            seq += 1
            events.append((t, kind, seq, payload))

        for t, key, rec in mhist:
            if start < t <= end:
                push(t, 2, (key, rec))
            if rec is not None:
                for bound in (rec.valid_from, rec.valid_until):
                    if start < bound <= end:
                        push(bound, 4, rec.control)
        for r in rules:
            for bound in (r.effective_from, r.effective_until):
                if bound is not None and start < bound <= end:
                    push(bound, 3, r.check)
        uq = (
            select(
                runs.c.finished_at,
                runs.c.source,
                run_units.c.scope,
                run_units.c.region,
                run_units.c.service,
                run_units.c.source_as_of,
            )
            .select_from(run_units.join(runs, runs.c.id == run_units.c.run_id))
            .where(
                run_units.c.ok.is_(True),
                runs.c.digest.is_not(None),
                runs.c.finished_at > start,
                runs.c.finished_at <= end,
            )
        )
        for fin, src, scope, region, service, as_of in conn.execute(uq):
            push(fin, 1, ((src, scope, region, service), as_of))
        fq = (
            select(
                *(findings.c[c] for c in _REPLAY_COLUMNS),
                _controls_text(conn).label("controls"),
                evidence.c.source_updated_at,
            )
            .select_from(
                findings.outerjoin(evidence, evidence.c.id == findings.c.evidence_id)
            )
            .where(findings.c.observed_at > start, findings.c.observed_at <= end, sealed(findings))
            .order_by(findings.c.observed_at, findings.c.id)
        )
        if check_filter is not None:
            # Only the rows that can touch the selected controls (the mapping stored with
            # each row may differ from today's, hence both conditions).
            # As text: the column is jsonb on PostgreSQL (migration 0005).
            fq = fq.where(
                _touching(findings.c.check_id, cast(findings.c.controls, Text), check_filter,
                          selected)
            )
        result = conn.execute(fq, execution_options=STREAM)
        names = tuple(result.keys())
        parse = _ControlsCache()
        frows: Iterable[dict[str, Any]] = (
            parse.row(dict(zip(names, row, strict=True))) for row in result
        )
        events.sort(key=lambda e: (e[0], e[1], e[2]))

        changes: dict[str, list[tuple[datetime, str]]] = {}
        for cid in selected:
            s = rp.evaluate(cid, start)
            rp.status[cid] = s
            changes[cid] = [(start, s)]

        def settle(touched: set[str], t: datetime) -> None:
            for cid in touched:
                s = rp.evaluate(cid, t)
                if s != rp.status[cid]:
                    rp.status[cid] = s
                    changes[cid].append((t, s))

        def run_deadlines(until: datetime) -> None:
            while rp.deadlines and rp.deadlines[0][0] <= until:
                t, cid = heapq.heappop(rp.deadlines)
                if t > end:
                    continue
                settle({cid}, t)

        ei = 0
        fiter = iter(frows)
        pending_f = next(fiter, None)
        while ei < len(events) or pending_f is not None:
            te = events[ei][0] if ei < len(events) else None
            tf = pending_f["observed_at"] if pending_f is not None else None
            if tf is not None and (te is None or tf <= te):
                t = tf
            else:
                assert te is not None
                t = te
            run_deadlines(t - _EPS)
            touched: set[str] = set()
            while pending_f is not None and pending_f["observed_at"] == t:
                f = pending_f
                if (
                    check_filter is None
                    or f["check_id"] in check_filter
                    or not rp.controls.isdisjoint(f["controls"])
                ):
                    touched |= rp.apply_finding(f, t)
                pending_f = next(fiter, None)
            while ei < len(events) and events[ei][0] == t:
                _, kind, _, payload = events[ei]
                ei += 1
                if kind == 1:
                    touched |= rp.confirm(payload[0], t, payload[1])
                elif kind == 2:
                    touched |= rp.apply_manual(*payload)
                elif kind == 3:
                    touched |= rp.recheck(payload, t)
                elif kind == 4 and payload in rp.controls:
                    touched.add(payload)
            settle(touched, t)
        run_deadlines(end)
    return {
        cid: Timeline(control=cid, start=start, end=end, changes=changes[cid]) for cid in selected
    }


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

"""Snapshots of the findings in force at past instants: time travel (``--at``) bounded.

Derived data, not evidence, like :mod:`store.current`. A snapshot at instant S holds,
per finding key of each source, its latest sealed version with ``observed_at <= S``
(tombstones too), in ``findings_in_force``'s columns. The findings in force at any T
are then the snapshot at the latest S <= T, overridden per key by the sealed versions
observed in (S, T] — a read of one snapshot and of the history since it, instead of a
probe per key of the whole history (:func:`in_force_at`).

Bounded: a snapshot is taken (at seal time, :func:`maintain`) when the versions observed
since the last one are at least as many as the findings in force, so the history read
after a snapshot is at most about one snapshot's size, and the snapshots together are
at most about the size of the findings history.

Exact: a snapshot is a copy of ``findings_in_force`` just after a seal, labelled with
its newest observation S (every version then in force is observed by S, so the copy
*is* "in force at S"). A run sealed later with a version observed at or before S would
change that answer: its seal deletes every snapshot at or after its earliest
observation. ``findings_snapshot_state`` counts the sealed runs applied; a reader uses
the snapshots only when it equals the sealed runs in ``runs`` (a run sealed by an older
version, or runs removed, make it differ), and the next seal then drops them all and
starts again. Migration 0010 builds them from the history (:func:`rebuild`).
"""

from __future__ import annotations

import re
import threading
import weakref
from collections import OrderedDict
from collections.abc import Collection, Iterator
from concurrent.futures import ThreadPoolExecutor, wait
from contextlib import contextmanager
from datetime import datetime
from operator import itemgetter
from typing import Any

from sqlalchemy import (
    Column,
    Connection,
    Index,
    Integer,
    Table,
    Text,
    cast,
    func,
    literal,
    literal_column,
    select,
    text,
    tuple_,
    type_coerce,
    union_all,
)
from sqlalchemy.types import NullType

from store.current import (
    _FROM,
    _controls_text,
    accounts_for_every_run,
    applied_runs,
    count_seal,
    findings_in_force,
    mark_current,
    runs_state,
    trusted,
)
from store.schema import (
    ControlsTexts,
    RowId,
    UTCDateTime,
    UTCInstants,
    collection_paused,
    evidence,
    findings,
    metadata,
    sealed,
)

findings_snapshots = Table(
    "findings_snapshots",
    metadata,
    Column("id", RowId, primary_key=True, autoincrement=True),
    # S: the newest observation of the findings in force copied.
    Column("at", UTCDateTime(), nullable=False),
    Column("rows", Integer, nullable=False),
)
Index("ix_findings_snapshots_at", findings_snapshots.c.at)

findings_snapshot_rows = Table(
    "findings_snapshot_rows",
    metadata,
    Column("snapshot_id", RowId, primary_key=True),
    *(
        Column(c.name, c.type, primary_key=c.primary_key, nullable=c.nullable)
        for c in findings_in_force.columns
    ),
)

findings_snapshot_state = runs_state("findings_snapshot_state")

_COLS = tuple(c.name for c in findings_in_force.columns)


def _drop_all(conn: Connection) -> None:
    conn.execute(findings_snapshot_rows.delete())
    conn.execute(findings_snapshots.delete())


def _drop_from(conn: Connection, at: datetime) -> None:
    """Drop the snapshots at or after ``at`` (a version observed by then was sealed)."""
    gone = select(findings_snapshots.c.id).where(findings_snapshots.c.at >= at)
    conn.execute(findings_snapshot_rows.delete().where(
        findings_snapshot_rows.c.snapshot_id.in_(gone)))
    conn.execute(findings_snapshots.delete().where(findings_snapshots.c.at >= at))


def maintain(conn: Connection, run_id: str) -> None:
    """Keep the snapshots exact after ``run_id`` was sealed and applied to
    ``findings_in_force`` (same transaction), and take one when it is due."""
    if not count_seal(conn, findings_snapshot_state):
        # Behind (an older version sealed runs, or runs were removed): start again.
        _drop_all(conn)
        mark_current(conn, findings_snapshot_state)
    else:
        # GROUP BY: PostgreSQL plans a bare min() with a filter as a walk up
        # ix_findings_observed until the first row of the run, and a just-sealed run's
        # rows are the newest: a read of the whole index per seal (240 ms after 2,000
        # hourly runs over 10,000 resources, growing with the history). Grouped, it is
        # an aggregate over the run's rows (ix_findings_run); no row when it has none.
        earliest = conn.execute(
            select(func.min(findings.c.observed_at))
            .where(findings.c.run_id == run_id)
            .group_by(findings.c.run_id)
        ).scalar()
        if earliest is not None:
            _drop_from(conn, earliest)
    _snapshot_if_due(conn)


def _snapshot_if_due(conn: Connection) -> None:
    last = conn.execute(select(func.max(findings_snapshots.c.at))).scalar()
    in_force = conn.execute(select(func.count()).select_from(findings_in_force)).scalar_one()
    since = select(func.count()).select_from(findings)
    if last is not None:
        since = since.where(findings.c.observed_at > last)
    if not in_force or conn.execute(since).scalar_one() < in_force:
        return
    newest = conn.execute(select(func.max(findings_in_force.c.observed_at))).scalar()
    sid = conn.execute(
        findings_snapshots.insert().values(at=newest, rows=in_force)
        .returning(findings_snapshots.c.id)
    ).scalar_one()
    conn.execute(
        findings_snapshot_rows.insert().from_select(
            ["snapshot_id", *_COLS],
            select(literal_column(str(int(sid))), *(findings_in_force.c[c] for c in _COLS)),
        )
    )


def rebuild(conn: Connection, spacing: int | None = None) -> int:
    """Recompute every snapshot from the sealed history (one ordered pass over the
    findings, each snapshot taken when due as :func:`maintain` would: once the versions
    since the last are as many as the findings in force, or ``spacing``); returns how
    many were taken."""
    _drop_all(conn)
    mark_current(conn, findings_snapshot_state)
    ctl = _controls_text(conn)
    q = text(
        f"SELECT {_FROM.replace('f.controls', ctl)} FROM findings f"
        " JOIN runs r ON r.id = f.run_id AND r.digest IS NOT NULL"
        " LEFT JOIN evidence e ON e.id = f.evidence_id ORDER BY f.observed_at, f.id"
    ).columns(*(findings_in_force.c[c] for c in _COLS))
    state: dict[tuple[str, str], tuple[Any, ...]] = {}
    since = 0
    taken = 0
    pending_at: datetime | None = None
    for row in conn.execute(q.execution_options(stream_results=True, yield_per=5000)):
        t = tuple(row)
        observed = t[_COLS.index("observed_at")]
        # A snapshot at S must hold every version observed by S: take it only at the
        # boundary between two observation instants.
        if pending_at is not None and observed != pending_at:
            if since >= (spacing or len(state)):
                _write(conn, pending_at, state)
                taken += 1
                since = 0
        state[(t[0], t[1])] = t
        since += 1
        pending_at = observed
    return taken


def _write(conn: Connection, at: datetime, state: dict[tuple[str, str], tuple[Any, ...]]) -> None:
    sid = conn.execute(
        findings_snapshots.insert().values(at=at, rows=len(state))
        .returning(findings_snapshots.c.id)
    ).scalar_one()
    rows = [{"snapshot_id": sid, **dict(zip(_COLS, t, strict=True))} for t in state.values()]
    for i in range(0, len(rows), 5000):
        conn.execute(findings_snapshot_rows.insert(), rows[i:i + 5000])


def in_force_at(conn: Connection, at: datetime, checks: Collection[str] | None = None) -> Any:
    """The findings in force at ``at`` as a relation with ``findings_in_force``'s
    columns (tombstones included), from the latest snapshot at or before ``at`` and
    the sealed versions observed after it; None when the snapshots cannot say
    exactly (behind the runs, or none by ``at``). ``checks``: only their findings (a
    key's versions are all of one check, so they are selected before the latest of
    each is, and the rest is never read)."""
    if not accounts_for_every_run(conn, findings_snapshot_state):
        return None
    snap = _snapshot_by(conn, at)
    return None if snap is None else _in_force_from(conn, snap, at, checks)


def _snapshot_by(conn: Connection, at: datetime) -> Any:
    """The latest snapshot at or before ``at`` (id, at, rows), or None."""
    return conn.execute(
        select(findings_snapshots.c.id, findings_snapshots.c.at, findings_snapshots.c.rows)
        .where(findings_snapshots.c.at <= at)
        .order_by(findings_snapshots.c.at.desc(), findings_snapshots.c.id.desc())
        .limit(1)
    ).first()


def _in_force_from(conn: Connection, snap: Any, at: datetime,
                   checks: Collection[str] | None) -> Any:
    """:func:`in_force_at`'s relation from the snapshot ``snap`` (:func:`_snapshot_by`):
    the latest of each key's versions observed since it, and the snapshot's rows of the
    keys with none."""
    return union_all(*_in_force_parts(conn, snap, at, checks)).subquery("in_force_at")


def _in_force_parts(conn: Connection, snap: Any, at: datetime,
                    checks: Collection[str] | None) -> tuple[Any, Any]:
    """:func:`_in_force_from`'s two disjoint parts: the snapshot's rows of the keys with
    no version since it, and the latest of each key's versions since it."""
    rows = findings_snapshot_rows.c
    base = select(*(rows[c] for c in _COLS)).where(rows.snapshot_id == snap.id)
    if checks is not None:
        base = base.where(rows.check_id.in_(sorted(checks) or [""]))
    # The versions since the snapshot are read once (a CTE both parts use: reading them
    # for each cost a third of a past page), and no part is ordered (sorting the
    # snapshot's rows with the versions cost more than every other part of a page).
    if conn.dialect.name == "sqlite":
        v, latest = _versions_sqlite(snap.at, at, checks)
        # SQLite probes a row-value NOT IN list row by row; one column is one lookup in
        # an index it builds once.
        kept = base.where((rows.source + _SEP + rows.key).not_in(select(v.c.k)))
    else:
        v, latest = _versions_postgresql(snap.at, at, checks)
        kept = base.where(tuple_(rows.source, rows.key).not_in(select(v.c.source, v.c.key)))
    return kept, latest


_SEP = literal(chr(31))


def _since(s_at: datetime, at: datetime, checks: Collection[str] | None) -> list[Any]:
    """The sealed versions observed in (``s_at``, ``at``] (of ``checks``: a key's versions
    are all of one check, so they are selected before the latest of each is)."""
    f = findings.c
    since = [f.observed_at > s_at, f.observed_at <= at, sealed(findings)]
    if checks is not None:
        since.append(f.check_id.in_(sorted(checks) or [""]))
    return since


def _own(v: Any, sqlite: bool) -> dict[str, Any]:
    """A version's columns that ``findings_in_force`` holds differently: its id, its
    observation capped by the evidence's as-of (as store.current._seen), its controls'
    text. The as-of is a probe by id for each latest version (joined, PostgreSQL scans
    every evidence row instead), made once: min()/least() of the two, ignored when
    there is none."""
    e = evidence.c
    as_of = select(e.source_updated_at).where(e.id == v.c.evidence_id).scalar_subquery()
    seen = (func.coalesce(func.min(as_of, v.c.observed_at), v.c.observed_at) if sqlite
            else func.least(as_of, v.c.observed_at))
    return {"finding_id": v.c.id, "seen_at": type_coerce(seen, UTCDateTime()),
            "controls": v.c.controls if sqlite else cast(v.c.controls, Text)}


def _versions_sqlite(s_at: datetime, at: datetime,
                     checks: Collection[str] | None) -> tuple[Any, Any]:
    """The versions since the snapshot as narrow rows (id, key, observation), and the
    latest of each key in ``findings_in_force``'s columns: ranked on the narrow rows,
    the chosen ones read by primary key (SQLite sorted every column of every version
    otherwise: 267 -> 240 ms at mid-year on the 10,000-bucket year)."""
    f = findings.c
    v = select(f.id, (f.source + _SEP + f.key).label("k"), f.observed_at).where(
        *_since(s_at, at, checks)).cte("since_snapshot")
    ranked = select(v.c.id, func.row_number().over(
        partition_by=v.c.k, order_by=(v.c.observed_at.desc(), v.c.id.desc())).label("rn")
    ).subquery("ranked")
    x: Any = findings.alias("v")
    own = _own(x, True)
    latest = (select(*(own[c].label(c) if c in own else x.c[c] for c in _COLS))
              .select_from(x.join(ranked, ranked.c.id == x.c.id)).where(ranked.c.rn == 1))
    return v, latest


def _versions_postgresql(s_at: datetime, at: datetime,
                         checks: Collection[str] | None) -> tuple[Any, Any]:
    """The versions since the snapshot, ranked, with the columns the relation needs, and
    the latest of each key in ``findings_in_force``'s columns. PostgreSQL sorts the
    whole rows in memory faster than it probes the chosen ones by id (29 against 61 ms),
    so they are ranked whole."""
    f = findings.c
    needed = [f[c] for c in ("id", *(c for c in _COLS if c in findings.c), "evidence_id")]
    rank = func.row_number().over(partition_by=(f.source, f.key),
                                  order_by=(f.observed_at.desc(), f.id.desc())).label("rn")
    v = select(*needed, rank).where(*_since(s_at, at, checks)).cte("since_snapshot")
    own = _own(v, False)
    latest = (select(*(own[c].label(c) if c in own else v.c[c] for c in _COLS))
              .where(v.c.rn == 1))
    return v, latest


def in_force(conn: Connection, at: datetime, checks: Collection[str] | None = None) -> Any:
    """A relation with ``findings_in_force``'s columns holding exactly the findings in
    force at ``at`` (tombstones included): the table itself at now, a snapshot and the
    history since it before (``store.snapshots``); None when only the walk can say.
    ``checks``: at least their findings (a past instant reads only theirs)."""
    if trusted(conn, at):
        return findings_in_force
    return in_force_at(conn, at, checks)


# -- the findings in force at a past instant for a status, read once per instant --------

#: At most this many findings in force are kept in memory per database (0.46 KB each
#: measured, so about 70 MB), over the past instants read lately: an instant with more
#: is read every time.
CACHED_ROWS = 150_000

#: A held finding: :func:`store.queries.findings_light`'s row (the observation capped
#: by the evidence's as-of, ``seen_at``), then its key and its ``findings`` row id.
_Held = tuple[Any, ...]
_LIGHT = 10


class _Cached:
    """Per database (engine), the findings in force at the past instants read lately
    (all of them, or those of some checks), least recently used first.

    Exact: an instant's findings in force are its snapshot's rows and the sealed versions
    observed since, and are known by the instant, the snapshot (id, instant, size) and
    the sealed runs the snapshots' state accounted for when they were read. A run sealed
    since with a version observed by the instant changes that count (its seal counts in
    the state, or drops the snapshots and starts them again), and so does a rebuild after
    runs were removed; such an entry is then never asked for again and ages out."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_engine: weakref.WeakKeyDictionary[
            Any, OrderedDict[tuple[Any, ...], list[_Held]]] = weakref.WeakKeyDictionary()

    def get(self, engine: Any, key: tuple[Any, ...], checks: frozenset[str] | None
            ) -> list[_Held] | None:
        """Held rows at ``key`` with at least the findings of ``checks`` (None: all)."""
        with self._lock:
            held = self._by_engine.get(engine)
            if held is None:
                return None
            for (k, some), rows in reversed(held.items()):
                if k == key and (some is None or (checks is not None and checks <= some)):
                    held.move_to_end((k, some))
                    return rows
            return None

    def put(self, engine: Any, key: tuple[Any, ...], checks: frozenset[str] | None,
            rows: list[_Held]) -> None:
        if len(rows) > CACHED_ROWS:
            return
        with self._lock:
            held = self._by_engine.setdefault(engine, OrderedDict())
            held[(key, checks)] = rows
            while sum(len(r) for r in held.values()) > CACHED_ROWS:
                held.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._by_engine.clear()

    def rows(self, engine: Any) -> int:
        with self._lock:
            return sum(len(r) for r in self._by_engine.get(engine, {}).values())


_cached = _Cached()


def forget() -> None:
    """Drop every past instant held in memory (the next read of one asks the database)."""
    _cached.clear()


def held_rows(engine: Any) -> int:
    """How many findings in force at past instants are held in memory for ``engine``."""
    return _cached.rows(engine)


def light_rows_at(
    conn: Connection, at: datetime, checks: Collection[str] | None = None
) -> list[tuple[Any, ...]] | None:
    """The findings in force at ``at`` as :func:`store.queries.findings_light` gives them
    (its order, and its shape followed by the finding's key and ``findings`` row id; the
    observation capped by the evidence's as-of as ``seen_at``), from the latest snapshot
    by ``at`` and the versions observed since (:func:`in_force_at`); None when the
    snapshots cannot say exactly. ``checks``: only their findings. The rows are the ones
    held: read them, never change them.

    What is read at an instant is kept in memory (:class:`_Cached`,
    :data:`CACHED_ROWS`): the pages an auditor opens at one audit date (the overview and
    SoA, every control after them, a control again) read it from the database once.
    """
    found = _held_at(conn, at, checks, read=True)
    if found is None:
        return None
    if checks is None:
        return found
    asked = frozenset(checks)
    return [row for row in found if row[4] in asked]


def held_page(
    conn: Connection,
    at: datetime,
    checks: Collection[str],
    control: str,
    after: tuple[int, str, str, str] | None,
    limit: int,
) -> tuple[list[dict[str, Any]], tuple[int, str, str, str] | None] | None:
    """``store.queries.control_findings_page`` from the findings held at ``at`` (the
    control's status read them just before), the page's own rows then read by id;
    None when they are not held."""
    from store.current import PAGE_RANK, rows_by_id

    found = _held_at(conn, at, checks, read=False)
    if found is None:
        return None
    asked = frozenset(checks)

    def order(row: _Held) -> tuple[int, str, str, str]:
        return (PAGE_RANK.get(row[6], 9), row[4], row[0], row[_LIGHT])

    chosen = sorted((row for row in found if row[4] in asked and control in row[7]),
                    key=order)
    if after is not None:
        chosen = [row for row in chosen if order(row) > after]
    more = order(chosen[limit - 1]) if len(chosen) > limit else None
    return rows_by_id(conn, [row[_LIGHT + 1] for row in chosen[:limit]]), more


def _held_at(conn: Connection, at: datetime, checks: Collection[str] | None, *,
             read: bool) -> list[_Held] | None:
    """The findings held at ``at`` (with at least those of ``checks``), read and held
    first when ``read``; None when the snapshots cannot answer ``at``, or not held."""
    applied = applied_runs(conn, findings_snapshot_state)
    if applied is None or not accounts_for_every_run(conn, findings_snapshot_state):
        return None
    snap = _snapshot_by(conn, at)
    if snap is None:
        return None
    key = (*snap, applied, at)
    asked = None if checks is None else frozenset(checks)
    held = _cached.get(conn.engine, key, asked)
    if held is None and read:
        # Every check's findings for the overview; only those asked for by a page of one
        # control, which reads only what can count for it.
        parts = _in_force_parts(conn, snap, at, asked)
        # No collection while 20,000 rows are fetched and held rows built from them
        # (paused around the build only, the fetch still started 80 per read, measured).
        with collection_paused():
            held = _read_in_parallel(conn.engine, parts, applied)
            if held is MOVED:
                # A run was sealed since the snapshot was chosen (it may even be gone):
                # the walk answers this once.
                return None
            if held is None:
                held = _read_held(conn, parts)
        _cached.put(conn.engine, key, asked, held)
    return held


def _read_held(conn: Connection, parts: tuple[Any, Any]) -> list[_Held]:
    """The findings of the relation's ``parts`` (tombstones left out) as held rows, per
    source by key, read in one statement on ``conn``."""
    _tune(conn)
    return _held_rows(conn.dialect, conn.execute(_held_query(union_all(*parts))).all())


def _held_query(part: Any) -> Any:
    cur = part.subquery("in_force_at").c
    # Untyped: the instants are converted once per distinct value (_held_rows), not once
    # per row (a year of hourly runs repeats a few hundred of them over 20,000 findings).
    return select(cur.source, cur.scope, cur.region, cur.service, cur.check_id,
                  cur.resource_id, cur.status, cur.controls, cur.evidence_hash,
                  type_coerce(cur.seen_at, NullType()), cur.key, cur.finding_id
                  ).where(cur.status.is_not(None))


def _tune(conn: Connection) -> None:
    if conn.dialect.name == "postgresql":
        # The versions since the snapshot are ranked and the snapshot's rows anti-joined
        # in memory, not in sorted runs on disk; and never JIT-compiled (a plan costed
        # over the threshold spent 20 to 75 ms compiling a query that runs in 100).
        conn.execute(text("SELECT set_config('work_mem', '64MB', true),"
                          " set_config('jit', 'off', true)"))


def _held_rows(dialect: Any, fetched: list[Any]) -> list[_Held]:
    # Tuples, not lists: a held row then holds nothing the garbage collector tracks, so
    # it stops visiting the held rows (up to CACHED_ROWS) on every full collection.
    parsed = ControlsTexts(tuple)
    instants = UTCInstants(dialect)
    # One copy of each repeated text (source, unit, check, status): the rows are held,
    # and a new string per row and column made them 0.9 KB a row instead of 0.46.
    one: dict[Any, Any] = {}
    share = one.setdefault
    held = [(share(r[0], r[0]), share(r[1], r[1]), share(r[2], r[2]), share(r[3], r[3]),
             share(r[4], r[4]), r[5], share(r[6], r[6]), parsed[r[7]], r[8], instants[r[9]],
             r[10], r[11])
            for r in fetched]
    # Per source by key, as the walk reads them: a control lists its first failures.
    # Sorted here, not by the database (which sorted all 20,000 rows with every column).
    held.sort(key=itemgetter(0, _LIGHT))
    return held


#: PostgreSQL reads of a past instant in two parts at once, at most this many at a time
#: (each takes two connections from the engine's pool; the others read in one statement).
PARALLEL_READS = 2
_parallel = threading.BoundedSemaphore(PARALLEL_READS)
_workers = ThreadPoolExecutor(max_workers=PARALLEL_READS, thread_name_prefix="annexa-past")


#: What :func:`_read_in_parallel` returns when a run was sealed since the caller chose
#: the snapshot.
MOVED: Any = object()


def _read_in_parallel(engine: Any, parts: tuple[Any, Any], applied: int) -> Any:
    """On PostgreSQL, the two parts read at once on two connections that share one
    snapshot of the database (``pg_export_snapshot``): the server computes one while the
    other's rows come back (156 -> 99 ms measured at mid-year on the 10,000-bucket year).
    None on SQLite (one process: nothing gained, measured) and when as many reads are
    under way; :data:`MOVED`, and nothing read, when the snapshots' state in that
    snapshot is not ``applied`` (a run sealed since the caller chose the snapshot, which
    that seal may have dropped)."""
    if engine.dialect.name != "postgresql" or not _parallel.acquire(blocking=False):
        return None
    try:
        with _in_snapshot(engine, None) as (first, exported):
            state = first.execute(select(findings_snapshot_state.c.runs_applied)
                                  .where(findings_snapshot_state.c.id == 1)).scalar()
            if state != applied:
                return MOVED
            other = _workers.submit(_read_part, engine, exported, parts[1])
            try:
                fetched = first.execute(_held_query(parts[0])).all()
            finally:
                # The exported snapshot lives as long as this transaction: the other
                # part is read before it ends.
                wait([other])
            fetched += other.result()
        return _held_rows(engine.dialect, fetched)
    finally:
        _parallel.release()


def _read_part(engine: Any, exported: str, part: Any) -> list[Any]:
    with _in_snapshot(engine, exported) as (conn, _):
        return conn.execute(_held_query(part)).all()


@contextmanager
def _in_snapshot(engine: Any, exported: str | None) -> Iterator[tuple[Connection, str]]:
    """A REPEATABLE READ transaction on a connection of ``engine``: in the snapshot
    ``exported`` by another, or in a new one it exports (yielded with it)."""
    with engine.connect().execution_options(isolation_level="REPEATABLE READ") as conn:
        if exported is not None:
            # Before any other statement of the transaction, as PostgreSQL requires; the
            # identifier is PostgreSQL's own (hex digits and dashes), checked anyway.
            if not re.fullmatch(r"[0-9A-Fa-f-]+", exported):
                raise ValueError(f"not a snapshot identifier: {exported!r}")
            conn.execute(text(f"SET TRANSACTION SNAPSHOT '{exported}'"))
        _tune(conn)
        if exported is None:
            exported = conn.execute(text("SELECT pg_export_snapshot()")).scalar_one()
        yield conn, exported

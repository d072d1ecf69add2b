"""How many findings of each status were in force, as changes per instant: timelines
without replaying every finding version.

Derived data, not evidence, like :mod:`store.current` and :mod:`store.snapshots`. A
finding version counts for its stored controls from its observation until its key's next
version is observed. ``finding_status_changes`` holds those counts as signed changes:
``+n`` at the instant versions start, ``-n`` at the instant the next versions of their keys
replace them, per (source, check, unit, stored controls, status). The findings of each
status in force at T are the sum of the changes at or before T; over a period, the
changes in it. A year of hourly runs over 10,000 resources (two checks, 1 % changing
each hour: 1,771,800 finding versions) is 32,696 rows.

What the counts cannot say (a pass's own observation, a failure's resource for an
exception) the timeline reads from the history itself, only for the controls that need
it (``store.timelines``).

Maintained by :func:`apply_run` at seal time, in the sealing transaction and before
``findings_in_force`` is updated (the versions a run replaces are the ones in force just
before it). A run whose version of a key is older than the one in force (sealed late,
e.g. by crash recovery) changes the history after it: the table is rebuilt
(:func:`rebuild`, one ordered pass in SQL). ``finding_status_changes_state`` counts the
sealed runs applied; a reader uses the table only when it equals the sealed runs
(:func:`trusted`), else reads the history (slower, never wrong).
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Column,
    Connection,
    Index,
    Integer,
    String,
    Table,
    Text,
    func,
    select,
    text,
)

from store.current import (
    _controls_text,
    _sealed_runs,
    accounts_for_every_run,
    applied_runs,
    count_seal,
    findings_in_force,
    findings_in_force_state,
    mark_current,
    runs_state,
)
from store.schema import ControlsTexts, RowId, UTCDateTime, metadata

finding_status_changes = Table(
    "finding_status_changes",
    metadata,
    Column("id", RowId, primary_key=True, autoincrement=True),
    Column("at", UTCDateTime(), nullable=False),
    Column("source", String(200), nullable=False),
    Column("check_id", String(200), nullable=False),
    Column("scope", String(255), nullable=False),
    Column("region", String(100), nullable=False),
    Column("service", String(100), nullable=False),
    Column("controls", Text, nullable=False),
    Column("status", String(20), nullable=False),
    Column("n", Integer, nullable=False),
)
Index("ix_finding_status_changes_at", finding_status_changes.c.at)

finding_status_changes_state = runs_state("finding_status_changes_state")

_COLS = "at, source, check_id, scope, region, service, controls, status, n"
_GROUP = "at, source, check_id, scope, region, service, controls, status"


def apply_run(conn: Connection, run_id: str) -> None:
    """Add the changes ``run_id`` (just sealed in this transaction) brings; rebuild if
    the table was behind, ``findings_in_force`` cannot say what the run replaces, or the
    run is older than a version in force."""
    # Counted first: it takes the state row's lock (see count_seal), so what is read
    # next sees every other committed seal.
    current = count_seal(conn, finding_status_changes_state)
    in_force = applied_runs(conn, findings_in_force_state)
    late = conn.execute(
        text(
            "SELECT 1 FROM findings f JOIN findings_in_force c ON c.source = f.source"
            " AND c.key = f.key WHERE f.run_id = :run AND (c.observed_at > f.observed_at"
            " OR (c.observed_at = f.observed_at AND c.finding_id > f.id)) LIMIT 1"
        ),
        {"run": run_id},
    ).first()
    if not current or in_force != _sealed_runs(conn) - 1 or late is not None:
        rebuild(conn)
        return
    ctl = _controls_text(conn)
    # The run's versions start; each replaces its key's previous version in the run,
    # or (the first) the one in force before the run.
    conn.execute(
        text(
            f"INSERT INTO finding_status_changes ({_COLS}) WITH r AS ("
            " SELECT f.source, f.key, f.check_id, f.scope, f.region, f.service,"
            f" {ctl} AS controls, f.status, f.observed_at,"
            " LAG(f.status) OVER k AS prev_status, LAG(" + ctl + ") OVER k AS prev_controls,"
            " ROW_NUMBER() OVER k AS nth FROM findings f WHERE f.run_id = :run"
            " WINDOW k AS (PARTITION BY f.source, f.key ORDER BY f.observed_at, f.id))"
            f" SELECT {_GROUP}, sum(n) FROM ("
            " SELECT observed_at AS at, source, check_id, scope, region, service, controls,"
            " status, 1 AS n FROM r WHERE status IS NOT NULL"
            " UNION ALL SELECT observed_at, source, check_id, scope, region, service,"
            " prev_controls, prev_status, -1 FROM r WHERE nth > 1 AND prev_status IS NOT NULL"
            " UNION ALL SELECT r.observed_at, c.source, c.check_id, c.scope, c.region,"
            " c.service, c.controls, c.status, -1 FROM r JOIN findings_in_force c"
            " ON c.source = r.source AND c.key = r.key"
            " WHERE r.nth = 1 AND c.status IS NOT NULL"
            f") d GROUP BY {_GROUP} HAVING sum(n) <> 0"
        ),
        {"run": run_id},
    )


def rebuild(conn: Connection) -> int:
    """Recompute the table from the sealed history and mark it current; returns the
    rows written."""
    conn.execute(finding_status_changes.delete())
    ctl = _controls_text(conn)
    written = conn.execute(
        text(
            f"INSERT INTO finding_status_changes ({_COLS}) WITH v AS ("
            " SELECT f.source, f.check_id, f.scope, f.region, f.service,"
            f" {ctl} AS controls, f.status, f.observed_at,"
            " LEAD(f.observed_at) OVER (PARTITION BY f.source, f.key"
            " ORDER BY f.observed_at, f.id) AS next_at"
            " FROM findings f JOIN runs r ON r.id = f.run_id AND r.digest IS NOT NULL)"
            f" SELECT {_GROUP}, sum(n) FROM ("
            " SELECT observed_at AS at, source, check_id, scope, region, service, controls,"
            " status, 1 AS n FROM v WHERE status IS NOT NULL"
            " UNION ALL SELECT next_at, source, check_id, scope, region, service, controls,"
            " status, -1 FROM v WHERE next_at IS NOT NULL AND status IS NOT NULL"
            f") d GROUP BY {_GROUP} HAVING sum(n) <> 0"
        )
    ).rowcount
    mark_current(conn, finding_status_changes_state)
    return written


def trusted(conn: Connection) -> bool:
    """Whether the table accounts for every sealed run (see the module doc)."""
    return accounts_for_every_run(conn, finding_status_changes_state)


Change = tuple[datetime, str, str, str, str, str, str, str, int]


def _read(conn: Connection, where: Any, by_instant: bool) -> Iterator[Change]:
    c = finding_status_changes.c
    keys = [c.source, c.check_id, c.scope, c.region, c.service, c.controls, c.status]
    if by_instant:
        keys.insert(0, c.at)
    total = func.sum(c.n)
    q = select(*keys, total).where(where).group_by(*keys).having(total != 0)
    for row in conn.execute(q):
        yield tuple(row)  # type: ignore[misc]


def totals(conn: Connection, at: datetime) -> Iterator[tuple[Any, ...]]:
    """(source, check, scope, region, service, controls text, status, n): the findings
    in force at ``at``, counted (n > 0).

    The sum of the changes by ``at``; or, when ``at`` is nearer the end of the history and
    ``findings_in_force`` is current, the findings in force now less the changes after
    ``at`` — either way the rows read are at most half the table's."""
    c = finding_status_changes.c
    first, last = conn.execute(select(func.min(c.at), func.max(c.at))).one()
    if (first is not None and at - first > last - at
            and accounts_for_every_run(conn, findings_in_force_state)):
        return _from_now(conn, at)
    return _read(conn, c.at <= at, by_instant=False)


def _from_now(conn: Connection, at: datetime) -> Iterator[tuple[Any, ...]]:
    """The findings in force now, counted per group, less the changes after ``at``."""
    cur = findings_in_force.c
    keys = [cur.source, cur.check_id, cur.scope, cur.region, cur.service, cur.controls,
            cur.status]
    counts: dict[tuple[Any, ...], int] = {
        tuple(row[:-1]): row[-1]
        for row in conn.execute(
            select(*keys, func.count()).where(cur.status.is_not(None)).group_by(*keys))
    }
    for row in _read(conn, finding_status_changes.c.at > at, by_instant=False):
        k = tuple(row[:-1])
        counts[k] = counts.get(k, 0) - row[-1]
    return iter([(*k, n) for k, n in counts.items() if n])


def between(conn: Connection, start: datetime, end: datetime) -> Iterator[Change]:
    """(at, source, check, scope, region, service, controls text, status, n): the
    changes in ``(start, end]``, summed per instant and group."""
    c = finding_status_changes.c
    return _read(conn, (c.at > start) & (c.at <= end), by_instant=True)


def checks_naming(conn: Connection, controls: Collection[str]) -> set[str] | None:
    """The checks any version of which was stored mapped to one of ``controls`` (the
    mapping may have changed since); None when the table is not current."""
    if not trusted(conn):
        return None
    c = finding_status_changes.c
    wanted = set(controls)
    parse = ControlsTexts(tuple)
    pairs = conn.execute(select(c.check_id, c.controls).distinct())
    return {check for check, text_ in pairs if wanted.intersection(parse[text_])}

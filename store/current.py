"""The findings in force now, materialised: what the current control status needs from history.

Derived data, not evidence. ``findings_in_force`` holds, per finding key of each source,
its latest sealed version (a tombstone too, so an item that disappeared stays gone):
exactly the rows the point-in-time walk of :func:`store.queries.findings_light` finds
at "now", without walking every key's history, with each one's observation capped by
the as-of of the evidence it was judged on (``seen_at``, as the walk caps it). It is maintained by
:func:`store.sealing.seal_run` — the one place every run ends (writer, crash recovery,
the daemon's reaper, the journal replay) — in the sealing transaction, so a run's
findings are in force here exactly when its seal commits.

Everything that depends on the reading instant (stale windows, exception expiry,
document expiry, manual records and decisions recorded after the last run) is *not*
stored: the status is still computed at read time by the same code from these inputs.
The read is O(groups), not O(findings): the database counts the findings in force per
(controls, status, unit) with their oldest and newest observation (all a stale window
needs), and distinct evidence per control; only rows read one by one come back —
approved policies, failures of checks an active exception names, and the first
``MAX_LISTED`` failures/errors per control list.

Trust: ``findings_in_force_state`` counts the sealed runs applied. A reader uses the
table only when that count equals the sealed runs in ``runs`` and no stored version
lies after the reading instant; otherwise (a run sealed by an older version, retention
removed runs, the table was emptied by hand) it answers from the history walk — slower,
never wrong — and the next seal rebuilds the table from the evidence (so does migration 0009 when it
creates it). ``verify`` never reads it.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterator, Sequence
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
    type_coerce,
    update,
)
from sqlalchemy.types import NullType

from store.schema import (
    ControlsTexts,
    RowId,
    UTCDateTime,
    UTCInstants,
    collection_paused,
    metadata,
    runs,
    sealed_sql,
)

findings_in_force = Table(
    "findings_in_force",
    metadata,
    Column("source", String(200), primary_key=True),
    Column("key", Text, primary_key=True),
    Column("finding_id", RowId, nullable=False),
    Column("check_id", String(200), nullable=False),
    Column("scope", String(255), nullable=False),
    Column("region", String(100), nullable=False),
    Column("service", String(100), nullable=False),
    Column("resource_id", Text, nullable=False),
    Column("status", String(20)),
    Column("controls", Text, nullable=False),
    Column("evidence_hash", String(64)),
    Column("observed_at", UTCDateTime(), nullable=False),
    # The observation capped by the as-of of the evidence version judged (its
    # ``source_updated_at``): what the status counts as the finding's own confirmation,
    # as store.queries.findings_light does (a verdict on a snapshot is no fresher).
    Column("seen_at", UTCDateTime(), nullable=False),
    # :func:`trusted` reads the newest observation on every status page: one probe
    # (migration 0011).
    Index("ix_findings_in_force_observed", "observed_at"),
)

def runs_state(name: str) -> Table:
    """A derived table's one row (``id`` = 1) counting the sealed runs it accounts for;
    compared with the runs table on read (:func:`accounts_for_every_run`)."""
    return Table(
        name,
        metadata,
        Column("id", Integer, primary_key=True),
        Column("runs_applied", Integer, nullable=False),
    )


findings_in_force_state = runs_state("findings_in_force_state")

#: The columns of store.queries.findings_at (kept equal to its FINDING_COLUMNS by a test).
_FI_COLS = (
    "id", "run_id", "source", "key", "check_id", "scope", "region", "service",
    "resource_type", "resource_id", "status", "severity", "message", "evidence_hash",
    "controls", "mapping_digest", "observed_at", "finding_hash",
)
_COLS = (
    "source, key, finding_id, check_id, scope, region, service, resource_id, status,"
    " controls, evidence_hash, observed_at, seen_at"
)


def _seen(t: str) -> str:
    """SQL of ``seen_at`` for the finding aliased ``t`` joined to its evidence ``e``."""
    return (
        f"CASE WHEN e.source_updated_at IS NOT NULL AND e.source_updated_at < {t}.observed_at"
        f" THEN e.source_updated_at ELSE {t}.observed_at END"
    )


_FROM = (
    "f.source, f.key, f.id, f.check_id, f.scope, f.region, f.service, f.resource_id, f.status,"
    f" f.controls, f.evidence_hash, f.observed_at, {_seen('f')}"
)


def _sealed_runs(conn: Connection) -> int:
    return int(
        conn.execute(
            select(func.count()).select_from(runs).where(runs.c.digest.is_not(None))
        ).scalar_one()
    )


def applied_runs(conn: Connection, state: Table) -> int | None:
    """The sealed runs ``state`` counts (None: no state row)."""
    return conn.execute(select(state.c.runs_applied).where(state.c.id == 1)).scalar()


def accounts_for_every_run(conn: Connection, state: Table) -> bool:
    """Whether the derived table of ``state`` accounts for every sealed run."""
    applied = applied_runs(conn, state)
    return applied is not None and applied == _sealed_runs(conn)


def count_seal(conn: Connection, state: Table) -> bool:
    """Count the run just sealed (this transaction) in ``state``; whether the table now
    accounts for every sealed run (False: it was behind, rebuild it).

    The state row is updated first: on PostgreSQL its row lock serialises concurrent
    seals from here to commit, so the count read next sees every other committed seal.
    """
    applied = conn.execute(
        update(state).where(state.c.id == 1)
        .values(runs_applied=state.c.runs_applied + 1).returning(state.c.runs_applied)
    ).scalar()
    return applied is not None and applied == _sealed_runs(conn)


def mark_current(conn: Connection, state: Table) -> None:
    """Record that the derived table of ``state`` accounts for every sealed run."""
    conn.execute(state.delete())
    conn.execute(state.insert().values(id=1, runs_applied=_sealed_runs(conn)))


def _controls_text(conn: Connection) -> str:
    # The findings column is jsonb on PostgreSQL; the copy is the text of it.
    return "CAST(f.controls AS TEXT)" if conn.dialect.name == "postgresql" else "f.controls"


def apply_run(conn: Connection, run_id: str) -> None:
    """Bring the table up to date with ``run_id``, just sealed in this transaction
    (:func:`count_seal`). If the table was behind before this run, it is rebuilt instead
    of patched.
    """
    if not count_seal(conn, findings_in_force_state):
        rebuild(conn)
    else:
        _patch(conn, run_id)


def _patch(conn: Connection, run_id: str) -> None:
    """Bring in what ``run_id`` brings: per key, the run's newest version replaces the
    row in force when it is newer (a stored version newer than the run's stays), and is
    added where the key has none.

    One upsert driven by the run's own findings (an index range of ``ix_findings_run``),
    so a seal costs what its run wrote, not a pass over the table: the previous
    delete-then-insert tested every row in force against the run (20,000 correlated
    probes per seal over 10,000 resources on SQLite; a sequential scan of the table on
    PostgreSQL). Rows are updated in place: on PostgreSQL the new version goes to the
    same page where the table's fillfactor left room (migration 0012), and the space of
    the old one is reclaimed by page pruning as the table is read, without ``VACUUM``;
    delete + insert appended every new version to the end of the file, which grew by
    the churn of every seal where autovacuum lags or is off.
    """
    ctl = _controls_text(conn)
    newest_in_run = (
        "NOT EXISTS (SELECT 1 FROM findings g WHERE g.source = f.source AND g.key = f.key"
        " AND g.run_id = :run AND (g.observed_at > f.observed_at"
        " OR (g.observed_at = f.observed_at AND g.id > f.id)))"
    )
    cur = "findings_in_force"
    newer = (
        f"excluded.observed_at > {cur}.observed_at OR (excluded.observed_at = {cur}.observed_at"
        f" AND excluded.finding_id > {cur}.finding_id)"
    )
    replaced = ", ".join(f"{c} = excluded.{c}" for c in _COLS.replace(" ", "").split(",")
                         if c not in ("source", "key"))
    # The WHERE of the SELECT is required by SQLite before ON CONFLICT (it would read
    # "ON" as a join's otherwise); each key comes once (its newest version in the run),
    # as PostgreSQL requires of one upsert.
    conn.execute(
        text(
            f"INSERT INTO {cur} ({_COLS}) SELECT "
            f"{_FROM.replace('f.controls', ctl)} FROM findings f"
            " LEFT JOIN evidence e ON e.id = f.evidence_id WHERE f.run_id = :run"
            f" AND {newest_in_run}"
            f" ON CONFLICT (source, key) DO UPDATE SET {replaced} WHERE {newer}"
        ),
        {"run": run_id},
    )


def rebuild(conn: Connection) -> int:
    """Recompute the table from the evidence (every source's latest sealed finding
    versions) and mark it current; returns the rows written."""
    conn.execute(findings_in_force.delete())
    ctl = "CAST(t.controls AS TEXT)" if conn.dialect.name == "postgresql" else "t.controls"
    # The point-in-time walk of store.queries without its instant: the distinct keys by
    # a loose index scan, each key's latest sealed version by one index probe.
    insert = text(
        f"INSERT INTO findings_in_force ({_COLS}) WITH RECURSIVE k(key) AS ("
        " SELECT min(key) FROM findings WHERE source = :source"
        " UNION ALL SELECT (SELECT min(x.key) FROM findings x WHERE x.source = :source"
        " AND x.key > k.key) FROM k WHERE k.key IS NOT NULL)"
        " SELECT t.source, t.key, t.id, t.check_id, t.scope, t.region, t.service,"
        f" t.resource_id, t.status, {ctl}, t.evidence_hash, t.observed_at, {_seen('t')}"
        " FROM k JOIN findings t ON t.id = (SELECT y.id FROM findings y"
        f" WHERE y.source = :source AND y.key = k.key AND {sealed_sql('y')}"
        " ORDER BY y.observed_at DESC, y.id DESC LIMIT 1)"
        " LEFT JOIN evidence e ON e.id = t.evidence_id"
    )
    sources = conn.execute(select(runs.c.source).distinct()).scalars().all()
    written = 0
    for src in sources:
        written += conn.execute(insert, {"source": src}).rowcount
    mark_current(conn, findings_in_force_state)
    return written


def trusted(conn: Connection, at: datetime) -> bool:
    """Whether the table answers "in force at ``at``" exactly (see the module doc)."""
    if not accounts_for_every_run(conn, findings_in_force_state):
        return False
    latest = conn.execute(select(func.max(findings_in_force.c.observed_at))).scalar()
    return latest is None or latest <= at


def current_findings(
    conn: Connection,
    *,
    rel: Any = findings_in_force,
    check_id: str | None = None,
    source: str | None = None,
    status: str | None = None,
    check_ids: Collection[str] | None = None,
) -> list[dict[str, Any]]:
    """The rows :func:`store.queries.findings_at` returns at now (when :func:`trusted`),
    or at the instant of ``rel`` (``store.snapshots.in_force``): the ``findings`` rows it points
    at, same columns, same order."""
    from store.schema import findings

    cur = rel.c
    # ``controls`` as the relation's text (the same list): read from ``findings`` it is
    # jsonb on PostgreSQL, parsed and re-serialised row by row (SignedJSON) only to be
    # parsed again below, where the relation's few distinct texts are parsed once each.
    # Untyped observation: each distinct one converted once (UTCInstants), not once per
    # row; rows as tuples, each made a dict by zip (by RowMapping key, and converting
    # every row's instant, took 2/3 of a 10,000-finding control's download).
    cols = [
        cur.controls.label("controls") if c == "controls"
        else type_coerce(findings.c[c], NullType()).label(c) if c == "observed_at"
        else findings.c[c]
        for c in _FI_COLS
    ]
    q = (
        select(*cols)
        .select_from(rel.join(findings, findings.c.id == cur.finding_id))
        .where(cur.status.is_not(None))
    )
    if check_id:
        q = q.where(cur.check_id == check_id)
    if check_ids is not None:
        if not check_ids:
            return []
        q = q.where(cur.check_id.in_(sorted(check_ids)))
    if source:
        q = q.where(cur.source == source)
    if status:
        q = q.where(cur.status == status)
    rows = []
    parsed = ControlsTexts()
    instants = UTCInstants(conn.dialect)
    with collection_paused():
        for row in conn.execute(q).all():
            out = dict(zip(_FI_COLS, row, strict=True))
            out["controls"] = list(parsed[out["controls"]])  # each row's own: callers change it
            out["observed_at"] = instants[out["observed_at"]]
            rows.append(out)
        rows.sort(key=lambda r: (r["check_id"], r["source"], r["key"]))
    return rows


#: Statuses whose findings are listed by resource (the first MAX_LISTED per control).
_LISTED = ("fail", "error", "excepted")
_POLICY_CHECK = "policies.document.approved"


def _one_by_one(cur: Any, rule_checks: Collection[str]) -> Any:
    """Findings the status needs one by one: approved policies (read as documents) and
    failures of checks an active exception names (matched rule by rule)."""
    cond = cur.check_id == _POLICY_CHECK
    if rule_checks:
        cond = cond | (cur.status.in_(_LISTED) & cur.check_id.in_(sorted(rule_checks)))
    return cond


def listed_rows(
    conn: Connection, rule_checks: Collection[str], top: int, rel: Any = findings_in_force
) -> Iterator[tuple[object, ...]]:
    """Per source by key, rows of :func:`store.snapshots.light_rows_at`'s shape plus
    (key, whole): every one-by-one row (``whole``), and of the other listed statuses the
    first ``top`` of each (controls, status) — enough for every control's first ``top``
    (its lists are the merge, in this order, of those of its controls lists)."""
    cur = rel.c
    whole = _one_by_one(cur, rule_checks)
    rank = func.row_number().over(
        partition_by=(cur.controls, cur.status, whole), order_by=(cur.source, cur.key)
    )
    inner = (
        select(cur.source, cur.key, cur.scope, cur.region, cur.service, cur.check_id,
               cur.resource_id, cur.status, cur.controls, cur.evidence_hash, cur.seen_at,
               whole.label("whole"), rank.label("rn"))
        .where(cur.status.is_not(None), whole | cur.status.in_(_LISTED))
        .subquery()
    )
    q = (
        select(inner)
        .where(inner.c.whole | (inner.c.rn <= top))
        .order_by(inner.c.source, inner.c.key)
    )
    parsed = ControlsTexts()
    for r in conn.execute(q):
        c = r.controls
        controls = parsed[c]
        yield (r.source, r.scope, r.region, r.service, r.check_id, r.resource_id, r.status,
               controls, r.evidence_hash, r.seen_at, r.key, bool(r.whole))


def groups(
    conn: Connection, rule_checks: Collection[str], rel: Any = findings_in_force
) -> list[tuple[Any, ...]]:
    """The rows not taken one by one, counted per (controls, status, unit): controls
    text, status, source, scope, region, service, count, oldest and newest observation
    (capped by the evidence's as-of, ``seen_at``, as in
    :func:`store.snapshots.light_rows_at`)."""
    cur = rel.c
    keys = (cur.controls, cur.status, cur.source, cur.scope, cur.region, cur.service)
    q = (
        select(*keys, func.count(), func.min(cur.seen_at), func.max(cur.seen_at))
        .where(cur.status.is_not(None), ~_one_by_one(cur, rule_checks))
        .group_by(*keys)
    )
    return [tuple(r) for r in conn.execute(q)]


def evidence_counts(conn: Connection, rel: Any = findings_in_force) -> dict[str, int]:
    """Per control, the distinct evidence its findings in force were judged on."""
    from sqlalchemy import cast, distinct, true
    from sqlalchemy.dialects.postgresql import JSONB

    cur = rel.c
    if conn.dialect.name == "postgresql":
        each = func.jsonb_array_elements_text(cast(cur.controls, JSONB)).table_valued(
            "value").lateral()
    else:
        each = func.json_each(cur.controls).table_valued("value")
    q = (
        select(each.c.value, func.count(distinct(cur.evidence_hash)))
        .select_from(rel.join(each, true()))
        .where(cur.status.is_not(None), cur.evidence_hash.is_not(None),
               cur.evidence_hash != "")
        .group_by(each.c.value)
    )
    return {str(cid): int(n) for cid, n in conn.execute(q)}


#: The order a control page lists findings in: failing first (``excepted`` is a failure
#: an exception covers, decided per row after the read, so it sorts with ``fail``).
PAGE_RANK = {"fail": 0, "error": 1, "pass": 3, "not_applicable": 4}


def page_key(row: dict[str, Any]) -> tuple[int, str, str, str]:
    """A finding's place in the page order (the keyset a page continues after)."""
    return (PAGE_RANK.get(row["status"], 9), row["check_id"], row["source"], row["key"])


def findings_page(
    conn: Connection,
    rel: Any,
    check_ids: Collection[str],
    control: str,
    after: tuple[int, str, str, str] | None,
    limit: int,
) -> tuple[list[dict[str, Any]], tuple[int, str, str, str] | None]:
    """Up to ``limit`` findings of ``rel`` (see ``store.snapshots.in_force``) of ``check_ids`` that
    count for ``control``, in :func:`page_key` order after ``after``, and the key to
    continue after (None: the last page). One ordered read of the page, not of every
    finding; the rows are those of :func:`current_findings`."""
    from sqlalchemy import case, tuple_

    from store.schema import findings

    if not check_ids:
        return [], None
    cur = rel.c
    rank = case(PAGE_RANK, value=cur.status, else_=9)
    needle = json.dumps(control).replace("/", "//").replace("%", "/%").replace("_", "/_")
    q = (
        select(findings)
        .select_from(rel.join(findings, findings.c.id == cur.finding_id))
        .where(
            cur.status.is_not(None),
            cur.check_id.in_(sorted(check_ids)),
            # A cheap filter in SQL; each row's list is checked exactly below.
            cur.controls.like(f"%{needle}%", escape="/"),
        )
        .order_by(rank, cur.check_id, cur.source, cur.key)
        .limit(limit + 1)
    )
    if after is not None:
        q = q.where(tuple_(rank, cur.check_id, cur.source, cur.key) > tuple_(*after))
    read = [dict(r) for r in conn.execute(q).mappings()]
    more = page_key(read[limit - 1]) if len(read) > limit else None
    rows = [_page_row(row) for row in read[:limit]]
    return [r for r in rows if control in r["controls"]], more


def _page_row(row: Any) -> dict[str, Any]:
    """A ``findings`` row as a page gives it: its columns, ``controls`` parsed."""
    out = {c: row[c] for c in _FI_COLS}
    out["controls"] = json.loads(out["controls"])
    return out


def rows_by_id(conn: Connection, ids: Sequence[int]) -> list[dict[str, Any]]:
    """The ``findings`` rows of ``ids``, in that order, as :func:`findings_page` gives
    them (``controls`` parsed)."""
    from store.schema import findings

    if not ids:
        return []
    by_id = {r["id"]: r for r in conn.execute(
        select(findings).where(findings.c.id.in_(list(ids)))).mappings()}
    return [_page_row(by_id[i]) for i in ids]


def touching(check_col: Any, controls_text: Any, checks: Collection[str],
             controls: Collection[str]) -> Any:
    """SQL: the row can count for ``controls``: one of their ``checks``, or a stored
    mapping naming one of them (it may differ from today's, hence both conditions)."""
    from sqlalchemy import or_

    return or_(
        check_col.in_(sorted(checks) or [""]),
        *(controls_text.contains(f'"{cid}"') for cid in controls),
    )

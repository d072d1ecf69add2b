"""Point-in-time reads: every one answerable at any instant (``at``; default: now).

The latest version of an item at instant T is its row with the greatest
``observed_at``/``collected_at`` not after T; a tombstone there means the item was gone.

Point in time, fast: the distinct keys of a source are walked with a loose index scan
(a recursive CTE doing one ``min(key) > previous`` probe per key) and each key's
version at T is one probe of ``(source, key, time, id)`` (migration 0003). The cost
grows with the number of *items*, not with the length of their history.

Control status is built on these reads in :mod:`store.status` (the instant) and
:mod:`store.timelines` (the replay over a period); exceptions in :mod:`store.exceptions`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, and_, bindparam, case, func, select, text

from core.records import utcnow
from core.times import day_or_instant
from store.manual_records import ManualRecord
from store.schema import (
    EVIDENCE_FIELDS,
    FINDING_FIELDS,
    ControlsTexts,
    UTCDateTime,
    blobs,
    evidence,
    findings,
    run_units,
    runs,
    sealed,
    sealed_sql,
)
from store.views import MANUAL_SOURCE

#: Execution options of the long reads a replay streams (rows fetched in batches).
STREAM = {"yield_per": 5000}

FINDING_COLUMNS = ("id", "run_id", *FINDING_FIELDS, "observed_at", "finding_hash")
_EV_COLS = ("id", "run_id", *EVIDENCE_FIELDS, "collected_at", "source_updated_at")


# -- point in time: findings and evidence ------------------------------------------------


def _sources(conn: Connection, source: str | None) -> list[str]:
    if source:
        return [source]
    # The runs table is small (one row per run); the history tables are not.
    return [r[0] for r in conn.execute(select(runs.c.source).distinct().order_by(runs.c.source))]


def _latest_sql(
    table: str,
    time_col: str,
    cols: Iterable[str],
    extra_cols: str = "",
    extra_join: str = "",
    *,
    postgresql: bool = False,
    key_range: bool = False,
) -> str:
    """Each key's latest version at ``:at`` for one ``:source``: key walk + one probe per key.

    PostgreSQL runs the probe as a ``LATERAL`` subquery (about a quarter faster there);
    SQLite has no ``LATERAL`` and resolves the same probe as a correlated scalar.
    ``key_range``: walk only the keys in ``[:lo, :hi)`` (a finding key starts with its
    check id, so one check's findings are one range of the index).
    """
    names = ", ".join(f"t.{c}" for c in cols)
    bound = " AND key >= :lo AND key < :hi" if key_range else ""
    xbound = " AND x.key < :hi" if key_range else ""
    keys = (
        "WITH RECURSIVE k(key) AS ("
        f" SELECT min(key) FROM {table} WHERE source = :source{bound}"
        " UNION ALL"
        f" SELECT (SELECT min(x.key) FROM {table} x WHERE x.source = :source AND x.key > k.key"
        f"{xbound})"
        " FROM k WHERE k.key IS NOT NULL)"
    )
    probe = (
        f"FROM {table} y WHERE y.source = :source AND y.key = k.key"
        f" AND y.{time_col} <= :at AND {sealed_sql('y')}"
        f" ORDER BY y.{time_col} DESC, y.id DESC LIMIT 1"
    )
    if postgresql:
        return (
            f"{keys} SELECT {names}{extra_cols} FROM k CROSS JOIN LATERAL "
            f"(SELECT * {probe}) t{extra_join}"
        )
    return (
        f"{keys} SELECT {names}{extra_cols} FROM k JOIN {table} t ON t.id = ("
        f" SELECT y.id {probe}){extra_join}"
    )


def _typed(sql: str, table: Any, cols: Iterable[str], *more: Any) -> Any:
    return (
        text(sql)
        .bindparams(bindparam("at", type_=UTCDateTime()))
        .columns(*(table.c[c] for c in cols), *more)
    )


def _bytewise_keys(conn: Connection) -> bool:
    """Whether text keys sort by code point (key ranges are then exact): always on SQLite;
    on PostgreSQL only under the C collation (a linguistic one may ignore the ``|``)."""
    if conn.dialect.name != "postgresql":
        return True
    coll = conn.execute(
        text("SELECT datcollate FROM pg_database WHERE datname = current_database()")
    ).scalar()
    return str(coll).split(".")[0] in ("C", "POSIX")


def findings_at(
    conn: Connection,
    at: datetime | None = None,
    *,
    check_id: str | None = None,
    source: str | None = None,
    status: str | None = None,
    check_ids: Collection[str] | None = None,
) -> Iterator[dict[str, Any]]:
    """Current findings at ``at`` (tombstoned ones excluded), streamed per source.

    ``check_ids`` walks only those checks' key ranges (a finding key starts with
    ``check_id|``), so the cost follows their findings, not the whole source.
    """
    at = at or utcnow()
    from store.current import current_findings
    from store.snapshots import in_force

    rel = in_force(conn, at)
    if rel is not None:  # the materialised findings in force answer ``at`` exactly
        yield from current_findings(
            conn, rel=rel, check_id=check_id, source=source, status=status,
            check_ids=check_ids,
        )
        return
    yield from _findings_walk(conn, at, check_id, source, status, check_ids)


def _findings_walk(
    conn: Connection,
    at: datetime,
    check_id: str | None,
    source: str | None,
    status: str | None,
    check_ids: Collection[str] | None,
) -> Iterator[dict[str, Any]]:
    pg = conn.dialect.name == "postgresql"
    ranged = check_ids is not None and not check_id and _bytewise_keys(conn)
    sql = _latest_sql("findings", "observed_at", FINDING_COLUMNS, postgresql=pg, key_range=ranged)
    sql += " WHERE t.status IS NOT NULL"
    if check_id:
        sql += " AND t.check_id = :check_id"
    if status:
        sql += " AND t.status = :status"
    sql += " ORDER BY t.check_id, t.key"
    q = _typed(sql, findings, FINDING_COLUMNS)
    params: dict[str, Any] = {"at": at}
    if check_id:
        params["check_id"] = check_id
    if status:
        params["status"] = status
    # "}" is the character after "|": [check|, check}) holds exactly check's keys.
    ranges = [{"lo": f"{c}|", "hi": f"{c}}}"} for c in sorted(check_ids or ())] if ranged else [{}]
    rows: list[dict[str, Any]] = []
    for src in _sources(conn, source):
        for bounds in ranges:
            for row in conn.execute(q, {**params, **bounds, "source": src}).mappings():
                if check_ids is not None and row["check_id"] not in check_ids:
                    continue
                out = dict(row)
                out["controls"] = json.loads(out["controls"])
                rows.append(out)
    rows.sort(key=lambda r: (r["check_id"], r["source"], r["key"]))
    yield from rows


def control_findings_page(
    conn: Connection,
    at: datetime,
    check_ids: Collection[str],
    control: str,
    after: tuple[int, str, str, str] | None,
    limit: int,
) -> tuple[list[dict[str, Any]], tuple[int, str, str, str] | None]:
    """One page of the findings in force at ``at`` of ``check_ids`` that count for
    ``control``, failing first (``store.current.page_key`` order), after the key
    ``after``; and the key the next page starts after (None: this is the last).

    Read from the findings held in memory at a past ``at`` when its control's status read
    them just before (``store.snapshots.held_page``), else from the materialised findings
    in force when they answer ``at`` (``store.current.in_force``: the page costs its own
    rows), else from the walk.
    """
    from store.current import findings_page, page_key, trusted
    from store.snapshots import held_page, in_force

    if not trusted(conn, at):
        held = held_page(conn, at, check_ids, control, after, limit)
        if held is not None:
            return held
    rel = in_force(conn, at, check_ids)
    if rel is not None:
        return findings_page(conn, rel, check_ids, control, after, limit)
    found = sorted(
        (f for f in _findings_walk(conn, at, None, None, None, check_ids)
         if control in f["controls"]),
        key=page_key,
    )
    if after is not None:
        found = [f for f in found if page_key(f) > after]
    more = page_key(found[limit - 1]) if len(found) > limit else None
    return found[:limit], more


_LIGHT = (
    "source",
    "scope",
    "region",
    "service",
    "check_id",
    "resource_id",
    "status",
    "controls",
    "evidence_hash",
    "observed_at",
)


def findings_light(conn: Connection, at: datetime) -> Iterator[tuple[Any, ...]]:
    """Findings in force at ``at`` as tuples of :data:`_LIGHT` (the hot path), the
    observation time capped by the as-of of the evidence version judged (its
    ``source_updated_at``: a verdict on an inventory's record is no fresher than it).

    Control lists repeat (one per check), so each distinct JSON text is parsed once.
    """
    pg = conn.dialect.name == "postgresql"
    sql = _latest_sql(
        "findings",
        "observed_at",
        _LIGHT,
        ", e.source_updated_at AS source_updated_at",
        " LEFT JOIN evidence e ON e.id = t.evidence_id",
        postgresql=pg,
    )
    sql += " WHERE t.status IS NOT NULL"
    q = _typed(sql, findings, _LIGHT, evidence.c.source_updated_at)
    parsed = ControlsTexts()
    for src in _sources(conn, None):
        for row in conn.execute(q, {"at": at, "source": src}):
            c = row[7]
            controls = parsed[c]
            observed, as_of = row[9], row[10]
            if as_of is not None and as_of < observed:
                observed = as_of
            yield (*row[:7], controls, row[8], observed)


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
    pg = conn.dialect.name == "postgresql"
    if with_payload:
        sql = _latest_sql(
            "evidence",
            "collected_at",
            _EV_COLS,
            ", b.body AS body",
            " LEFT JOIN blobs b ON b.hash = t.content_hash",
            postgresql=pg,
        )
    else:
        sql = _latest_sql("evidence", "collected_at", _EV_COLS, postgresql=pg)
    sql += " WHERE t.content_hash IS NOT NULL"
    params: dict[str, Any] = {"at": at}
    if resource:
        sql += " AND t.resource_id LIKE :resource ESCAPE '/'"
        esc = resource.replace("/", "//").replace("%", "/%").replace("_", "/_")
        params["resource"] = f"%{esc}%"
    if resource_type:
        sql += " AND t.resource_type = :rtype"
        params["rtype"] = resource_type
    if content_hash:
        sql += " AND t.content_hash = :chash"
        params["chash"] = content_hash
    sql += " ORDER BY t.key"
    more = [blobs.c.body] if with_payload else []
    q = _typed(sql, evidence, _EV_COLS, *more)
    for src in _sources(conn, source):
        for row in conn.execute(q, {**params, "source": src}).mappings():
            out = dict(row)
            if with_payload:
                body = out.pop("body")
                out["payload"] = json.loads(body) if body is not None else None
                out["body_removed"] = body is None
            yield out


def item_versions(
    conn: Connection, source: str, key: str, at: datetime | None = None, *,
    kind: str = "evidence",
) -> list[dict[str, Any]]:
    """Every version of one evidence item (``kind="findings"``: one finding) recorded by
    ``at``, oldest first (sealed runs only); a tombstone (``content_hash`` / ``status``
    None) says the item was no longer seen.

    One range of the ``(source, key, id)`` index: cheap however long the history.
    """
    at = at or utcnow()
    table, cols, time_col = (
        (evidence, _EV_COLS, "collected_at") if kind == "evidence"
        else (findings, FINDING_COLUMNS, "observed_at")
    )
    q = (
        select(*(table.c[c] for c in cols))
        .where(
            table.c.source == source,
            table.c.key == key,
            table.c[time_col] <= at,
            sealed(table),
        )
        .order_by(table.c[time_col], table.c.id)
    )
    out = [dict(r) for r in conn.execute(q).mappings()]
    if kind != "evidence":
        for r in out:
            r["controls"] = json.loads(r["controls"])
    return out


def unit_confirmation(finished_at: Any, source_as_of: Any) -> Any:
    """SQL: the time a clean read confirms its unit as of — the run's finish, or the
    source's as-of when the unit was read from an inventory older than that (migration
    0007; docs/concepts.md "Stale")."""
    return case(
        (
            and_(source_as_of.is_not(None), source_as_of < finished_at),
            source_as_of,
        ),
        else_=finished_at,
    )


def last_ok_units(conn: Connection, at: datetime) -> dict[tuple[str, str, str, str], datetime]:
    """(source, scope, region, service) → what the latest clean read by ``at`` confirms:
    its run's finish time, or its inventory's as-of (``source_as_of``) if older.

    The *latest* read, not the freshest confirmation of any read: a read from an older
    inventory snapshot than an earlier direct read vouches only for its snapshot (for
    direct reads the two are the same, the latest finish time).
    """
    keys = (runs.c.source, run_units.c.scope, run_units.c.region, run_units.c.service)
    clean = (
        run_units.c.ok.is_(True),
        runs.c.digest.is_not(None),
        runs.c.finished_at.is_not(None),
        runs.c.finished_at <= at,
    )
    joined = run_units.join(runs, runs.c.id == run_units.c.run_id)
    latest = (
        select(*keys, func.max(runs.c.finished_at).label("fin"))
        .select_from(joined)
        .where(*clean)
        .group_by(*keys)
        .subquery()
    )
    q = (
        select(
            *keys,
            func.min(unit_confirmation(runs.c.finished_at, run_units.c.source_as_of)),
        )
        .select_from(
            joined.join(
                latest,
                and_(
                    latest.c.source == runs.c.source,
                    latest.c.scope == run_units.c.scope,
                    latest.c.region == run_units.c.region,
                    latest.c.service == run_units.c.service,
                    latest.c.fin == runs.c.finished_at,
                ),
            )
        )
        .where(*clean)
        .group_by(*keys)
    )
    found: dict[tuple[str, str, str, str], datetime] = {}
    for source, scope, region, service, confirmed in conn.execute(q):
        found[(source, scope, region, service)] = confirmed
    return found


def confirmed_at(
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


# -- populations over a period -------------------------------------------------------------


def _population(
    conn: Connection,
    table: Any,
    time_col: str,
    cols: tuple[str, ...],
    start: datetime,
    end: datetime,
    *,
    alive_col: str,
    source: str | None = None,
    where: Callable[[dict[str, Any]], bool] | None = None,
) -> list[dict[str, Any]]:
    """Every version in force at some instant of ``[start, end]``, with valid_from/valid_to.

    ``valid_to`` is when the next version (or the tombstone) replaced it, if that
    happened by ``end``; ``None`` means still in force at ``end``.
    """
    base = _latest_sql(table.name, time_col, cols, postgresql=conn.dialect.name == "postgresql")
    q = _typed(base, table, cols)
    tcol = table.c[time_col]
    pq = (
        select(*(table.c[c] for c in cols))
        .where(tcol > start, tcol <= end, sealed(table))
        .order_by(tcol, table.c.id)
    )
    if source:
        pq = pq.where(table.c.source == source)
    later = [dict(r) for r in conn.execute(pq, execution_options=STREAM).mappings()]
    versions: list[dict[str, Any]] = []
    for src in _sources(conn, source):
        versions.extend(dict(r) for r in conn.execute(q, {"at": start, "source": src}).mappings())
    versions.extend(later)
    versions.sort(key=lambda r: (r["source"], r["key"], r[time_col], r["id"]))
    out: list[dict[str, Any]] = []
    for i, row in enumerate(versions):
        nxt = versions[i + 1] if i + 1 < len(versions) else None
        same = nxt is not None and nxt["source"] == row["source"] and nxt["key"] == row["key"]
        if row[alive_col] is None:
            continue  # a tombstone ends the previous version; it is not itself in force
        row["valid_from"] = row[time_col]
        row["valid_to"] = nxt[time_col] if same and nxt is not None else None
        if where is None or where(row):
            out.append(row)
    return out


def findings_in_period(
    conn: Connection,
    start: datetime,
    end: datetime,
    *,
    check_id: str | None = None,
    source: str | None = None,
    status: str | None = None,
) -> list[dict[str, Any]]:
    """The population of finding versions in force during ``[start, end]``."""

    def keep(r: dict[str, Any]) -> bool:
        return (check_id is None or r["check_id"] == check_id) and (
            status is None or r["status"] == status
        )

    rows = _population(
        conn,
        findings,
        "observed_at",
        FINDING_COLUMNS,
        start,
        end,
        alive_col="status",
        source=source,
        where=keep,
    )
    for r in rows:
        r["controls"] = json.loads(r["controls"])
    rows.sort(key=lambda r: (r["check_id"], r["source"], r["key"], r["valid_from"]))
    return rows


def evidence_in_period(
    conn: Connection,
    start: datetime,
    end: datetime,
    *,
    source: str | None = None,
    resource: str | None = None,
    resource_type: str | None = None,
    content_hash: str | None = None,
) -> list[dict[str, Any]]:
    """The population of evidence versions in force during ``[start, end]`` (no bodies)."""

    def keep(r: dict[str, Any]) -> bool:
        return (
            (resource is None or resource in r["resource_id"])
            and (resource_type is None or r["resource_type"] == resource_type)
            and (content_hash is None or r["content_hash"] == content_hash)
        )

    rows = _population(
        conn,
        evidence,
        "collected_at",
        _EV_COLS,
        start,
        end,
        alive_col="content_hash",
        source=source,
        where=keep,
    )
    rows.sort(key=lambda r: (r["source"], r["key"], r["valid_from"]))
    return rows


def bodies(conn: Connection, hashes: Iterable[str]) -> dict[str, str]:
    """Stored bodies of ``hashes`` (a removed body is simply absent)."""
    wanted = sorted(set(hashes))
    out: dict[str, str] = {}
    for i in range(0, len(wanted), 500):
        chunk = wanted[i : i + 500]
        q = select(blobs.c.hash, blobs.c.body).where(blobs.c.hash.in_(chunk))
        for h, body in conn.execute(q):
            out[h] = body
    return out


# -- manual evidence (read side; writing is store.manual) -----------------------------------


def _manual_from(row: Mapping[str, Any], body: str | None) -> ManualRecord | None:
    if body is None:
        return None
    p = json.loads(body)
    return ManualRecord(
        key=row["key"],
        control=p["control"],
        filename=p["filename"],
        file_sha256=p["file_sha256"],
        size=int(p["size"]),
        note=p.get("note", ""),
        added_by=p["added_by"],
        recorded_at=row["collected_at"],
        valid_from=day_or_instant(p["valid_from"], end_of_day=False),
        valid_until=day_or_instant(p["valid_until"], end_of_day=False),
        content_hash=row["content_hash"],
        run_id=row["run_id"],
    )


def manual_history(conn: Connection) -> list[tuple[datetime, str, ManualRecord | None]]:
    """Every manual evidence version ``(recorded_at, key, record or None=tombstone)``."""
    q = (
        select(evidence, blobs.c.body)
        .select_from(evidence.outerjoin(blobs, blobs.c.hash == evidence.c.content_hash))
        .where(
            evidence.c.source == MANUAL_SOURCE,
            evidence.c.resource_type == "manual.evidence",
            sealed(evidence),
        )
        .order_by(evidence.c.collected_at, evidence.c.id)
    )
    out: list[tuple[datetime, str, ManualRecord | None]] = []
    for row in conn.execute(q).mappings():
        out.append((row["collected_at"], row["key"], _manual_from(row, row["body"])))
    return out


def manual_at(conn: Connection, at: datetime | None = None) -> list[ManualRecord]:
    """Manual evidence records in force (latest version of each) at ``at``."""
    at = at or utcnow()
    current: dict[str, ManualRecord | None] = {}
    for t, key, rec in manual_history(conn):
        if t <= at:
            current[key] = rec
    return [r for r in current.values() if r is not None]


def list_runs(
    conn: Connection, *, source: str | None = None, limit: int = 50, at: datetime | None = None
) -> list[dict[str, Any]]:
    """The latest ``limit`` runs, newest first; ``at``: those started by then."""
    q = select(runs).order_by(runs.c.started_at.desc()).limit(limit)
    if source:
        q = q.where(runs.c.source == source)
    if at is not None:
        q = q.where(runs.c.started_at <= at)
    rows = []
    for row in conn.execute(q).mappings():
        r = dict(row)
        r["counts"] = json.loads(r["counts"]) if r["counts"] else {}
        r["errors"] = json.loads(r["errors"]) if r["errors"] else []
        rows.append(r)
    return rows

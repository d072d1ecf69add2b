"""Read-side queries, every one answerable at any instant (``at``; default: now).

The latest version of an item at instant T is its row with the greatest
``observed_at``/``collected_at`` not after T; a tombstone there means the item was gone.

Point in time, fast: the distinct keys of a source are walked with a loose index scan
(a recursive CTE doing one ``min(key) > previous`` probe per key) and each key's
version at T is one probe of ``(source, key, time, id)`` (migration 0003). The cost
grows with the number of *items*, not with the length of their history.

Control status is computed in one place, :func:`combine_status`, from the findings in
force (each finding counts for the controls stored with it, i.e. the mapping in force
when it was written), the exceptions file, manual evidence and the freshness of unit
reads. Both the instant view (:func:`control_statuses`) and the period replay
(:func:`control_timelines`) call it, so ``--at T`` and a history over a period can
never disagree about T.
"""

from __future__ import annotations

import fnmatch
import heapq
import json
import tomllib
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    Text,
    and_,
    bindparam,
    case,
    cast,
    func,
    or_,
    select,
    text,
)

from core.records import utcnow
from store.manual_records import ManualRecord
from store.schema import (
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

CONTROL_STATUSES = (
    "fail",
    "error",
    "stale",
    "undocumented",
    "excepted",
    "pass",
    "not_applicable",
    "no_evidence",
    "manual",
)
#: Severity order used for "worst status over a period" (first is worst).
STATUS_RANK = {s: i for i, s in enumerate(CONTROL_STATUSES)}
MAX_LISTED = 50
_STREAM = {"yield_per": 5000}

_FI_COLS = (
    "id",
    "run_id",
    "source",
    "key",
    "check_id",
    "scope",
    "region",
    "service",
    "resource_type",
    "resource_id",
    "status",
    "severity",
    "message",
    "evidence_hash",
    "controls",
    "mapping_digest",
    "observed_at",
    "finding_hash",
)
_EV_COLS = (
    "id",
    "run_id",
    "source",
    "key",
    "scope",
    "region",
    "service",
    "resource_type",
    "resource_id",
    "content_hash",
    "collected_at",
    "source_updated_at",
)


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
    from store.current import current_findings, trusted

    if trusted(conn, at):  # the materialised findings in force answer ``at`` exactly
        yield from current_findings(
            conn, check_id=check_id, source=source, status=status, check_ids=check_ids
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
    sql = _latest_sql("findings", "observed_at", _FI_COLS, postgresql=pg, key_range=ranged)
    sql += " WHERE t.status IS NOT NULL"
    if check_id:
        sql += " AND t.check_id = :check_id"
    if status:
        sql += " AND t.status = :status"
    sql += " ORDER BY t.check_id, t.key"
    q = _typed(sql, findings, _FI_COLS)
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


def _findings_light(conn: Connection, at: datetime) -> Iterator[tuple[Any, ...]]:
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
    parsed: dict[str, list[str]] = {}
    for src in _sources(conn, None):
        for row in conn.execute(q, {"at": at, "source": src}):
            c = row[7]
            controls = parsed.get(c)
            if controls is None:
                controls = parsed[c] = json.loads(c)
            observed, as_of = row[9], row[10]
            if as_of is not None and as_of < observed:
                observed = as_of
            yield (*row[:7], controls, row[8], observed)


def _in_force(conn: Connection, at: datetime) -> Iterator[tuple[Any, ...]]:
    """:func:`_findings_light` at ``at``, read from the materialised findings in force
    (``store.current``) when it is current and nothing in it is after ``at``; the walk
    otherwise (a past instant, or a table behind the runs) — same rows, same order."""
    from store.current import current_light, trusted

    return current_light(conn) if trusted(conn, at) else _findings_light(conn, at)


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
        else (findings, _FI_COLS, "observed_at")
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
    later = [dict(r) for r in conn.execute(pq, execution_options=_STREAM).mappings()]
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
        _FI_COLS,
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


# -- exceptions ------------------------------------------------------------------------------


class ExceptionsError(ValueError):
    """The exceptions file is invalid: file, entry and reason (the CLI exits 2)."""

    def __init__(self, file: str, entry: str, reason: str) -> None:
        self.file = file
        self.entry = entry
        self.reason = reason
        super().__init__(f"{file}: {entry}: {reason}")


@dataclass(frozen=True)
class ExceptionRule:
    """An approved, time-boxed exception: matching failures are ``excepted`` until expiry.

    ``resource`` is a shell-style glob on the resource id (``*``, ``?``, ``[..]``),
    matched case-sensitively. ``starts`` (optional, the approval date) bounds it on the
    other side so that a past instant is answered as it was then.

    ``recorded_at``/``revoked_at``: when Annexa recorded the decision and when it was
    withdrawn (see :mod:`store.decisions`). It applies only in between, whatever its
    ``starts`` says: a backdated approval never changes what an earlier answer was.
    """

    id: str
    check: str
    resource: str
    reason: str
    approved_by: str
    expires: datetime
    starts: datetime | None = None
    source: str | None = None
    scope: str | None = None
    recorded_at: datetime | None = None
    revoked_at: datetime | None = None

    @property
    def backdated(self) -> bool:
        """Approved (on paper) before the day Annexa first recorded it."""
        return (
            self.starts is not None
            and self.recorded_at is not None
            and self.starts.date() < self.recorded_at.date()
        )

    @property
    def effective_from(self) -> datetime | None:
        bounds = [t for t in (self.starts, self.recorded_at) if t is not None]
        return max(bounds) if bounds else None

    @property
    def effective_until(self) -> datetime:
        return self.expires if self.revoked_at is None else min(self.expires, self.revoked_at)

    def matches(self, f: Mapping[str, Any]) -> bool:
        return (
            f["check_id"] == self.check
            and (self.source is None or f["source"] == self.source)
            and (self.scope is None or f["scope"] == self.scope)
            and fnmatch.fnmatchcase(str(f["resource_id"]), self.resource)
        )

    def active(self, at: datetime) -> bool:
        start = self.effective_from
        return (start is None or start <= at) and at < self.effective_until

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "check": self.check,
            "resource": self.resource,
            "reason": self.reason,
            "approved_by": self.approved_by,
            "starts": self.starts.isoformat() if self.starts else None,
            "expires": self.expires.isoformat(),
            "source": self.source,
            "scope": self.scope,
            "recorded_at": self.recorded_at.isoformat() if self.recorded_at else None,
            "revoked_at": self.revoked_at.isoformat() if self.revoked_at else None,
            "backdated": self.backdated,
        }


_EXC_KEYS = {
    "id",
    "check",
    "resource",
    "reason",
    "approved_by",
    "expires",
    "approved_on",
    "source",
    "scope",
}
_EXC_REQUIRED = ("check", "resource", "reason", "approved_by", "expires")


def _instant(value: Any, *, end_of_day: bool) -> datetime:
    """A TOML date (whole day: ``end_of_day`` → next midnight UTC) or date-time (UTC)."""
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    if isinstance(value, date):
        d = value + timedelta(days=1) if end_of_day else value
        return datetime.combine(d, time(0), tzinfo=UTC)
    if isinstance(value, str):
        try:
            return _instant(
                datetime.fromisoformat(value.replace("Z", "+00:00")), end_of_day=end_of_day
            )
        except ValueError:
            pass
        try:
            return _instant(date.fromisoformat(value), end_of_day=end_of_day)
        except ValueError:
            pass
    raise ValueError(f"{value!r} is not a date (2027-06-30) or date-time")


def load_exceptions(path: str | Path, known_checks: Collection[str]) -> list[ExceptionRule]:
    """Parse and validate an exceptions file; raise :class:`ExceptionsError` on any problem.

    Format (TOML)::

        [[exception]]
        id = "EX-12"                       # optional, default exception[N]
        check = "aws.s3.bucket_default_encryption"
        resource = "legacy-*"              # glob on the resource id
        reason = "Legacy export bucket, decommissioned in Q1 (CHG-1234)"
        approved_by = "CISO, J. Doe"
        approved_on = 2026-10-01           # optional: not excepted before this date
        expires = 2027-01-31               # a date: excepted through that whole day
        source = "prod"                    # optional: only this connector instance
        scope = "123456789012"             # optional: only this account / org / tenant
    """
    p = Path(path)
    file = str(p)
    try:
        doc = tomllib.loads(p.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ExceptionsError(file, "<file>", f"cannot be read: {exc.strerror or exc}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ExceptionsError(file, "<file>", f"invalid TOML: {exc}") from None
    for key in doc:
        if key != "exception":
            raise ExceptionsError(
                file, "<file>", f"unknown top-level key {key!r} (expected [[exception]] tables)"
            )
    items = doc.get("exception", [])
    if not isinstance(items, list):
        raise ExceptionsError(file, "exception", "must be an array of tables ([[exception]])")
    rules: list[ExceptionRule] = []
    ids: set[str] = set()
    for n, item in enumerate(items, start=1):
        entry = f"exception[{n}]"
        if not isinstance(item, dict):
            raise ExceptionsError(file, entry, "must be a table")
        for key in item:
            if key not in _EXC_KEYS:
                raise ExceptionsError(
                    file, entry, f"unknown key {key!r} (allowed: {', '.join(sorted(_EXC_KEYS))})"
                )
        for key in _EXC_REQUIRED:
            if key not in item:
                raise ExceptionsError(file, entry, f"missing key {key!r}")
        for key in ("id", "check", "resource", "reason", "approved_by", "source", "scope"):
            if key in item and (not isinstance(item[key], str) or not item[key].strip()):
                raise ExceptionsError(file, entry, f"{key!r} must be a non-empty string")
        check = item["check"]
        if check not in known_checks:
            raise ExceptionsError(file, entry, f"unknown check {check!r}")
        try:
            expires = _instant(item["expires"], end_of_day=True)
            starts = (
                _instant(item["approved_on"], end_of_day=False) if "approved_on" in item else None
            )
        except ValueError as exc:
            raise ExceptionsError(file, entry, str(exc)) from None
        if starts is not None and starts >= expires:
            raise ExceptionsError(file, entry, "approved_on is not before expires")
        rid = item.get("id", entry)
        if rid in ids:
            raise ExceptionsError(file, entry, f"duplicate id {rid!r}")
        ids.add(rid)
        rules.append(
            ExceptionRule(
                id=rid,
                check=check,
                resource=item["resource"],
                reason=item["reason"],
                approved_by=item["approved_by"],
                expires=expires,
                starts=starts,
                source=item.get("source"),
                scope=item.get("scope"),
            )
        )
    return rules


def exception_for(
    rules: Iterable[ExceptionRule], f: Mapping[str, Any], at: datetime
) -> ExceptionRule | None:
    """The active exception covering failing finding ``f`` at ``at``, if any."""
    if f.get("status") != "fail":
        return None
    for r in rules:
        if r.active(at) and r.matches(f):
            return r
    return None


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
        valid_from=_instant(p["valid_from"], end_of_day=False),
        valid_until=_instant(p["valid_until"], end_of_day=False),
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


# -- control status ------------------------------------------------------------------------


def combine_status(
    counts: Mapping[str, int],
    *,
    stale_pass: bool,
    manual_valid: int,
    manual_expired: int,
    manual_control: bool,
    has_checks: bool,
    automated_sufficient: bool = False,
) -> str:
    """The one rule that turns a control's inputs into its status.

    A control has two parts: the automated part (its checks' findings) and the
    documented part (a recorded document, e.g. a policy or a test record — manual
    evidence). ``counts`` are the *effective* statuses of its findings in force (a
    failure covered by an active exception counts as ``excepted``). Precedence:
    ``fail`` > ``error`` > ``stale`` > ``undocumented`` > ``excepted`` > ``pass`` >
    ``not_applicable`` > ``manual``/``no_evidence``.

    * A control with checks is ``pass`` only when they pass *and* a valid document is
      recorded — unless its mapping declares the automated part sufficient. Passing
      checks without it: ``undocumented``. A document without passing checks is not
      a pass: the automated part has no evidence (``no_evidence``).
    * A control no check can evidence (``manual_control``) passes on a valid document;
      an expired one without a successor makes it ``stale``.
    """
    if counts.get("fail"):
        return "fail"
    if counts.get("error"):
        return "error"
    automated = has_checks and bool(counts.get("pass") or counts.get("excepted"))
    if automated:
        if counts.get("pass") and stale_pass:
            return "stale"
        if not automated_sufficient and not manual_valid:
            return "undocumented"
        return "excepted" if counts.get("excepted") else "pass"
    if counts.get("not_applicable"):
        return "not_applicable"
    if has_checks:
        return "no_evidence"
    if manual_expired and not manual_valid:
        return "stale"
    if manual_valid:
        return "pass"
    return "manual" if manual_control else "no_evidence"


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
    excepted: list[str] = field(default_factory=list)
    manual_evidence: list[dict[str, Any]] = field(default_factory=list)
    last_confirmed: datetime | None = None
    evidence_items: int = 0
    #: The documented part: ``valid``, ``missing``, ``expired`` or ``not_required``.
    document: str = "missing"
    explanation: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "control": self.id,
            "title": self.title,
            "theme": self.theme,
            "status": self.status,
            "explanation": self.explanation,
            "document": self.document,
            "checks": list(self.checks),
            "manual": self.manual,
            "expected_evidence": self.expected_evidence,
            "counts": self.counts,
            "failing_resources": self.failing,
            "error_scopes": self.erroring,
            "excepted_resources": self.excepted,
            "manual_evidence": self.manual_evidence,
            "evidence_items": self.evidence_items,
            "last_confirmed": self.last_confirmed.isoformat() if self.last_confirmed else None,
        }


@dataclass
class _Acc:
    counts: dict[str, int] = field(default_factory=dict)
    failing: list[str] = field(default_factory=list)
    erroring: list[str] = field(default_factory=list)
    excepted: list[str] = field(default_factory=list)
    oldest_pass_confirmation: datetime | None = None
    unconfirmed_pass: bool = False
    last_confirmed: datetime | None = None
    evidence: set[str] = field(default_factory=set)
    #: Distinct evidence counted by the database (the materialised path), else None.
    evidence_count: int | None = None


def _resource_label(f: Mapping[str, Any]) -> str:
    return f"{f['resource_id']} ({f['check_id']})"


def _accumulate(
    acc: dict[str, _Acc],
    rows: Iterable[tuple[Any, ...]],
    units: Mapping[tuple[str, str, str, str], datetime],
    rules: list[ExceptionRule],
    at: datetime,
    approved_policies: list[tuple[str, str, str]],
) -> None:
    """Add findings in force (tuples of :data:`_LIGHT`) to each of their controls."""
    for (
        source,
        scope,
        region,
        service,
        check_id,
        resource_id,
        status,
        controls,
        eh,
        observed,
        *more,
    ) in rows:
        # ``more``: (key, whole) from the materialised path; a row not whole is only
        # listed (the database counted it with its group).
        whole = not more or more[1]
        if not whole:
            _list_only(acc, controls, status, f"{resource_id} ({check_id})")
            continue
        if check_id == "policies.document.approved" and status == "pass" and eh:
            approved_policies.append((source, resource_id, eh))
        # A finding is confirmed by its own observation, and since by every clean
        # read of its unit (unchanged items write no new row).
        times = [
            x
            for x in (
                units.get((source, scope, region, service)),
                units.get((source, scope, "global", service)),
                observed,
            )
            if x is not None
        ]
        confirmed = max(times) if times else None
        eff = status
        if status == "fail" and rules:
            f = {
                "source": source,
                "scope": scope,
                "check_id": check_id,
                "resource_id": resource_id,
                "status": status,
            }
            if exception_for(rules, f, at):
                eff = "excepted"
        for cid in controls:
            a = acc.get(cid)
            if a is None:
                a = acc[cid] = _Acc()
            a.counts[eff] = a.counts.get(eff, 0) + 1
            if eh:
                a.evidence.add(eh)
            if eff == "pass":
                if confirmed is None:
                    a.unconfirmed_pass = True
                elif (
                    a.oldest_pass_confirmation is None or confirmed < a.oldest_pass_confirmation
                ):
                    a.oldest_pass_confirmation = confirmed
            elif eff in ("fail", "error", "excepted"):
                listed = (
                    a.failing
                    if eff == "fail"
                    else (a.erroring if eff == "error" else a.excepted)
                )
                if len(listed) < MAX_LISTED:
                    listed.append(f"{resource_id} ({check_id})")
            if confirmed and (a.last_confirmed is None or confirmed > a.last_confirmed):
                a.last_confirmed = confirmed


def _list_only(acc: dict[str, _Acc], controls: list[str], status: str, label: str) -> None:
    for cid in controls:
        a = acc.get(cid)
        if a is None:
            a = acc[cid] = _Acc()
        listed = (
            a.failing if status == "fail" else (a.erroring if status == "error" else a.excepted)
        )
        if len(listed) < MAX_LISTED:
            listed.append(label)


def _accumulate_groups(
    acc: dict[str, _Acc],
    groups: Iterable[tuple[Any, ...]],
    units: Mapping[tuple[str, str, str, str], datetime],
) -> None:
    """Add findings counted per (controls, status, unit) — none of them listed, none
    failing — as :func:`_accumulate` would one by one. A finding is confirmed at the
    latest of its unit's clean reads and its own observation, so over a group the
    oldest confirmation is that of its oldest observation, the newest of its newest."""
    parsed: dict[str, list[str]] = {}
    for controls_text, status, source, scope, region, service, n, oldest, newest in groups:
        controls = parsed.get(controls_text)
        if controls is None:
            controls = parsed[controls_text] = json.loads(controls_text)
        read = [
            x for x in (units.get((source, scope, region, service)),
                        units.get((source, scope, "global", service))) if x is not None
        ]
        first, last = max([*read, oldest]), max([*read, newest])
        for cid in controls:
            a = acc.get(cid)
            if a is None:
                a = acc[cid] = _Acc()
            a.counts[status] = a.counts.get(status, 0) + n
            if status == "pass" and (
                a.oldest_pass_confirmation is None or first < a.oldest_pass_confirmation
            ):
                a.oldest_pass_confirmation = first
            if a.last_confirmed is None or last > a.last_confirmed:
                a.last_confirmed = last


def control_statuses(
    engine: Engine,
    index: Any,
    at: datetime | None = None,
    freshness: timedelta = timedelta(days=7),
    *,
    exceptions: Iterable[ExceptionRule] = (),
    materialised: bool = True,
) -> list[ControlStatus]:
    """Every catalog control's status at ``at`` (see :func:`combine_status`).

    A pass whose unit has not been read cleanly within ``freshness`` before ``at``
    is ``stale``; nothing passes by absence. The findings in force come from the
    materialised table when it answers ``at`` exactly (``store.current``);
    ``materialised=False`` always walks the history (the reference it is tested against).
    """
    at = at or utcnow()
    rules = list(exceptions)
    acc: dict[str, _Acc] = {}
    with engine.connect() as conn:
        units = last_ok_units(conn, at)
        manual = manual_at(conn, at)
        approved_policies: list[tuple[str, str, str]] = []
        fast = None
        if materialised:
            from store import current

            fast = current.trusted(conn, at)
        if fast:
            # O(groups): the table aggregated in SQL; only rows that are listed or
            # matched one by one (failures, errors, approved policies) come back as rows.
            checks = {r.check for r in rules if r.active(at)}
            rows = current.listed_rows(conn, checks, MAX_LISTED)
            _accumulate(acc, rows, units, rules, at, approved_policies)
            _accumulate_groups(acc, current.groups(conn, checks), units)
            for cid, n in current.evidence_counts(conn).items():
                acc.setdefault(cid, _Acc()).evidence_count = n
        else:
            _accumulate(acc, _findings_light(conn, at), units, rules, at, approved_policies)
        if approved_policies:
            from store.policy_documents import policy_records

            manual += policy_records(conn, approved_policies)
    by_control: dict[str, list[ManualRecord]] = {}
    for rec in manual:
        by_control.setdefault(rec.control, []).append(rec)
    out: list[ControlStatus] = []
    for cid, control in index.catalog.items():
        checks = index.checks_for(cid)
        is_manual = index.is_manual(cid)
        part = index.documented(cid)
        expected = part.expected_evidence
        a = acc.get(cid) or _Acc()
        recs = [_within_review(r, index) for r in by_control.get(cid, [])]
        recs = [r for r in recs if r is not None]
        valid = [r for r in recs if r.valid(at)]
        expired = [r for r in recs if r.expired(at)]
        stale_pass = a.unconfirmed_pass or (
            a.oldest_pass_confirmation is not None and a.oldest_pass_confirmation < at - freshness
        )
        status = combine_status(
            a.counts,
            stale_pass=stale_pass,
            manual_valid=len(valid),
            manual_expired=len(expired),
            manual_control=is_manual,
            has_checks=bool(checks),
            automated_sufficient=part.automated_sufficient,
        )
        document = (
            "valid"
            if valid
            else "not_required"
            if part.automated_sufficient and checks
            else "expired"
            if expired
            else "missing"
        )
        counts = dict(sorted(a.counts.items()))
        if valid:
            counts["manual_evidence"] = len(valid)
        if expired:
            counts["manual_expired"] = len(expired)
        out.append(
            ControlStatus(
                id=cid,
                title=control.title,
                theme=control.theme,
                status=status,
                checks=tuple(checks),
                manual=is_manual,
                expected_evidence=expected,
                counts=counts,
                failing=a.failing,
                erroring=a.erroring,
                excepted=a.excepted,
                manual_evidence=[
                    {
                        **r.as_dict(),
                        "state": "valid"
                        if r.valid(at)
                        else ("expired" if r.expired(at) else "not_yet_valid"),
                    }
                    for r in recs
                ],
                last_confirmed=a.last_confirmed,
                evidence_items=(
                    len(a.evidence) if a.evidence_count is None else a.evidence_count
                ) + len(valid),
                document=document,
                explanation=explain(status, cid, document, a.counts, expired, part),
            )
        )
    return out


def _within_review(rec: ManualRecord | None, index: Any) -> ManualRecord | None:
    if rec is None or rec.control not in index.catalog:
        return rec
    return rec.within_review(index.documented(rec.control).review_interval)


def explain(
    status: str,
    control: str,
    document: str,
    counts: Mapping[str, int],
    expired: Sequence[ManualRecord],
    part: Any,
) -> str:
    """One sentence saying why a control has its status and what would change it."""
    record = f"`annexa evidence add --control {control} --file …`"
    if status == "undocumented":
        why = (
            f"its document expired on {max(r.valid_until for r in expired):%Y-%m-%d}"
            if document == "expired" and expired
            else "no valid document is recorded"
        )
        return f"checks pass, but {why}; expected: {part.expected_evidence} Record it with {record}"
    if status == "pass":
        if document == "not_required":
            return f"checks pass; the checks alone evidence it: {part.rationale}"
        return (
            "checks pass and a valid document is recorded"
            if counts
            else ("a valid document is recorded (no check can evidence this control)")
        )
    if status == "excepted":
        return "failures are covered by recorded exceptions; the rest passes"
    if status == "fail":
        return f"{counts.get('fail', 0)} finding(s) fail"
    if status == "error":
        return f"{counts.get('error', 0)} check(s) could not be evaluated (read errors)"
    if status == "stale":
        return (
            "its document expired without a successor"
            if not counts
            else "a passing check's source was not read cleanly within the freshness window"
        )
    if status == "no_evidence":
        return "no finding of its checks is in force (no configured source evidences it)" + (
            "; a document alone is half of it" if document == "valid" else ""
        )
    if status == "manual":
        return f"no check can evidence it: record {part.expected_evidence} with {record}"
    return "every finding is not applicable"


# -- control history over a period --------------------------------------------------------


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
                # Its own observation confirms its unit (as in control_statuses), no
                # later than the as-of of the inventory record it was judged on.
                seen = f.get("observed_at")
                as_of = f.get("source_updated_at")
                if seen is not None and as_of is not None and as_of < seen:
                    seen = as_of
                if seen is not None and (u not in self.units or self.units[u] < seen):
                    self.units[u] = seen
            touched.add(cid)
        return touched

    def apply_finding(self, f: dict[str, Any], t: datetime) -> set[str]:
        fk = (f["source"], f["key"])
        touched = self._remove(fk)
        if f["status"] is not None:
            if isinstance(f["controls"], str):
                f["controls"] = json.loads(f["controls"])
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
        # The as-of of the inventory records the findings in force were judged on (only
        # findings judged on one: none for a store of direct reads).
        as_of_by_id = dict(
            conn.execute(
                select(findings.c.id, evidence.c.source_updated_at)
                .select_from(findings.join(evidence, evidence.c.id == findings.c.evidence_id))
                .where(evidence.c.source_updated_at.is_not(None), findings.c.observed_at <= start)
            ).all()
        )
        for f in findings_at(conn, start):
            if (
                check_filter is None
                or f["check_id"] in check_filter
                or set(f["controls"]) & rp.controls
            ):
                f["source_updated_at"] = as_of_by_id.get(f["id"])
                rp.apply_finding(f, start)
        from store.policy_documents import policy_history

        mhist = [
            (t, key, _within_review(rec, index))
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
            select(*(findings.c[c] for c in _FI_COLS), evidence.c.source_updated_at)
            .select_from(
                findings.outerjoin(evidence, evidence.c.id == findings.c.evidence_id)
            )
            .where(findings.c.observed_at > start, findings.c.observed_at <= end, sealed(findings))
            .order_by(findings.c.observed_at, findings.c.id)
        )
        if check_filter is not None:
            # Only the rows that can touch the selected controls (the mapping stored with
            # each row may differ from today's, hence both conditions).
            fq = fq.where(
                or_(
                    findings.c.check_id.in_(sorted(check_filter) or [""]),
                    # As text: the column is jsonb on PostgreSQL (migration 0005).
                    *(cast(findings.c.controls, Text).contains(f'"{cid}"') for cid in selected),
                )
            )
        frows: Iterable[Any] = conn.execute(fq, execution_options=_STREAM).mappings()
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
                f = dict(pending_f)
                if (
                    check_filter is None
                    or f["check_id"] in check_filter
                    or set(json.loads(f["controls"])) & rp.controls
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


def parse_keep(text_value: str) -> timedelta:
    """``3y``, ``18m`` (months), ``90d``, ``12w`` → timedelta (a year is 365 days)."""
    s = text_value.strip().lower()
    units = {"y": 365, "m": 30, "w": 7, "d": 1}
    if len(s) < 2 or s[-1] not in units or not s[:-1].isdigit() or int(s[:-1]) <= 0:
        raise ValueError(f"{text_value!r} is not a duration like 3y, 18m, 12w or 90d")
    return timedelta(days=int(s[:-1]) * units[s[-1]])

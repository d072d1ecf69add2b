"""Tables of the evidence store (SQLAlchemy Core).

History tables (``evidence``, ``findings``, ``blobs``, ``run_units``) are append-only,
enforced by database triggers created in the first migration. ``runs`` rows may be
updated only while their status is ``running``.

A resource's or finding's history is a change log: a row is written only when its
content differs from the latest row for the same ``(source, key)``. A row whose
``content_hash`` (evidence) or ``status`` (findings) is NULL is a tombstone: the item was
no longer observed by a run that read its unit without error.
"""

from __future__ import annotations

import gc
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator, TypeEngine

metadata = MetaData()

# SQLite only auto-increments an INTEGER PRIMARY KEY.
RowId = BigInteger().with_variant(Integer(), "sqlite")


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every engine.

    PostgreSQL stores ``timestamptz``; SQLite stores naive UTC text, which sorts
    correctly as long as every value is UTC.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store; use UTC-aware datetimes")
        value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class UTCInstants(dict[Any, datetime]):
    """Each distinct stored instant converted once, exactly as :class:`UTCDateTime`
    converts it: for a read of thousands of rows selected untyped that repeat a few
    hundred instants (a run's findings share its observation), instead of once per row.
    """

    def __init__(self, dialect: Dialect) -> None:
        super().__init__()
        self._convert = UTCDateTime().dialect_impl(dialect).result_processor(dialect, None)

    def __missing__(self, raw: Any) -> datetime:
        value = self[raw] = self._convert(raw) if self._convert else raw
        return value


@contextmanager
def collection_paused() -> Iterator[None]:
    """No garbage collection while a read builds tens of thousands of rows: 20,000 new
    tuples or dicts otherwise start some thirty collections, and now and then a full one
    of the whole process (20 to 35 ms of a 200 ms read, measured). The next allocation
    after starts one instead. Left as found: a caller that disabled collection keeps it
    so."""
    paused = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if paused:
            gc.enable()


class SignedJSONError(ValueError):
    """A JSON text that the database would not give back exactly as it was signed."""


def canonical_json_text(value: Any) -> str:
    """The one text form of a signed JSON column: what the writers have always written
    (``json.dumps`` with sorted keys, default separators, ASCII escapes)."""
    return json.dumps(value, sort_keys=True)


class SignedJSON(TypeDecorator[str]):
    """A JSON column whose text is covered by a digest (``runs.counts``, ``runs.errors``,
    ``findings.controls``) — ``jsonb`` on PostgreSQL, ``JSON`` on SQLite (migration 0005).

    To Python it is always the *text* the digest was computed over, on both engines:

    * SQLite keeps the text verbatim (its JSON is text).
    * PostgreSQL's ``jsonb`` keeps the value, not the text (keys reordered, spaces
      dropped); the text is re-made with :func:`canonical_json_text`, which is exactly
      what every writer of these columns wrote. A text that would not come back
      identical is refused when written (:class:`SignedJSONError`), so a digest can
      never silently stop matching its row.
    """

    impl = Text
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "postgresql":
            return dialect.type_descriptor(JSONB(none_as_null=True))
        return dialect.type_descriptor(Text())

    def process_bind_param(self, value: str | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if not isinstance(value, str):
            raise SignedJSONError(f"a signed JSON column takes its JSON text, not {type(value)}")
        parsed = json.loads(value)
        if canonical_json_text(parsed) != value or not jsonb_storable(parsed):
            raise SignedJSONError(
                f"JSON text {value[:80]!r} is not in canonical form (json.dumps with sorted "
                "keys) or holds text PostgreSQL cannot store (NUL, lone surrogates)"
            )
        return parsed if dialect.name == "postgresql" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> str | None:
        if value is None or (isinstance(value, str) and dialect.name != "postgresql"):
            return value
        return canonical_json_text(value)


def jsonb_storable(value: Any) -> bool:
    """Whether PostgreSQL's jsonb can hold ``value`` (it refuses NUL and lone surrogates)."""
    if isinstance(value, str):
        if "\x00" in value:
            return False
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return False
        return True
    if isinstance(value, dict):
        return all(jsonb_storable(k) and jsonb_storable(v) for k, v in value.items())
    if isinstance(value, list):
        return all(jsonb_storable(v) for v in value)
    return True


#: The unit a row was read in (connector collect units: account x region x service).
UNIT_COLUMNS = ("scope", "region", "service")
#: Where an evidence or finding row is: its unit, then the resource within it.
PLACE_COLUMNS = (*UNIT_COLUMNS, "resource_type", "resource_id")
#: What an evidence row states: all of its columns but its id, run and times.
EVIDENCE_FIELDS = ("source", "key", *PLACE_COLUMNS, "content_hash")
#: What a finding row states: all of its columns but its id, run, time and hash.
FINDING_FIELDS = (
    "source",
    "key",
    "check_id",
    *PLACE_COLUMNS,
    "status",
    "severity",
    "message",
    "evidence_hash",
    "controls",
    "mapping_digest",
)


def row_id_column() -> Column[int]:
    """A new surrogate key ``id``, numbered by the database."""
    return Column("id", RowId, primary_key=True, autoincrement=True)


def run_row_columns() -> list[Column[Any]]:
    """New ``id`` and ``run_id`` columns: the head of a table whose rows each belong to a run."""
    return [row_id_column(), Column("run_id", String(36), nullable=False)]


def source_row_columns() -> list[Column[Any]]:
    """:func:`run_row_columns`, then ``source``: a run's row about one connector instance."""
    return [*run_row_columns(), Column("source", String(200), nullable=False)]


def unit_columns() -> list[Column[str]]:
    """New ``scope``, ``region``, ``service`` columns (a Column serves one table only)."""
    return [
        Column("scope", String(255), nullable=False),
        Column("region", String(100), nullable=False),
        Column("service", String(100), nullable=False),
    ]


def place_columns() -> list[Column[str]]:
    """New :data:`PLACE_COLUMNS`: the unit, then ``resource_type`` and ``resource_id``."""
    return [
        *unit_columns(),
        Column("resource_type", String(200), nullable=False),
        Column("resource_id", Text, nullable=False),
    ]


runs = Table(
    "runs",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("source", String(200), nullable=False),
    Column("connector_type", String(100), nullable=False),
    Column("status", String(20), nullable=False),
    Column("started_at", UTCDateTime(), nullable=False),
    Column("finished_at", UTCDateTime()),
    Column("heartbeat_at", UTCDateTime()),
    Column("host", String(255)),
    Column("agent_version", String(50), nullable=False),
    Column("config_digest", String(64), nullable=False),
    Column("mapping_digest", String(64), nullable=False),
    # JSON texts inside the signed run header (store.integrity.run_header).
    Column("counts", SignedJSON()),
    Column("errors", SignedJSON()),
    Column("digest", String(64)),
    Column("prev_digest", String(64)),
    # Ed25519 over the digest (core.signing.RUN_DOMAIN), set when the run is sealed.
    Column("signature", Text),
    Column("key_id", String(16)),
)
Index("ix_runs_source_finished", runs.c.source, runs.c.finished_at)

run_units = Table(
    "run_units",
    metadata,
    *run_row_columns(),
    *unit_columns(),
    Column("ok", Boolean, nullable=False),
    Column("error", Text),
    Column("recorded_at", UTCDateTime(), nullable=False),
    # Migration 0007: the oldest ``source_updated_at`` of the evidence the run read in this
    # unit (NULL: all read directly). A clean read confirms the unit's items only as of
    # this time (store.queries.last_ok_units). In the run's manifest when not NULL.
    Column("source_as_of", UTCDateTime()),
)
Index("ix_run_units_run", run_units.c.run_id)

blobs = Table(
    "blobs",
    metadata,
    Column("hash", String(64), primary_key=True),
    Column("body", Text, nullable=False),
    Column("size", Integer, nullable=False),
)

evidence = Table(
    "evidence",
    metadata,
    *source_row_columns(),
    Column("key", Text, nullable=False),
    *place_columns(),
    Column("content_hash", String(64)),
    Column("collected_at", UTCDateTime(), nullable=False),
    # Migration 0007: the time up to which the source vouches for this version's data
    # (``Evidence.source_updated_at``: a bulk inventory's snapshot time); NULL for a
    # direct read. Outside the content hash; in the run's manifest when not NULL.
    Column("source_updated_at", UTCDateTime()),
)
Index("ix_evidence_source_key", evidence.c.source, evidence.c.key, evidence.c.id)
Index("ix_evidence_run", evidence.c.run_id)
Index("ix_evidence_collected", evidence.c.collected_at)
Index("ix_evidence_type", evidence.c.resource_type)

findings = Table(
    "findings",
    metadata,
    *source_row_columns(),
    Column("key", Text, nullable=False),
    Column("check_id", String(200), nullable=False),
    *place_columns(),
    Column("status", String(20)),
    Column("severity", String(20), nullable=False),
    Column("message", Text, nullable=False),
    Column("evidence_hash", String(64)),
    Column("controls", SignedJSON(), nullable=False),
    Column("mapping_digest", String(64), nullable=False),
    Column("observed_at", UTCDateTime(), nullable=False),
    Column("finding_hash", String(64), nullable=False),
    # The evidence version the verdict was judged on (migration 0005; NULL on older rows,
    # and when the verdict rests on no evidence of its own resource). Outside the finding
    # hash, so that no digest changed; `verify` checks it against `evidence_hash`.
    Column("evidence_id", RowId, ForeignKey("evidence.id")),
)


class ControlsTexts(dict[str, Any]):
    """Each distinct stored ``controls`` text (a finding's control list as JSON) parsed
    once: a history repeats a handful of them over hundreds of thousands of rows, and a
    hit is a plain dict lookup. ``make`` shapes the parsed list (``tuple`` where it keys
    a dict)."""

    def __init__(self, make: Callable[[list[str]], Any] = list) -> None:
        super().__init__()
        self._make = make

    def __missing__(self, text: str) -> Any:
        parsed = self[text] = self._make(json.loads(text))
        return parsed
Index("ix_findings_source_key", findings.c.source, findings.c.key, findings.c.id)
Index("ix_findings_run", findings.c.run_id)
Index("ix_findings_observed", findings.c.observed_at)


def sealed_sql(alias: str) -> str:
    """SQL: the row ``alias`` belongs to a sealed run.

    Every read of the history tables goes through this (or :func:`sealed`): a row whose
    run is unknown (an orphan) or still running is not evidence yet, and a forged or
    half-written run must never change what a control's status is.
    """
    return f"EXISTS (SELECT 1 FROM runs r WHERE r.id = {alias}.run_id AND r.digest IS NOT NULL)"


def sealed(table: Table) -> Any:
    """SQLAlchemy: rows of ``table`` that belong to a sealed run (see :func:`sealed_sql`)."""
    from sqlalchemy import exists

    return exists().where(runs.c.id == table.c.run_id, runs.c.digest.is_not(None))


#: Every evidence body removed by ``annexa retention`` (migration 0003; signed since 0004).
retention_log = Table(
    "retention_log",
    metadata,
    row_id_column(),
    Column("hash", String(64), nullable=False),
    Column("size", Integer, nullable=False),
    Column("cutoff", UTCDateTime(), nullable=False),
    Column("keep", String(20), nullable=False),
    Column("removed_at", UTCDateTime(), nullable=False),
    Column("removed_by", String(255), nullable=False),
    Column("token", BigInteger, nullable=False),
    # Ed25519 over the entry (core.signing.RETENTION_DOMAIN), migration 0004.
    Column("signature", Text),
    Column("key_id", String(16)),
)


#: Every public key that signed something, recorded the first time it did (migration 0004).
signing_keys = Table(
    "signing_keys",
    metadata,
    Column("key_id", String(16), primary_key=True),
    Column("algorithm", String(20), nullable=False),
    Column("public_key", Text, nullable=False),
    Column("first_used_at", UTCDateTime(), nullable=False),
)

#: RFC 3161 time-stamp tokens over run digests (migration 0004).
run_timestamps = Table(
    "run_timestamps",
    metadata,
    *run_row_columns(),
    Column("digest", String(64), nullable=False),
    Column("tsa", Text, nullable=False),
    Column("gen_time", UTCDateTime(), nullable=False),
    Column("token", Text, nullable=False),
    Column("recorded_at", UTCDateTime(), nullable=False),
)
Index("ix_run_timestamps_run", run_timestamps.c.run_id)

HISTORY_TABLES = ("evidence", "findings", "blobs", "run_units")

"""Retention: remove old evidence bodies, keep every hash, row and tombstone.

Why bodies only: the digest chain is computed over keys, content hashes and
timestamps, never over bodies, so removing a body leaves every run digest intact and
the history (what existed, when, with which hash) complete. What is lost is the
ability to show the old payload — which is what a retention policy asks for.

A body is removed when no evidence version that uses it was in force at or after the
cutoff (``now - keep``): every version citing the hash was superseded or tombstoned
before the cutoff. A manual file is removed when every record citing it expired
before the cutoff.

The ``blobs`` table stays append-only. Migration 0003 allows exactly one way to
delete a row: in the same transaction, first write a ``retention_log`` row naming it
(PostgreSQL: the transaction id; SQLite: the blob's rowid). ``retention_log`` is
itself append-only, so every removal is on record, and ``annexa verify`` accepts a
missing body only when the log records its removal.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import (
    BigInteger,
    Column,
    Engine,
    Integer,
    String,
    Table,
    bindparam,
    text,
)

from connectors.records import utcnow
from store.schema import RowId, UTCDateTime, metadata
from store.views import MANUAL_SOURCE

retention_log = Table(
    "retention_log",
    metadata,
    Column("id", RowId, primary_key=True, autoincrement=True),
    Column("hash", String(64), nullable=False),
    Column("size", Integer, nullable=False),
    Column("cutoff", UTCDateTime(), nullable=False),
    Column("keep", String(20), nullable=False),
    Column("removed_at", UTCDateTime(), nullable=False),
    Column("removed_by", String(255), nullable=False),
    Column("token", BigInteger, nullable=False),
)

_BATCH = 500


@dataclass(frozen=True)
class RetentionResult:
    cutoff: datetime
    bodies: int
    bytes: int
    dry_run: bool

    def as_dict(self) -> dict[str, object]:
        return {
            "cutoff": self.cutoff,
            "bodies_removed" if not self.dry_run else "bodies_to_remove": self.bodies,
            "bytes": self.bytes,
            "dry_run": self.dry_run,
        }


_AUTOMATED = """
SELECT v.content_hash FROM (
  SELECT e.content_hash,
         LEAD(e.collected_at) OVER (PARTITION BY e.source, e.key
                                    ORDER BY e.collected_at, e.id) AS valid_to
  FROM evidence e WHERE e.source <> :manual
) v
WHERE v.content_hash IS NOT NULL
GROUP BY v.content_hash
HAVING MAX(CASE WHEN v.valid_to IS NULL OR v.valid_to > :cutoff THEN 1 ELSE 0 END) = 0
"""

_MANUAL_RECORDS = """
SELECT b.body FROM evidence e JOIN blobs b ON b.hash = e.content_hash
WHERE e.source = :manual AND e.resource_type = 'manual.evidence'
"""

_MANUAL_FILES = """
SELECT e.resource_id, e.content_hash FROM evidence e
WHERE e.source = :manual AND e.resource_type = 'manual.file' AND e.content_hash IS NOT NULL
"""


def removable(engine: Engine, cutoff: datetime) -> list[str]:
    """Hashes of stored bodies that no version in force at or after ``cutoff`` uses."""
    ts = bindparam("cutoff", type_=UTCDateTime())
    with engine.connect() as conn:
        auto = {
            r[0]
            for r in conn.execute(
                text(_AUTOMATED).bindparams(ts), {"cutoff": cutoff, "manual": MANUAL_SOURCE}
            )
        }
        # Manual files: kept while any record citing them is valid at or after the cutoff.
        last_valid: dict[str, str] = {}
        for (body,) in conn.execute(text(_MANUAL_RECORDS), {"manual": MANUAL_SOURCE}):
            p = json.loads(body)
            sha = p["file_sha256"]
            last_valid[sha] = max(last_valid.get(sha, ""), p["valid_until"])
        cut = cutoff.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        for sha, chash in conn.execute(text(_MANUAL_FILES), {"manual": MANUAL_SOURCE}):
            if sha in last_valid and last_valid[sha] <= cut:
                auto.add(chash)
        if not auto:
            return []
        present: list[str] = []
        wanted = sorted(auto)
        for i in range(0, len(wanted), _BATCH):
            chunk = wanted[i : i + _BATCH]
            q = text("SELECT hash FROM blobs WHERE hash IN :hs").bindparams(
                bindparam("hs", expanding=True)
            )
            present.extend(r[0] for r in conn.execute(q, {"hs": chunk}))
    return sorted(present)


def apply_retention(
    engine: Engine, keep: timedelta, keep_label: str, *, removed_by: str, dry_run: bool = False,
    now: datetime | None = None,
) -> RetentionResult:
    """Remove every body older than ``keep`` (see module docstring); log each removal."""
    now = now or utcnow()
    cutoff = now - keep
    hashes = removable(engine, cutoff)
    total = 0
    with engine.connect() as conn:
        for i in range(0, len(hashes), _BATCH):
            chunk = hashes[i : i + _BATCH]
            q = text("SELECT COALESCE(SUM(size), 0) FROM blobs WHERE hash IN :hs").bindparams(
                bindparam("hs", expanding=True)
            )
            total += int(conn.execute(q, {"hs": chunk}).scalar_one())
    if dry_run or not hashes:
        return RetentionResult(cutoff, len(hashes), total, dry_run)
    token = "txid_current()" if engine.dialect.name == "postgresql" else "rowid"
    log = text(
        "INSERT INTO retention_log (hash, size, cutoff, keep, removed_at, removed_by, token) "
        f"SELECT hash, size, :cutoff, :keep, :now, :by, {token} FROM blobs WHERE hash IN :hs"
    ).bindparams(
        bindparam("hs", expanding=True),
        bindparam("cutoff", type_=UTCDateTime()),
        bindparam("now", type_=UTCDateTime()),
    )
    delete = text("DELETE FROM blobs WHERE hash IN :hs").bindparams(
        bindparam("hs", expanding=True)
    )
    for i in range(0, len(hashes), _BATCH):
        chunk = hashes[i : i + _BATCH]
        with engine.begin() as conn:
            conn.execute(
                log,
                {"hs": chunk, "cutoff": cutoff, "keep": keep_label, "now": now, "by": removed_by},
            )
            conn.execute(delete, {"hs": chunk})
    return RetentionResult(cutoff, len(hashes), total, False)

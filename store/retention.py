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
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    bindparam,
    insert,
    text,
)

from core.records import utcnow
from core.signing import RETENTION_DOMAIN, Signer
from store.keys import record_key
from store.schema import UTCDateTime, retention_log, sealed_sql
from store.views import MANUAL_SOURCE

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
  FROM evidence e WHERE e.source <> :manual AND {sealed}
) v
WHERE v.content_hash IS NOT NULL
GROUP BY v.content_hash
HAVING MAX(CASE WHEN v.valid_to IS NULL OR v.valid_to > :cutoff THEN 1 ELSE 0 END) = 0
"""

_MANUAL_RECORDS = """
SELECT b.body FROM evidence e JOIN blobs b ON b.hash = e.content_hash
WHERE e.source = :manual AND e.resource_type = 'manual.evidence' AND {sealed}
"""

_MANUAL_FILES = """
SELECT e.resource_id, e.content_hash FROM evidence e
WHERE e.source = :manual AND e.resource_type = 'manual.file' AND e.content_hash IS NOT NULL
  AND {sealed}
"""


def removable_hashes(conn: Connection, cutoff: datetime) -> set[str]:
    """Hashes no version in force at or after ``cutoff`` uses, whether stored or not.

    Only rows of sealed runs count: a forged row (say, a tombstone under an unknown run)
    must not make a body in force look removable.
    """
    ts = bindparam("cutoff", type_=UTCDateTime())
    sealed = sealed_sql("e")
    auto = {
        r[0]
        for r in conn.execute(
            text(_AUTOMATED.format(sealed=sealed)).bindparams(ts),
            {"cutoff": cutoff, "manual": MANUAL_SOURCE},
        )
    }
    # Manual files: kept while any record citing them is valid at or after the cutoff.
    last_valid: dict[str, str] = {}
    for (body,) in conn.execute(
        text(_MANUAL_RECORDS.format(sealed=sealed)), {"manual": MANUAL_SOURCE}
    ):
        p = json.loads(body)
        sha = p["file_sha256"]
        last_valid[sha] = max(last_valid.get(sha, ""), p["valid_until"])
    cut = cutoff.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    for sha, chash in conn.execute(
        text(_MANUAL_FILES.format(sealed=sealed)), {"manual": MANUAL_SOURCE}
    ):
        if sha in last_valid and last_valid[sha] <= cut:
            auto.add(chash)
    return auto


def removable(engine: Engine, cutoff: datetime) -> list[str]:
    """Hashes of stored bodies that no version in force at or after ``cutoff`` uses."""
    with engine.connect() as conn:
        auto = removable_hashes(conn, cutoff)
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


def entry_message(entry: Mapping[str, Any]) -> str:
    """What a retention entry's signature covers (core.signing.RETENTION_DOMAIN)."""
    return json.dumps(
        {
            "hash": entry["hash"],
            "size": int(entry["size"]),
            "cutoff": _iso(entry["cutoff"]),
            "keep": entry["keep"],
            "removed_at": _iso(entry["removed_at"]),
            "removed_by": entry["removed_by"],
        },
        sort_keys=True,
        separators=(",", ":"),
    )


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def apply_retention(
    engine: Engine,
    keep: timedelta,
    keep_label: str,
    *,
    removed_by: str,
    dry_run: bool = False,
    now: datetime | None = None,
    signer: Signer | None = None,
) -> RetentionResult:
    """Remove every body older than ``keep`` (see module docstring); log and sign each."""
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
    postgresql = engine.dialect.name == "postgresql"
    rows = text(
        f"SELECT hash, size, {'0' if postgresql else 'rowid'} AS token FROM blobs WHERE hash IN :hs"
    ).bindparams(bindparam("hs", expanding=True))
    delete = text("DELETE FROM blobs WHERE hash IN :hs").bindparams(bindparam("hs", expanding=True))
    for i in range(0, len(hashes), _BATCH):
        chunk = hashes[i : i + _BATCH]
        with engine.begin() as conn:
            if signer is not None:
                record_key(conn, signer, now)
            txid = (
                int(conn.execute(text("SELECT txid_current()")).scalar_one()) if postgresql else 0
            )
            entries = []
            for h, size, token in conn.execute(rows, {"hs": chunk}):
                entry = {
                    "hash": h,
                    "size": int(size),
                    "cutoff": cutoff,
                    "keep": keep_label,
                    "removed_at": now,
                    "removed_by": removed_by,
                    # The blobs guard lets a body go only with this token logged first.
                    "token": txid if postgresql else int(token),
                    "signature": None,
                    "key_id": None,
                }
                if signer is not None:
                    entry["signature"] = signer.sign(RETENTION_DOMAIN, entry_message(entry))
                    entry["key_id"] = signer.key_id
                entries.append(entry)
            if entries:
                conn.execute(insert(retention_log), entries)
            conn.execute(delete, {"hs": chunk})
    return RetentionResult(cutoff, len(hashes), total, False)


def parse_keep(text_value: str) -> timedelta:
    """``3y``, ``18m`` (months), ``90d``, ``12w`` → timedelta (a year is 365 days)."""
    s = text_value.strip().lower()
    units = {"y": 365, "m": 30, "w": 7, "d": 1}
    if len(s) < 2 or s[-1] not in units or not s[:-1].isdigit() or int(s[:-1]) <= 0:
        raise ValueError(f"{text_value!r} is not a duration like 3y, 18m, 12w or 90d")
    return timedelta(days=int(s[:-1]) * units[s[-1]])

"""Read queries for the cross-source identity correlation (analyzers/identity.py).

The correlation judges what the identity connectors last stored, so it needs three
answers from the store, each at an instant (default: now):

* :func:`current_identities` — the live evidence of the identity resource types;
* :func:`removed_identities` — items whose latest row is a tombstone (deleted in the
  source and closed by a clean read), with the payload of their last live version and
  when they were closed: "removed from the IdP" is a state too;
* :func:`latest_unit_states` — whether each source's identity units were read cleanly
  in the latest run that read them, so a correlation over stale data says so.

All of them stream or return small aggregates; no query loads a whole table.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, and_, func, select

from core.records import utcnow
from store.queries import evidence_at
from store.schema import blobs, evidence, run_units, runs, sealed


def current_identities(
    conn: Connection,
    resource_types: Collection[str],
    sources: Collection[str],
    at: datetime | None = None,
) -> Iterator[dict[str, Any]]:
    """Live evidence of ``resource_types`` from ``sources`` at ``at``, with payloads."""
    for source in sorted(sources):
        for rtype in sorted(resource_types):
            yield from evidence_at(conn, at, resource_type=rtype, source=source)


def _latest_rows(at: datetime, *where: Any) -> Any:
    rn = (
        func.row_number()
        .over(
            partition_by=(evidence.c.source, evidence.c.key),
            order_by=(evidence.c.collected_at.desc(), evidence.c.id.desc()),
        )
        .label("rn")
    )
    return (
        select(evidence, rn)
        .where(evidence.c.collected_at <= at, sealed(evidence), *where)
        .subquery()
    )


def removed_identities(
    conn: Connection,
    resource_types: Collection[str],
    sources: Collection[str],
    at: datetime | None = None,
) -> Iterator[dict[str, Any]]:
    """Items of ``resource_types`` whose latest row at ``at`` is a tombstone.

    Each row has the item's ``source``, ``scope``, ``resource_type``, ``resource_id``,
    ``removed_at`` (when a clean read no longer saw it) and the ``payload`` of its last
    live version.
    """
    if not resource_types or not sources:
        return
    at = at or utcnow()
    scope_where = (
        evidence.c.resource_type.in_(sorted(resource_types)),
        evidence.c.source.in_(sorted(sources)),
    )
    latest = _latest_rows(at, *scope_where)
    gone = (
        select(latest.c.source, latest.c.key, latest.c.collected_at.label("removed_at"))
        .where(latest.c.rn == 1, latest.c.content_hash.is_(None))
        .subquery()
    )
    live = _latest_rows(at, evidence.c.content_hash.is_not(None), *scope_where)
    q = (
        select(
            live.c.source,
            live.c.scope,
            live.c.resource_type,
            live.c.resource_id,
            live.c.content_hash,
            gone.c.removed_at,
            blobs.c.body,
        )
        .select_from(
            live.join(gone, and_(gone.c.source == live.c.source, gone.c.key == live.c.key)).join(
                blobs, blobs.c.hash == live.c.content_hash
            )
        )
        .where(live.c.rn == 1)
        .order_by(live.c.source, live.c.key)
    )
    for row in conn.execute(q).mappings():
        out = dict(row)
        out["payload"] = json.loads(out.pop("body"))
        yield out


@dataclass(frozen=True)
class UnitState:
    source: str
    scope: str
    service: str
    ok: bool
    error: str | None
    finished_at: datetime


def latest_unit_states(
    conn: Connection,
    sources: Collection[str],
    services: Collection[str],
    at: datetime | None = None,
) -> list[UnitState]:
    """For each (source, scope, service): the outcome of the latest finished run that
    attempted it, at ``at``. A source with no such run is simply absent."""
    if not sources or not services:
        return []
    at = at or utcnow()
    rn = (
        func.row_number()
        .over(
            partition_by=(runs.c.source, run_units.c.scope, run_units.c.service),
            order_by=(runs.c.finished_at.desc(), run_units.c.id.desc()),
        )
        .label("rn")
    )
    inner = (
        select(
            runs.c.source,
            run_units.c.scope,
            run_units.c.service,
            run_units.c.ok,
            run_units.c.error,
            runs.c.finished_at,
            rn,
        )
        .select_from(run_units.join(runs, runs.c.id == run_units.c.run_id))
        .where(
            runs.c.source.in_(sorted(sources)),
            run_units.c.service.in_(sorted(services)),
            runs.c.digest.is_not(None),
            runs.c.finished_at.is_not(None),
            runs.c.finished_at <= at,
        )
        .subquery()
    )
    q = (
        select(inner)
        .where(inner.c.rn == 1)
        .order_by(inner.c.source, inner.c.scope, inner.c.service)
    )
    return [
        UnitState(r.source, r.scope, r.service, bool(r.ok), r.error, r.finished_at)
        for r in conn.execute(q)
    ]

"""Approved policies as the recorded documents of the controls they list.

A policy in the policy repository (connector ``policies``) says in its front matter
which Annex A controls it documents (``controls: [A.5.1, A.5.15]``). When the policy is
approved — its ``policies.document.approved`` finding in force is ``pass``, so the
instance's own parameters (e.g. approver ≠ owner) decide — it counts as a recorded
document of each control it lists, exactly like an ``annexa evidence add`` record: valid
from its approval date until its review falls due (``approved_on`` + its review
interval, capped by the control's own review interval). A policy past its review date is
therefore an *expired* document, and one that is not approved, unparsable or without
dates is no document at all: nothing is documented by absence.

Read side only (``control_statuses`` merges these records with the manual ones); the
evidence and findings are the policies connector's own, signed and chained as usual.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, select

from store.manual_records import ManualRecord
from store.schema import blobs, evidence, findings, sealed

#: The finding that makes a policy count as a document (see the module docstring).
APPROVED_CHECK = "policies.document.approved"
POLICY_TYPE = "policies.document.policy"
#: When a policy names no review interval: the check's default (a year).
DEFAULT_REVIEW_DAYS = 365


def _day(value: str) -> datetime:
    return datetime.fromisoformat(value).replace(tzinfo=UTC)


def policy_records(
    conn: Connection, approved: Iterable[tuple[str, str, str]]
) -> list[ManualRecord]:
    """Document records of the approved policies ``(source, resource id, evidence hash)``."""
    out: list[ManualRecord] = []
    for source, resource_id, content_hash in sorted(set(approved)):
        row = conn.execute(
            select(evidence.c.run_id, evidence.c.collected_at, blobs.c.body)
            .select_from(evidence.join(blobs, blobs.c.hash == evidence.c.content_hash))
            .where(
                evidence.c.source == source,
                evidence.c.resource_type == POLICY_TYPE,
                evidence.c.resource_id == resource_id,
                evidence.c.content_hash == content_hash,
                sealed(evidence),
            )
            .order_by(evidence.c.collected_at)
            .limit(1)
        ).first()
        if row is None:
            continue  # body removed by retention: the document can no longer be shown
        p = json.loads(row.body)
        if p.get("_errors") or not p.get("approver") or not p.get("approved_on"):
            continue
        start = _day(p["approved_on"])
        due = (
            _day(p["review_due"])
            if p.get("review_due")
            else start + timedelta(days=DEFAULT_REVIEW_DAYS)
        )
        # The whole due day still counts, as in the policies.document.reviewed check.
        until = due + timedelta(days=1)
        version = f" v{p['version']}" if p.get("version") else ""
        for control in p.get("controls") or []:
            out.append(
                ManualRecord(
                    key=f"{source}:{resource_id}/{control}",
                    control=control,
                    filename=resource_id,
                    file_sha256=str(p.get("sha256") or ""),
                    size=0,
                    note=(
                        f"policy '{p.get('title') or resource_id}'{version}, approved by "
                        f"{p['approver']} on {p['approved_on']} (policy repository {source})"
                    ),
                    added_by=f"{source} (policies connector)",
                    recorded_at=row.collected_at,
                    valid_from=start,
                    valid_until=until,
                    content_hash=content_hash,
                    run_id=row.run_id,
                )
            )
    return out


def policy_history(conn: Connection) -> list[tuple[datetime, str, ManualRecord | None]]:
    """The document records of :func:`policy_records` as a change log, for timelines.

    Replays every sealed version of ``policies.document.approved`` in order: a ``pass``
    (re)defines the policy's records, anything else (``fail``, ``error``, closed) removes
    them — the same answer :func:`policy_records` gives for the findings in force at any
    instant, in the shape of :func:`store.queries.manual_history`.
    """
    out: list[tuple[datetime, str, ManualRecord | None]] = []
    keys: dict[tuple[str, str], set[str]] = {}
    for t, source, resource_id, status, eh in _approved_versions(conn):
        new = policy_records(conn, [(source, resource_id, eh)]) if status == "pass" and eh else []
        before = keys.get((source, resource_id), set())
        for rec in new:
            out.append((t, rec.key, rec))
        for key in sorted(before - {r.key for r in new}):
            out.append((t, key, None))
        keys[(source, resource_id)] = {r.key for r in new}
    return out


def _approved_versions(conn: Connection) -> list[tuple[Any, ...]]:
    """Every sealed version of :data:`APPROVED_CHECK` (observed_at, source, resource_id,
    status, evidence_hash), in (observed_at, id) order.

    ``findings`` has no index on ``check_id``, and timelines read this on every request:
    a finding key starts with ``check_id|``, so where keys sort bytewise each source's
    versions are one range of the (source, key) index instead of a scan of the history.
    """
    from store.queries import _bytewise_keys, _sources

    f = findings.c
    q = select(f.observed_at, f.source, f.resource_id, f.status, f.evidence_hash, f.id).where(
        f.check_id == APPROVED_CHECK, sealed(findings)
    )
    if not _bytewise_keys(conn):
        return [tuple(r[:5]) for r in conn.execute(q.order_by(f.observed_at, f.id))]
    rows: list[Any] = []
    for src in _sources(conn, None):
        # "}" is the character after "|": [check|, check}) holds exactly check's keys.
        ranged = q.where(f.source == src, f.key >= f"{APPROVED_CHECK}|",
                         f.key < f"{APPROVED_CHECK}}}")
        rows.extend(conn.execute(ranged).all())
    rows.sort(key=lambda r: (r[0], r[5]))
    return [tuple(r[:5]) for r in rows]

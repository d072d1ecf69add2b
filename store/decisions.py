"""Decisions are evidence: exceptions and the Statement of Applicability, as recorded.

Exceptions (risk acceptances) and SoA applicability live in files the organisation
edits. Read straight from the files, editing one today would change what Annexa says
about yesterday: an exception added now with ``approved_on`` a month ago would excuse
a month of failures nobody had excused then. So Annexa *records* each decision when it
first sees it — ``annexa collect``, the daemon's start, ``annexa decisions sync`` — and
every answer, at any instant, uses the decisions as recorded then.

Why through the run writer and not a table of its own (as manual evidence does): each
decision gets what evidence has — content addressing, append-only history enforced by
the database, a signed run digest chained to the previous decisions run (source
``@decisions``; no connector name can start with ``@``), point-in-time reads, and
``verify`` naming a tampered row. A decision removed from its file is tombstoned: it
is revoked from that instant on, and stays visible in history before it.

Items (``resource_type`` → ``resource_id``):

* ``decision.exceptions.rule`` → the exception's ``id`` (or a digest of what it matches
  when the file gives none, so that reordering the file changes nothing);
* ``decision.soa.control`` → a control id: applicable, justification, declared or not;
* ``decision.soa.meta`` → ``meta``: organisation and scope description;
* ``decision.files.source`` → ``exceptions`` / ``soa`` / ``risks``: the file and its SHA-256;
* ``decision.risks.risk`` → a risk's id: the risk as declared, with its acceptance
  (approver and date), which counts from ``max(accepted_on, recorded)``;
* ``decision.risks.policy`` → ``policy``: the risk appetite and scales in force;
* ``decision.comments.comment`` → a comment's id: an auditor's comment or evidence
  request on a control or a finding (store/comments.py), append-only.

An exception applies from ``max(approved_on, recorded)``; one whose ``approved_on``
is earlier than the day it was recorded is *backdated*, shown as such and never applied
before it was recorded.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine, select

from core.records import Coverage, Evidence, canonical_body, service_of
from core.signing import Signer
from store.schema import blobs, evidence, sealed
from store.writer import RunSummary, record_run

DECISIONS_SOURCE = "@decisions"
SCOPE = "decisions"
REGION = "global"
# Types are <prefix>.<service>.<kind>: the service is the unit a sync reads in full,
# so that a decision no longer given is closed (revoked) like any unseen item.
EXCEPTION_TYPE = "decision.exceptions.rule"
SOA_TYPE = "decision.soa.control"
SOA_META_TYPE = "decision.soa.meta"
#: Which file each kind was read from, and its SHA-256 (to tell read commands that a
#: file changed since it was recorded).
SOURCE_FILE_TYPE = "decision.files.source"
SERVICES = {t: service_of(t) for t in (EXCEPTION_TYPE, SOA_TYPE, SOA_META_TYPE, SOURCE_FILE_TYPE)}
#: The risk register (store/risks.py): one item per risk of the risks file (id = the
#: risk's id, with its acceptance), and ``policy``: the appetite and scales in force.
RISK_TYPE = "decision.risks.risk"
RISK_POLICY_TYPE = "decision.risks.policy"
SERVICES.update({t: service_of(t) for t in (RISK_TYPE, RISK_POLICY_TYPE)})
#: Auditor comments and evidence requests (store/comments.py): one item per comment,
#: never revoked (no sync reads the ``comments`` unit, so none is ever tombstoned).
COMMENT_TYPE = "decision.comments.comment"
SERVICES[COMMENT_TYPE] = service_of(COMMENT_TYPE)


@dataclass(frozen=True)
class Decision:
    resource_type: str
    resource_id: str
    payload: dict[str, Any]

    @property
    def service(self) -> str:
        return SERVICES[self.resource_type]


def _iso(t: datetime | None) -> str | None:
    return None if t is None else t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse(v: str | None) -> datetime | None:
    return None if v is None else datetime.fromisoformat(v.replace("Z", "+00:00"))


def exception_decision(rule: Any, *, explicit_id: bool) -> Decision:
    """The recorded form of an exception rule (``store.exceptions.ExceptionRule``)."""
    payload = {
        "id": rule.id,
        "check": rule.check,
        "resource": rule.resource,
        "reason": rule.reason,
        "approved_by": rule.approved_by,
        "approved_on": _iso(rule.starts),
        "expires": _iso(rule.expires),
        "source": rule.source,
        "scope": rule.scope,
    }
    if explicit_id:
        rid = rule.id
    else:
        what = json.dumps([rule.check, rule.resource, rule.source, rule.scope])
        rid = "match:" + hashlib.sha256(what.encode()).hexdigest()[:16]
    return Decision(EXCEPTION_TYPE, rid, payload)


def scope_decisions(scope: Any) -> list[Decision]:
    """The recorded form of a Statement of Applicability (``mappings.soa.Scope``)."""
    out = [Decision(SOA_META_TYPE, "meta", scope.meta())]
    for cid, a in sorted(scope.controls.items()):
        out.append(Decision(SOA_TYPE, cid, a.as_payload()))
    return out


def _recorded(conn: Connection) -> dict[tuple[str, str], str]:
    """(resource_type, resource_id) → content hash of each decision in force now."""
    from store.queries import evidence_at

    return {
        (r["resource_type"], r["resource_id"]): r["content_hash"]
        for r in evidence_at(conn, source=DECISIONS_SOURCE, with_payload=False)
    }


def pending_changes(
    engine: Engine, decisions: Iterable[Decision], services: Collection[str]
) -> list[str]:
    """What recording ``decisions`` would change, one line each (empty: nothing)."""
    wanted = {
        (d.resource_type, d.resource_id): hashlib.sha256(canonical_body(d.payload)).hexdigest()
        for d in decisions
    }
    with engine.connect() as conn:
        have = {k: h for k, h in _recorded(conn).items() if SERVICES.get(k[0]) in set(services)}
    lines = []
    for key in sorted(wanted.keys() | have.keys()):
        if key not in have:
            lines.append(f"new {key[0]} {key[1]}")
        elif key not in wanted:
            lines.append(f"revoked {key[0]} {key[1]}")
        elif have[key] != wanted[key]:
            lines.append(f"changed {key[0]} {key[1]}")
    return lines


def record_decisions(
    engine: Engine,
    decisions: Iterable[Decision],
    *,
    services: Collection[str],
    signer: Signer | None,
    config_digest: str,
    mapping_digest: str,
    agent_version: str,
) -> RunSummary | None:
    """Record ``decisions`` as one ``@decisions`` run; None when nothing changed.

    ``services`` are the kinds that were read in full (``exceptions``, ``soa``): a
    recorded decision of such a kind that is no longer given is revoked (tombstoned).
    A sync that changes nothing writes nothing, not even a run.
    """
    items = list(decisions)
    if not pending_changes(engine, items, services):
        return None
    records: list[Evidence | Coverage] = [
        Evidence(SCOPE, REGION, d.resource_type, d.resource_id, d.payload) for d in items
    ]
    records += [Coverage(SCOPE, REGION, service, ok=True) for service in sorted(services)]
    return record_run(
        engine, records, source=DECISIONS_SOURCE, connector_type="decisions", signer=signer,
        config_digest=config_digest, mapping_digest=mapping_digest, agent_version=agent_version,
    )


# -- read side ---------------------------------------------------------------------------


@dataclass(frozen=True)
class RecordedVersion:
    """One version of a decision: in force from ``recorded_at`` until ``revoked_at``."""

    resource_type: str
    resource_id: str
    payload: dict[str, Any]
    recorded_at: datetime
    revoked_at: datetime | None
    run_id: str


def history(conn: Connection, resource_type: str) -> list[RecordedVersion]:
    """Every recorded version of decisions of ``resource_type`` (sealed runs only)."""
    q = (
        select(
            evidence.c.resource_id,
            evidence.c.key,
            evidence.c.collected_at,
            evidence.c.run_id,
            evidence.c.content_hash,
            blobs.c.body,
        )
        .select_from(evidence.outerjoin(blobs, blobs.c.hash == evidence.c.content_hash))
        .where(
            evidence.c.source == DECISIONS_SOURCE,
            evidence.c.resource_type == resource_type,
            sealed(evidence),
        )
        .order_by(evidence.c.key, evidence.c.collected_at, evidence.c.id)
    )
    rows = conn.execute(q).all()
    out: list[RecordedVersion] = []
    for i, r in enumerate(rows):
        if r.content_hash is None or r.body is None:
            continue  # a tombstone (revocation), or a body removed by retention
        nxt = rows[i + 1] if i + 1 < len(rows) and rows[i + 1].key == r.key else None
        out.append(
            RecordedVersion(
                resource_type,
                r.resource_id,
                json.loads(r.body),
                r.collected_at,
                nxt.collected_at if nxt is not None else None,
                r.run_id,
            )
        )
    return out


def recorded_exceptions(conn: Connection) -> list[Any]:
    """Every exception as recorded, each bounded by when it was recorded and revoked.

    The rules returned apply exactly when they were in force *as recorded*: a
    backdated ``approved_on`` never takes effect before the recording.
    """
    from store.exceptions import ExceptionRule

    out = []
    for v in history(conn, EXCEPTION_TYPE):
        p = v.payload
        out.append(
            ExceptionRule(
                id=p["id"],
                check=p["check"],
                resource=p["resource"],
                reason=p["reason"],
                approved_by=p["approved_by"],
                expires=_parse(p["expires"]) or v.recorded_at,
                starts=_parse(p.get("approved_on")),
                source=p.get("source"),
                scope=p.get("scope"),
                recorded_at=v.recorded_at,
                revoked_at=v.revoked_at,
            )
        )
    return out


def recorded_scope(conn: Connection, at: datetime, catalog: Mapping[str, Any]) -> Any | None:
    """The Statement of Applicability as recorded at ``at`` (None if none was yet)."""
    from mappings.soa import Applicability, Scope

    def in_force(v: RecordedVersion) -> bool:
        return v.recorded_at <= at and (v.revoked_at is None or at < v.revoked_at)

    metas = [v for v in history(conn, SOA_META_TYPE) if in_force(v)]
    controls = {
        v.resource_id: Applicability.from_payload({"control": v.resource_id, **v.payload})
        for v in history(conn, SOA_TYPE)
        if in_force(v)
    }
    if not metas and not controls:
        return None
    meta = metas[-1].payload if metas else {}
    missing = {
        c: Applicability(c, True, "not in the Statement of Applicability recorded then", False)
        for c in catalog
        if c not in controls
    }
    from mappings.loader import control_sort_key

    merged = {**missing, **controls}
    return Scope(
        organisation=str(meta.get("organisation", "")),
        description=str(meta.get("description", "")),
        file=f"recorded decisions at {_iso(at)}",
        controls={c: merged[c] for c in sorted(merged, key=control_sort_key)},
        version=meta.get("version"),
        approved_by=meta.get("approved_by"),
        approved_on=meta.get("approved_on"),
    )

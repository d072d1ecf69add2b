"""Auditor comments and evidence requests, recorded as decisions.

An auditor's remark on a control ("the access review for Q2 is missing") or an
evidence request on a finding is part of the audit trail: it must not be editable
afterwards, must say who wrote it and when, and must travel with the audit package.
So a comment is recorded exactly as exceptions and the SoA are (store/decisions.py):
one ``@decisions`` run per comment, content-addressed, chained to the previous
decisions run and signed with the collector's key. It is never revoked: no sync reads
the ``comments`` unit, so the writer never tombstones one; a correction is a new
comment that says so.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine

from core.signing import Signer
from store.decisions import COMMENT_TYPE, Decision, history, record_decisions
from store.sealing import storable

KINDS = ("comment", "evidence_request")
TARGETS = ("control", "finding")
MAX_TEXT = 4000


class CommentError(ValueError):
    """A comment that cannot be recorded as given (empty, too long, unknown kind)."""


@dataclass(frozen=True)
class Comment:
    id: str
    kind: str
    target_kind: str
    target: str
    author: str
    role: str
    text: str
    recorded_at: datetime
    run_id: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def comment_decision(
    *, kind: str, target_kind: str, target: str, author: str, role: str, text: str
) -> Decision:
    """Validate a comment and give its recorded form (a fresh id each time)."""
    if kind not in KINDS:
        raise CommentError(f"kind must be one of {', '.join(KINDS)}")
    if target_kind not in TARGETS:
        raise CommentError(f"a comment is on a {' or a '.join(TARGETS)}")
    body = storable(text).strip()
    if not body:
        raise CommentError("the comment is empty")
    if len(body) > MAX_TEXT:
        raise CommentError(f"the comment is longer than {MAX_TEXT} characters")
    if not target.strip() or len(target) > 2000:
        raise CommentError("the comment's target is missing or too long")
    cid = str(uuid.uuid4())
    payload = {
        "id": cid,
        "kind": kind,
        "target_kind": target_kind,
        "target": storable(target),
        "author": storable(author),
        "role": role,
        "text": body,
    }
    return Decision(COMMENT_TYPE, cid, payload)


def record_comment(
    engine: Engine,
    decision: Decision,
    *,
    signer: Signer | None,
    config_digest: str,
    mapping_digest: str,
    agent_version: str,
) -> str:
    """Record one comment as its own signed ``@decisions`` run; return the run id.

    ``services`` is empty: no unit is reported read, so nothing recorded before is
    closed — comments are append-only.
    """
    summary = record_decisions(
        engine,
        [decision],
        services=(),
        signer=signer,
        config_digest=config_digest,
        mapping_digest=mapping_digest,
        agent_version=agent_version,
    )
    if summary is None:  # pragma: no cover - a fresh uuid is always a change
        raise CommentError("nothing was recorded")
    return summary.run_id


def comments(
    conn: Connection,
    at: datetime | None = None,
    *,
    target_kind: str | None = None,
    targets: Iterable[str] | None = None,
) -> list[Comment]:
    """Comments recorded by ``at`` (all when None), oldest first, of sealed runs only."""
    wanted = set(targets) if targets is not None else None
    out = []
    for v in history(conn, COMMENT_TYPE):
        if at is not None and v.recorded_at > at:
            continue
        p = v.payload
        if target_kind is not None and p.get("target_kind") != target_kind:
            continue
        if wanted is not None and p.get("target") not in wanted:
            continue
        out.append(
            Comment(
                id=str(p.get("id")),
                kind=str(p.get("kind")),
                target_kind=str(p.get("target_kind")),
                target=str(p.get("target")),
                author=str(p.get("author")),
                role=str(p.get("role")),
                text=str(p.get("text")),
                recorded_at=v.recorded_at,
                run_id=v.run_id,
            )
        )
    out.sort(key=lambda c: (c.recorded_at, c.id))
    return out

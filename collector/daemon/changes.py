"""What changed when a control changed status: the findings behind it, their severity,
the run that produced them, and the evidence fields before → after (redacted).

Read in the transaction that decides the change (:func:`store.leases.control_changes`),
so the description is of the very state the decision saw. Evidence is stored change-only
(a new version only when the content changed), so a finding's evidence version and the
version before it of the same resource are exactly "what changed".
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import Connection, select

from core.records import SEVERITIES
from core.redaction import scrub, scrub_text
from mappings.loader import MappingIndex
from store.queries import bodies, findings_at
from store.schema import evidence

#: Findings described per notification, changed fields per finding, characters per value.
MAX_ITEMS = 5
MAX_FIELDS = 10
MAX_VALUE = 80
_RANK = {s: i for i, s in enumerate(SEVERITIES)}


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(_flatten(scrub(v, str(k)), f"{prefix}{k}."))
        return out
    return {prefix.rstrip("."): value}


def _short(value: Any) -> str:
    text = "(absent)" if value is _ABSENT else json.dumps(value, sort_keys=True, default=str)
    text = scrub_text(text)
    return text if len(text) <= MAX_VALUE else text[: MAX_VALUE - 1] + "…"


_ABSENT = object()


def field_changes(before: Any, after: Any) -> list[tuple[str, str, str]]:
    """``(field, before, after)`` for each changed leaf of two JSON documents."""
    a, b = _flatten(scrub(before)), _flatten(scrub(after))
    out = []
    for key in sorted(set(a) | set(b)):
        va, vb = a.get(key, _ABSENT), b.get(key, _ABSENT)
        if va != vb:
            out.append((key or "(value)", _short(va), _short(vb)))
    return out


def evidence_changes(conn: Connection, source: str, content_hash: str | None) -> list[list[str]]:
    """Fields that changed between the evidence version ``content_hash`` of ``source``
    and the version of the same resource before it (all fields new when there is none)."""
    if not content_hash:
        return []
    cur = conn.execute(
        select(evidence.c.id, evidence.c.key)
        .where(evidence.c.source == source, evidence.c.content_hash == content_hash)
        .order_by(evidence.c.id.desc())
        .limit(1)
    ).one_or_none()
    if cur is None:
        return []
    prev_hash = conn.execute(
        select(evidence.c.content_hash)
        .where(evidence.c.source == source, evidence.c.key == cur.key, evidence.c.id < cur.id)
        .order_by(evidence.c.id.desc())
        .limit(1)
    ).scalar()
    texts = bodies(conn, [h for h in (content_hash, prev_hash) if h])
    try:
        after = json.loads(texts[content_hash]) if content_hash in texts else None
        before = json.loads(texts[prev_hash]) if prev_hash and prev_hash in texts else {}
    except ValueError:
        return []
    if after is None:
        return []
    return [list(c) for c in field_changes(before, after)[:MAX_FIELDS]]


def describe(conn: Connection, index: MappingIndex, control: str, new: str) -> dict[str, Any]:
    """The findings behind ``control``'s new status ``new``, worst first, with what
    changed in their evidence; the worst severity; the latest run among them."""
    checks = set(index.checks_for(control))
    rows = list(findings_at(conn, None, check_ids=checks)) if checks else []
    if new in ("fail", "error"):
        rel = [r for r in rows if r["status"] in ("fail", "error")]
    else:
        rel = rows
    rel.sort(key=lambda r: (r["status"] != new, -_RANK.get(r["severity"], 0), r["resource_id"]))
    items = []
    for r in rel[:MAX_ITEMS]:
        items.append(
            {
                "check": r["check_id"],
                "resource": scrub_text(str(r["resource_id"])),
                "status": r["status"],
                "severity": r["severity"],
                "message": scrub_text(str(r["message"]))[:300],
                "run_id": r["run_id"],
                "changes": evidence_changes(conn, r["source"], r["evidence_hash"]),
            }
        )
    judged = [r for r in rel if r["status"] == new] or rel
    severity = max((r["severity"] for r in judged), key=lambda s: _RANK.get(s, 0), default=None)
    latest = max(rel, key=lambda r: r["observed_at"], default=None)
    return {
        "severity": severity,
        "run_id": latest["run_id"] if latest else None,
        "items": items,
        "more": max(0, len(rel) - MAX_ITEMS),
        "command": f"annexa findings --control {control}",
    }

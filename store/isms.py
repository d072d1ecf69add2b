"""Readiness of the ISMS clauses 4-10 at any instant, with the honest control statuses.

A clause has the same two parts as an Annex A control (see ``store.status``):

* its **documented part** — any of: a manual record for the clause id (``annexa evidence
  add --control 9.2``, capped by the clause's review interval), a policy document whose
  front matter declares the clause (the policy-repository hook below), or, where the
  catalog says so (8.2, 8.3), the recorded risk register itself;
* its **judged part** — findings of the ticketing process checks the clause names
  (``internal_audit.every_period`` for 9.2, ``nonconformity.closed_within_sla`` for
  10.2 …, from any Jira / ServiceNow instance) and, for the risk clauses, the risk
  register (6.1.2/8.2: every risk reviewed on time; 6.1.3/8.3: every risk effectively
  treated or accepted).

Status: :func:`store.status.combine_status` over the findings and documents (so a clause
whose process checks pass without its document is ``undocumented``, a clause with
nothing recorded is ``manual``), then aggregated conservatively with the register's
verdict: ``pass`` only when every part passes.

**Policy-repository hook.** Evidence of any source whose type ends in
``.policy.document`` counts for the clauses its payload lists in ``clauses`` (top level
or under ``front_matter``), while it is in force; an optional ``review_by`` /
``valid_until`` date (same places) bounds it (past it, the document is expired).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import Engine

from mappings.clauses import Clause, builtin_clauses
from store.exceptions import exception_for
from store.queries import findings_at, last_ok_units, manual_at
from store.risks import RiskRow, _versions
from store.schema import evidence
from store.status import STATUS_RANK, combine_status

POLICY_TYPE_SUFFIX = ".policy.document"
_SATISFIED = frozenset({"pass", "not_applicable"})


@dataclass
class ClauseStatus:
    id: str
    title: str
    status: str
    expected_evidence: str
    document: str = "missing"  # valid | expired | missing
    documents: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    failing: list[str] = field(default_factory=list)
    register: str | None = None  # the register's verdict, for clauses it judges
    explanation: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "clause": self.id,
            "title": self.title,
            "status": self.status,
            "document": self.document,
            "documents": self.documents,
            "counts": self.counts,
            "failing": self.failing,
            "register": self.register,
            "expected_evidence": self.expected_evidence,
            "explanation": self.explanation,
        }


def _front(payload: Mapping[str, Any], key: str) -> Any:
    if key in payload:
        return payload[key]
    front = payload.get("front_matter")
    return front.get(key) if isinstance(front, Mapping) else None


def _until(value: Any) -> datetime | None:
    if value in (None, ""):
        return None
    try:
        d = value if isinstance(value, date) else date.fromisoformat(str(value)[:10])
    except ValueError:
        return datetime.min.replace(tzinfo=UTC)  # unreadable: treated as expired
    if isinstance(d, datetime):
        d = d.date()
    return datetime.combine(d + timedelta(days=1), time(0), tzinfo=UTC)


def policy_documents(engine: Engine, at: datetime) -> dict[str, list[tuple[str, bool]]]:
    """Clause id → [(document label, valid at ``at``)] from policy-repository evidence."""
    out: dict[str, list[tuple[str, bool]]] = {}
    with engine.connect() as conn:
        versions = _versions(conn, evidence.c.resource_type.like(f"%{POLICY_TYPE_SUFFIX}"))
    for v in versions:
        if not v.in_force(at):
            continue
        clauses = _front(v.payload, "clauses")
        if not isinstance(clauses, list):
            continue
        until = _until(_front(v.payload, "review_by") or _front(v.payload, "valid_until"))
        valid = until is None or at < until
        for c in clauses:
            out.setdefault(str(c), []).append((f"{v.source}: {v.resource_id}", valid))
    return out


def clause_statuses(
    engine: Engine,
    at: datetime,
    *,
    register: Iterable[RiskRow] = (),
    freshness: timedelta = timedelta(days=7),
    exceptions: Iterable[Any] = (),
    clauses: Mapping[str, Clause] | None = None,
) -> list[ClauseStatus]:
    """Every clause's readiness at ``at``; ``register`` is the risk register then
    (``store.risks.register_at``)."""
    from mappings.crosswalk import aggregate

    catalog = clauses if clauses is not None else builtin_clauses()
    rules = list(exceptions)
    rows = list(register)
    counts: dict[str, dict[str, int]] = {c: {} for c in catalog}
    failing: dict[str, list[str]] = {c: [] for c in catalog}
    stale_pass: dict[str, bool] = dict.fromkeys(catalog, False)
    with engine.connect() as conn:
        units = last_ok_units(conn, at)
        manual = manual_at(conn, at)
        for f in findings_at(conn, at):
            judged = [c for c, cl in catalog.items() if cl.judges(f["check_id"])]
            if not judged:
                continue
            status = f["status"]
            if status == "fail" and rules and exception_for(rules, f, at):
                status = "excepted"
            times = [
                t
                for t in (
                    units.get((f["source"], f["scope"], f["region"], f["service"])),
                    units.get((f["source"], f["scope"], "global", f["service"])),
                )
                if t is not None
            ]
            for c in judged:
                counts[c][status] = counts[c].get(status, 0) + 1
                if status in ("fail", "error") and len(failing[c]) < 20:
                    failing[c].append(f"{f['resource_id']} ({f['check_id']})")
                if status == "pass" and (not times or max(times) < at - freshness):
                    stale_pass[c] = True
    policies = policy_documents(engine, at)
    out: list[ClauseStatus] = []
    for cid, clause in catalog.items():
        recs = [r.within_review(clause.review_interval) for r in manual if r.control == cid]
        valid = [f"manual: {r.filename}" for r in recs if r.valid(at)]
        expired = [f"manual: {r.filename} (expired)" for r in recs if r.expired(at)]
        for label, ok in policies.get(cid, []):
            (valid if ok else expired).append(f"policy: {label}" + ("" if ok else " (expired)"))
        if clause.register_documents and rows:
            valid.append(f"risk register ({len(rows)} risks)")
        c = counts[cid]
        base = combine_status(
            c,
            stale_pass=stale_pass[cid],
            manual_valid=len(valid),
            manual_expired=len(expired),
            manual_control=not c,
            has_checks=bool(c),
        )
        reg: str | None = None
        status = base
        if clause.register is not None:
            verdicts = [
                r.status if clause.register == "treatment" else r.assessment_status for r in rows
            ]
            reg = aggregate(verdicts, STATUS_RANK) if verdicts else "no_evidence"
            if base in ("manual", "no_evidence") and reg in _SATISFIED:
                status = "undocumented"
            else:
                status = aggregate([base, reg], STATUS_RANK)
        document = "valid" if valid else "expired" if expired else "missing"
        out.append(
            ClauseStatus(
                id=cid,
                title=clause.title,
                status=status,
                expected_evidence=clause.expected_evidence,
                document=document,
                documents=valid + expired,
                counts=dict(sorted(c.items())),
                failing=failing[cid],
                register=reg,
                explanation=_explain(status, clause, document, c, reg),
            )
        )
    return out


def _explain(
    status: str, clause: Clause, document: str, counts: Mapping[str, int], reg: str | None
) -> str:
    record = f"`annexa evidence add --control {clause.id} --file …`"
    parts: list[str] = []
    if counts:
        parts.append(
            ", ".join(f"{k}={v}" for k, v in sorted(counts.items()))
            + " from "
            + ", ".join(clause.checks)
        )
    if reg is not None:
        parts.append(f"risk register: {reg}")
    judged = f" ({'; '.join(parts)})" if parts else ""
    if status == "pass":
        return f"documented and every judged part passes{judged}"
    if document == "missing" and status in ("manual", "undocumented", "no_evidence"):
        return f"no document in force{judged}; record it with {record}"
    if document == "expired" and status == "stale":
        return f"its document expired{judged}; record the current one with {record}"
    return f"{status}{judged}"


# -- the audit package ----------------------------------------------------------------------

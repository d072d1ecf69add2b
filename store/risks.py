"""The risk register at any instant: each risk with the live status of its treating
controls, and the flags an auditor asks about.

Where risks come from (each version with the instant Annexa first recorded it):

* the risks file, recorded as decisions (``decision.risks.risk``, see store/decisions.py)
  by ``annexa collect``, the daemon's start or ``annexa decisions sync``;
* Jira / ServiceNow processes of kind ``risk`` (``<prefix>.risk.ticket`` evidence),
  recorded when collected.

The policy (appetite and scales) is recorded with the file's risks
(``decision.risks.policy``); before any is recorded the configured one answers.

Flags of a risk at instant T:

* ``treatment_not_effective`` — a treating Annex A control is not passing at T (fails,
  errors, is stale, undocumented, excepted or lacks evidence), or a risk treated by
  modification names no Annex A control to evidence the treatment. Controls outside
  Annex A (``additional_controls``) are listed but cannot be judged by Annexa.
* ``residual_above_appetite`` — the effective residual score (the target residual when
  the treatment is effective, the inherent score when it is not) exceeds the appetite.
* ``review_overdue`` / ``no_review_date`` — the review date has passed, or none is set.

An **acceptance** (approver and date) is the owner's decision to bear the risk as it
stands: it clears the first two flags — from ``max(accepted_on, the instant the
acceptance was first recorded)`` on, never before (a backdated acceptance does not
rewrite the past). Review flags are never cleared by an acceptance.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, select, text

from store.decisions import DECISIONS_SOURCE, RISK_POLICY_TYPE, RISK_TYPE
from store.risk_input import Risk, RiskFileError, RiskPolicy, risk_from_ticket
from store.schema import blobs, evidence, sealed

#: Suffix of the evidence type ticketing connectors give risks (``jira.risk.ticket``).
TICKET_TYPE_SUFFIX = ".risk.ticket"
#: Control statuses that count as an effective treatment (as in crosswalks).
EFFECTIVE = frozenset({"pass", "not_applicable"})
TREATMENT_FLAGS = ("treatment_not_effective", "residual_above_appetite")


@dataclass(frozen=True)
class Version:
    """One recorded version of a risk (or of the policy)."""

    key: str
    resource_id: str
    source: str
    payload: dict[str, Any]
    recorded_at: datetime
    revoked_at: datetime | None
    #: When the acceptance this version carries was first recorded (None: none carried).
    acceptance_recorded_at: datetime | None = None

    def in_force(self, at: datetime) -> bool:
        return self.recorded_at <= at and (self.revoked_at is None or at < self.revoked_at)


def _versions(conn: Connection, *where: Any) -> list[Version]:
    """Every sealed version of the matching evidence items, tombstones closing them."""
    q = (
        select(
            evidence.c.key,
            evidence.c.resource_id,
            evidence.c.source,
            evidence.c.collected_at,
            evidence.c.content_hash,
            blobs.c.body,
        )
        .select_from(evidence.outerjoin(blobs, blobs.c.hash == evidence.c.content_hash))
        .where(sealed(evidence), *where)
        .order_by(evidence.c.key, evidence.c.collected_at, evidence.c.id)
    )
    rows = conn.execute(q).all()
    out: list[Version] = []
    for i, r in enumerate(rows):
        if r.content_hash is None or r.body is None:
            continue  # a tombstone (revoked / no longer seen), or a body removed by retention
        nxt = rows[i + 1] if i + 1 < len(rows) and rows[i + 1].key == r.key else None
        out.append(
            Version(
                r.key,
                r.resource_id,
                r.source,
                json.loads(r.body),
                r.collected_at,
                nxt.collected_at if nxt is not None else None,
            )
        )
    return out


def _acceptance_key(v: Version) -> tuple[Any, Any] | None:
    p = v.payload
    if "ticket" in p:
        d = p.get("derived") or {}
        fields = (p.get("ticket") or {}).get("risk") or {}
        if d.get("approved_at"):
            return ("transition", d["approved_at"])
        if fields.get("accepted_by") and fields.get("accepted_on"):
            return (fields["accepted_by"], fields["accepted_on"])
        return None
    if p.get("accepted_by") and p.get("accepted_on"):
        return (p["accepted_by"], p["accepted_on"])
    return None


def _with_acceptance_times(versions: list[Version]) -> list[Version]:
    """Mark each version with when its acceptance was first recorded: the earliest
    version of an unbroken run (no gap, same approver and date) carrying it."""
    out: list[Version] = []
    prev: Version | None = None
    since: datetime | None = None
    for v in versions:
        acc = _acceptance_key(v)
        contiguous = prev is not None and prev.key == v.key and prev.revoked_at == v.recorded_at
        if acc is None:
            since = None
        elif not (contiguous and prev is not None and _acceptance_key(prev) == acc):
            since = v.recorded_at
        out.append(
            Version(v.key, v.resource_id, v.source, v.payload, v.recorded_at, v.revoked_at, since)
        )
        prev = v
    return out


@dataclass
class RegisterHistory:
    """Every recorded version of every risk and of the policy, read once."""

    risks: list[Version]
    policies: list[Version]

    def policy_at(self, at: datetime, fallback: RiskPolicy) -> tuple[RiskPolicy, bool]:
        """The policy recorded at ``at`` (and True), or ``fallback`` (and False)."""
        found = [v for v in self.policies if v.in_force(at)]
        if not found:
            return fallback, False
        return RiskPolicy.from_payload(found[-1].payload), True

    def at(self, at: datetime) -> list[Version]:
        return [v for v in self.risks if v.in_force(at)]


def _ticket_types(conn: Connection) -> set[str]:
    """The stored resource types that are ticket risks (``*.risk.ticket``): the distinct
    types walked one index probe each (``ix_evidence_type``), not every evidence row."""
    walk = text(
        "WITH RECURSIVE t(rt) AS (SELECT min(resource_type) FROM evidence"
        " UNION ALL SELECT (SELECT min(e.resource_type) FROM evidence e"
        " WHERE e.resource_type > t.rt) FROM t WHERE t.rt IS NOT NULL)"
        " SELECT rt FROM t WHERE rt IS NOT NULL"
    )
    return {rt for (rt,) in conn.execute(walk) if rt.endswith(TICKET_TYPE_SUFFIX)}


def read_history(conn: Connection) -> RegisterHistory:
    """The file risks (decisions) and ticket risks (connector evidence), every version."""
    decided = _versions(
        conn, evidence.c.source == DECISIONS_SOURCE, evidence.c.resource_type == RISK_TYPE
    )
    tickets = _versions(
        conn,
        evidence.c.source != DECISIONS_SOURCE,
        evidence.c.resource_type.in_(sorted(_ticket_types(conn)) or [""]),
    )
    policies = _versions(
        conn, evidence.c.source == DECISIONS_SOURCE, evidence.c.resource_type == RISK_POLICY_TYPE
    )
    return RegisterHistory(_with_acceptance_times(decided + tickets), policies)


# -- evaluation -------------------------------------------------------------------------


@dataclass
class RiskRow:
    """One risk at one instant, judged."""

    id: str
    title: str
    source: str
    owner: str = ""
    asset: str = ""
    threat: str = ""
    vulnerability: str = ""
    likelihood: int | None = None
    impact: int | None = None
    inherent_score: int | None = None
    treatment: str = ""
    controls: dict[str, str] = field(default_factory=dict)  # control -> status at T
    additional_controls: list[str] = field(default_factory=list)
    target_residual: int | None = None
    effective_residual: int | None = None
    appetite: int | None = None
    review_date: str | None = None
    accepted_by: str | None = None
    accepted_on: datetime | None = None
    acceptance_recorded_at: datetime | None = None
    accepted: bool = False
    treatment_status: str = "not_applicable"
    flags: list[str] = field(default_factory=list)
    accepted_flags: list[str] = field(default_factory=list)
    #: The risk's treatment judged for clauses 6.1.3 / 8.3 (a control status).
    status: str = "pass"
    #: The risk's assessment judged for clauses 6.1.2 / 8.2 (``pass``, ``stale``, ``error``).
    assessment_status: str = "pass"
    notes: list[str] = field(default_factory=list)
    recorded_at: datetime | None = None
    url: str | None = None

    @property
    def flagged(self) -> bool:
        return bool(self.flags)

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "title": self.title,
            "source": self.source,
            "owner": self.owner,
            "asset": self.asset,
            "threat": self.threat,
            "vulnerability": self.vulnerability,
            "likelihood": self.likelihood,
            "impact": self.impact,
            "inherent_score": self.inherent_score,
            "treatment": self.treatment,
            "controls": self.controls,
            "additional_controls": self.additional_controls,
            "treatment_status": self.treatment_status,
            "target_residual": self.target_residual,
            "effective_residual": self.effective_residual,
            "appetite": self.appetite,
            "review_date": self.review_date,
            "accepted_by": self.accepted_by,
            "accepted_on": self.accepted_on.isoformat() if self.accepted_on else None,
            "acceptance_recorded_at": (
                self.acceptance_recorded_at.isoformat() if self.acceptance_recorded_at else None
            ),
            "accepted": self.accepted,
            "flags": self.flags,
            "accepted_flags": self.accepted_flags,
            "status": self.status,
            "assessment_status": self.assessment_status,
            "notes": self.notes,
            "recorded_at": self.recorded_at.isoformat() if self.recorded_at else None,
            "url": self.url,
        }


def _risk_of(v: Version, policy: RiskPolicy, catalog: Collection[str]) -> Risk:
    if "ticket" in v.payload:
        return risk_from_ticket(v.payload, policy.scales, catalog, v.source)
    return Risk.from_payload(v.payload)


def judge(
    risk: Risk,
    *,
    at: datetime,
    statuses: Mapping[str, str],
    policy: RiskPolicy,
    rank: Mapping[str, int],
    acceptance_recorded_at: datetime | None,
) -> RiskRow:
    """One risk at ``at``, given the statuses of the controls then (see module doc)."""
    from mappings.crosswalk import aggregate

    row = RiskRow(
        id=risk.id,
        title=risk.title,
        source=risk.source,
        owner=risk.owner,
        asset=risk.asset,
        threat=risk.threat,
        vulnerability=risk.vulnerability,
        likelihood=risk.likelihood,
        impact=risk.impact,
        inherent_score=risk.inherent_score,
        treatment=risk.treatment,
        controls={c: statuses.get(c, "no_evidence") for c in risk.controls},
        additional_controls=list(risk.additional_controls),
        target_residual=risk.target_residual,
        appetite=policy.appetite,
        review_date=risk.review_date.isoformat() if risk.review_date else None,
        accepted_by=risk.accepted_by,
        accepted_on=risk.accepted_on,
        url=risk.url,
    )
    if row.controls:
        row.treatment_status = aggregate(list(row.controls.values()), rank)
    elif risk.treatment == "modify":
        row.treatment_status = "no_evidence"
        row.notes.append("treated by modification, but no Annex A control is named")
    effective = row.treatment_status in EFFECTIVE
    if not effective:
        bad = [f"{c} {s}" for c, s in row.controls.items() if s not in EFFECTIVE]
        row.flags.append("treatment_not_effective")
        if bad:
            row.notes.append("treating control(s) not passing: " + ", ".join(bad))
    if risk.additional_controls:
        row.notes.append(
            f"{len(risk.additional_controls)} additional control(s) outside Annex A, "
            "not evidenced by Annexa"
        )
    row.effective_residual = risk.target_residual if effective else risk.inherent_score
    if row.effective_residual > policy.threshold:
        row.flags.append("residual_above_appetite")
        row.notes.append(f"residual {row.effective_residual} above the appetite {policy.threshold}")
    if risk.accepted_on is not None and acceptance_recorded_at is not None:
        row.acceptance_recorded_at = acceptance_recorded_at
        if risk.accepted_on > acceptance_recorded_at:
            pass  # accepted in the future of its recording: counts from accepted_on
        elif risk.accepted_on < acceptance_recorded_at - timedelta(days=1):
            row.notes.append(
                f"acceptance dated {risk.accepted_on:%Y-%m-%d} was recorded "
                f"{acceptance_recorded_at:%Y-%m-%d}: it counts from its recording"
            )
        row.accepted = at >= max(risk.accepted_on, acceptance_recorded_at)
    if row.accepted:
        row.accepted_flags = [f for f in row.flags if f in TREATMENT_FLAGS]
        row.flags = [f for f in row.flags if f not in TREATMENT_FLAGS]
    if risk.review_date is None:
        row.flags.append("no_review_date")
    elif at >= datetime.combine(risk.review_date + timedelta(days=1), time(0), tzinfo=UTC):
        row.flags.append("review_overdue")
    row.assessment_status = (
        "stale" if {"review_overdue", "no_review_date"} & set(row.flags) else "pass"
    )
    if not any(f in TREATMENT_FLAGS for f in row.flags):
        row.status = "excepted" if row.accepted_flags else "pass"
    elif "treatment_not_effective" in row.flags:
        row.status = row.treatment_status
    else:
        row.status = "fail"
    return row


def register_rows(
    history: RegisterHistory,
    *,
    at: datetime,
    statuses: Mapping[str, str],
    fallback: RiskPolicy,
    catalog: Collection[str],
    rank: Mapping[str, int],
) -> tuple[list[RiskRow], RiskPolicy, bool]:
    """Every risk in force at ``at``, judged; the policy used and whether it was recorded."""
    policy, recorded = history.policy_at(at, fallback)
    rows: list[RiskRow] = []
    for v in history.at(at):
        try:
            risk = _risk_of(v, policy, catalog)
        except (RiskFileError, KeyError, TypeError, ValueError) as exc:
            rows.append(
                RiskRow(
                    id=v.resource_id,
                    title="(unreadable risk)",
                    source=v.source,
                    status="error",
                    assessment_status="error",
                    treatment_status="error",
                    flags=["unreadable"],
                    notes=[str(exc)],
                    recorded_at=v.recorded_at,
                )
            )
            continue
        row = judge(
            risk,
            at=at,
            statuses=statuses,
            policy=policy,
            rank=rank,
            acceptance_recorded_at=v.acceptance_recorded_at,
        )
        row.recorded_at = v.recorded_at
        rows.append(row)
    rows.sort(key=lambda r: (r.source != "file", r.source, r.id))
    return rows, policy, recorded


def register_at(
    engine: Engine,
    index: Any,
    at: datetime,
    *,
    fallback: RiskPolicy,
    freshness: timedelta = timedelta(days=7),
    exceptions: Iterable[Any] = (),
    statuses: Callable[[datetime], Mapping[str, str]] | None = None,
) -> tuple[list[RiskRow], RiskPolicy, bool]:
    """The register at ``at`` with live control statuses (``store.status``)."""
    from store.status import STATUS_RANK, control_statuses

    if statuses is not None:
        now = statuses(at)
    else:
        now = {
            c.id: c.status
            for c in control_statuses(engine, index, at, freshness, exceptions=exceptions)
        }
    with engine.connect() as conn:
        history = read_history(conn)
    return register_rows(
        history, at=at, statuses=now, fallback=fallback, catalog=index.catalog, rank=STATUS_RANK
    )


def risks_by_control(rows: Iterable[RiskRow]) -> dict[str, list[dict[str, Any]]]:
    """For the Statement of Applicability: per Annex A control, the risks it treats.

    ``rows`` from :func:`register_at` (or :func:`register_rows`) at the SoA's instant;
    controls no risk names are absent.
    """
    out: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        for cid in r.controls:
            out.setdefault(cid, []).append(
                {
                    "risk": r.id,
                    "title": r.title,
                    "treatment": r.treatment,
                    "status": r.status,
                    "flags": list(r.flags),
                }
            )
    return out

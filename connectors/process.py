"""The declarative process model shared by the ticketing connectors (Jira, ServiceNow,
GitHub pull requests): populations, workflow history, SLAs and the checks that judge them.

Why it exists: auditors test *processes* by sampling *populations* — every production
change of the period, every incident, every leaver. Whether a change was approved before
it was implemented is a fact of its **transition history**, not of its current status,
so every ticket is stored with that history and with the facts derived from it under
the process definition the operator declared.

A process (one per kind per connector instance) is declared in the connector's options::

    [[connectors.options.processes]]
    kind = "change"                       # change | emergency_change | incident |
                                          # vulnerability | access_review | leaver |
                                          # dr_test | internal_audit | nonconformity |
                                          # management_review | risk
    jql = "project = CHG"                 # (Jira) / table + query (ServiceNow) / repos (GitHub)
    approved_states = ["Approved"]        # entering one of these states = approved
    implemented_states = ["Done"]         # … = implemented (deployed)
    resolved_states = ["Done", "Closed"]  # … = resolved / closed
    severity_field = "priority"           # incidents, vulnerabilities
    sla_days = { Highest = 2, High = 7, default = 30 }

State names match the history's target state case-insensitively, by label or raw value.

Evidence of one item (``<prefix>.<kind>.ticket`` / ``.pull_request``) is::

    {"process": kind,
     "ticket":  {key, title, url, type, status, severity, created, resolved,
                 requested_by, assignee, labels, links, …},
     "history": [{"at", "by", "field", "from", "to", "to_value", "id"}, …]  (sorted),
     "derived": {approved_at, approved_by, implemented_at, implemented_by, …, due_at}}

Nothing in it depends on the time of reading (no ``updated``, no view counts, no
"overdue" flag), so an unchanged ticket is an unchanged evidence version, and a ticket
edited later adds exactly one new version. ``derived`` holds only timestamps and the
declared thresholds; checks compare them with the clock when they are evaluated.

Each population also gets one summary evidence (``<prefix>.<kind>.population``): how
many items passed/failed each check and, for access reviews, which periods had a
completed review — judged by ``<prefix>.access_review.every_period`` (likewise DR tests
and internal audits: ``<prefix>.dr_test.every_period``, ``<prefix>.internal_audit.…``,
management reviews: ``<prefix>.management_review.every_period``).

Kind ``risk`` feeds the risk register (:mod:`store.risks`) rather than checks: each item
carries ``ticket["risk"]``, the values of the fields named in ``risk_fields`` (likelihood,
impact, treatment, treating controls …), and entering an ``approved_states`` state is the
owner's acceptance of the risk (who and when, from the history).
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import ExitStack
from datetime import UTC, date, datetime, timedelta
from typing import Any, ClassVar, Literal, get_args
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from connectors.http import HttpClient, MalformedResponseError, SourceError
from connectors.kit import ERRORS_KEY, GLOBAL, EvidenceMissing, run_unit
from core.checks import (
    REGISTRY,
    CheckRegistry,
    CheckSpec,
    Verdict,
    check,
    failed,
    not_applicable,
    passed,
)
from core.connector import (
    CollectContext,
    Connector,
    ConnectorOptions,
    SecretUnavailableError,
)
from core.records import Coverage, Evidence, Record

Kind = Literal[
    "change",
    "emergency_change",
    "incident",
    "vulnerability",
    "access_review",
    "leaver",
    "dr_test",
    "internal_audit",
    "nonconformity",
    "management_review",
    "risk",
]
KINDS: tuple[str, ...] = get_args(Kind)
#: Kinds that must happen in every review period (the population summary lists the
#: periods and ``every_period`` judges them): what each completed item is called.
PERIODIC_KINDS: dict[str, str] = {
    "access_review": "access review",
    "dr_test": "disaster-recovery / continuity test",
    "internal_audit": "internal audit",
    "management_review": "management review",
}
#: Kinds whose items are judged against a resolution deadline set by their severity.
SEVERITY_KINDS = frozenset({"incident", "vulnerability", "nonconformity"})
ReviewPeriod = Literal["monthly", "quarterly", "semiannual", "annual"]
_PERIOD_MONTHS = {"monthly": 1, "quarterly": 3, "semiannual": 6, "annual": 12}
#: Risk register fields a ``risk`` process may read from its source (register name →
#: the source's field id or name); ``likelihood`` and ``impact`` are required.
RISK_FIELDS = frozenset({
    "asset", "threat", "vulnerability", "owner", "likelihood", "impact", "treatment",
    "controls", "residual_likelihood", "residual_impact", "residual_score", "review_date",
    "accepted_by", "accepted_on",
})

#: Most failing keys listed per check in a population summary.
MAX_LISTED = 50
#: Most review keys listed per period in an access-review summary.
MAX_PERIOD_KEYS = 20


# --------------------------------------------------------------------------- time


def parse_ts(value: Any) -> datetime:
    """A UTC datetime from the sources' formats.

    Jira ``2026-01-15T10:00:00.000+0000``, ServiceNow ``2026-01-15 10:00:00`` (UTC),
    GitHub ``2026-01-15T10:00:00Z``; dates become midnight UTC.
    """
    if isinstance(value, datetime):
        dt = value
    elif isinstance(value, date):
        dt = datetime(value.year, value.month, value.day)
    elif isinstance(value, str) and value.strip():
        text = value.strip()
        if text.endswith("Z"):
            text = text[:-1] + "+00:00"
        dt = datetime.fromisoformat(text)
    else:
        raise ValueError(f"not a timestamp: {value!r}")
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC)


def iso(value: Any) -> str | None:
    """``YYYY-MM-DDTHH:MM:SSZ`` (UTC, to the second) or None for empty values.

    One fixed format, so stored timestamps compare as strings and never differ by
    representation alone (``+0000`` vs ``Z``, milliseconds) between two reads.
    """
    if value in (None, ""):
        return None
    return parse_ts(value).strftime("%Y-%m-%dT%H:%M:%SZ")


def _plus(ts: str | None, *, days: float = 0, hours: float = 0) -> str | None:
    if ts is None:
        return None
    return iso(parse_ts(ts) + timedelta(days=days, hours=hours))


# --------------------------------------------------------------------------- periods


def period_bounds(day: date, period: ReviewPeriod) -> tuple[date, date, str]:
    """``(start, end_inclusive, label)`` of the review period containing ``day``.

    Labels: ``2026-03`` (monthly), ``2026-Q1``, ``2026-H1``, ``2026`` (annual).
    """
    months = _PERIOD_MONTHS[period]
    first_month = (day.month - 1) // months * months + 1
    start = date(day.year, first_month, 1)
    nxt_month = first_month + months
    nxt = date(day.year + (nxt_month - 1) // 12, (nxt_month - 1) % 12 + 1, 1)
    end = nxt - timedelta(days=1)
    if period == "monthly":
        label = f"{day.year}-{first_month:02d}"
    elif period == "quarterly":
        label = f"{day.year}-Q{(first_month - 1) // 3 + 1}"
    elif period == "semiannual":
        label = f"{day.year}-H{(first_month - 1) // 6 + 1}"
    else:
        label = f"{day.year}"
    return start, end, label


def periods_between(first: date, last: date, period: ReviewPeriod) -> list[tuple[date, date, str]]:
    """Every review period from the one containing ``first`` to the one containing ``last``."""
    out: list[tuple[date, date, str]] = []
    day = first
    while day <= last:
        start, end, label = period_bounds(day, period)
        out.append((start, end, label))
        day = end + timedelta(days=1)
    return out


# --------------------------------------------------------------------------- process model


class ProcessBase(BaseModel):
    """One declared process: which items form its population and how they are judged.

    Connectors subclass it to add their selector (``jql``, ``table``/``query``,
    ``repos``). Thresholds live here, not in check parameters, so that the evidence
    records the rule in force for each item and the population summary agrees with
    the findings.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: Whether this source expresses the process as workflow states (GitHub does not).
    uses_states: ClassVar[bool] = True

    kind: Kind
    approved_states: list[str] = Field(default_factory=list)
    implemented_states: list[str] = Field(default_factory=list)
    resolved_states: list[str] = Field(default_factory=list)
    acknowledged_states: list[str] = Field(default_factory=list)
    reviewed_states: list[str] = Field(default_factory=list)
    severity_field: str | None = None
    #: Days to resolve per severity label (case-insensitive); ``default`` for the rest.
    sla_days: dict[str, float] = Field(default_factory=dict)
    #: Hours to acknowledge an incident per severity label; ``default`` for the rest.
    ack_sla_hours: dict[str, float] = Field(default_factory=dict)
    #: Severities whose incidents need a linked post-incident review.
    review_required_for: list[str] = Field(default_factory=list)
    #: Emergency changes: days after implementation by which the review must be done.
    #: Incidents: days after resolution by which the post-incident review must be linked.
    review_within_days: float = Field(5, ge=0)
    #: Leavers (or any kind without ``sla_days``): days from creation to closure.
    close_within_days: float | None = Field(None, ge=0)
    #: Access reviews: one must be completed in every such period.
    review_period: ReviewPeriod | None = None
    #: Access reviews: the first period judged is the one containing this date.
    periods_from: date | None = None
    #: False: the requester may not be the (only) approver either.
    requester_may_approve: bool = False
    #: Kind ``risk``: register field → the source's field (see :data:`RISK_FIELDS`).
    risk_fields: dict[str, str] = Field(default_factory=dict)

    @field_validator("risk_fields")
    @classmethod
    def _risk_fields(cls, v: dict[str, str]) -> dict[str, str]:
        unknown = sorted(set(v) - RISK_FIELDS)
        if unknown:
            raise ValueError(
                f"unknown risk field(s) {', '.join(unknown)} "
                f"(allowed: {', '.join(sorted(RISK_FIELDS))})"
            )
        return v

    @field_validator("sla_days", "ack_sla_hours")
    @classmethod
    def _non_negative(cls, v: dict[str, float]) -> dict[str, float]:
        for label, days in v.items():
            if days < 0:
                raise ValueError(f"{label!r}: must not be negative")
        return {k.casefold(): float(x) for k, x in v.items()}

    @model_validator(mode="after")
    def _complete(self) -> ProcessBase:
        missing = [name for name in self.required_fields() if not getattr(self, name)]
        if missing:
            raise ValueError(
                f"a {self.kind} process needs {', '.join(missing)} "
                "(see config.example.toml and docs/permissions)"
            )
        return self

    def required_fields(self) -> list[str]:
        """The options a process of this kind cannot be judged without."""
        k = self.kind
        need: list[str] = []
        if self.uses_states:
            need += {
                "change": ["approved_states", "implemented_states"],
                "emergency_change": ["implemented_states"],
                "incident": ["resolved_states"],
                "vulnerability": ["resolved_states"],
                "access_review": ["resolved_states"],
                "leaver": ["resolved_states"],
                "dr_test": ["resolved_states"],
                "internal_audit": ["resolved_states"],
                "nonconformity": ["resolved_states"],
                "management_review": ["resolved_states"],
                "risk": [],
            }[k]
            if k == "emergency_change" and not (self.reviewed_states or self.approved_states):
                need.append("reviewed_states")
        if k in SEVERITY_KINDS:
            need += ["severity_field", "sla_days"]
        if k in PERIODIC_KINDS:
            need += ["review_period", "periods_from"]
        if (
            k in ("leaver", "dr_test", "internal_audit", "management_review")
            and not self.sla_days
            and self.close_within_days is None
        ):
            need.append("close_within_days")
        if k == "risk" and not {"likelihood", "impact"} <= set(self.risk_fields):
            need.append("risk_fields (with likelihood and impact)")
        elif k != "risk" and self.risk_fields:
            raise ValueError("risk_fields is only for processes of kind risk")
        return need

    def sla_for(self, severity: str | None) -> float | None:
        """Days allowed for ``severity``, ``default`` otherwise, ``close_within_days`` last."""
        return _lookup_sla(self.sla_days, severity, self.close_within_days)


def _lookup_sla(table: Mapping[str, float], severity: str | None, fallback: float | None) -> Any:
    if severity and severity.casefold() in table:
        return table[severity.casefold()]
    if "default" in table:
        return table["default"]
    return fallback if not table else None


def unique_kinds(processes: Sequence[ProcessBase]) -> list[ProcessBase]:
    """Validator helper: at most one process per kind (the kind is the unit of coverage)."""
    seen: set[str] = set()
    for p in processes:
        if p.kind in seen:
            raise ValueError(
                f"two processes of kind {p.kind!r}: combine them into one selector "
                "(e.g. `project in (A, B)`), or use two connector instances"
            )
        seen.add(p.kind)
    return list(processes)


class ProcessOptions(ConnectorOptions):
    """Options of a process connector: its subclass declares ``processes``, a list of
    its own :class:`ProcessBase` subclass, validated here to hold one process per kind."""

    @field_validator("processes", check_fields=False)
    @classmethod
    def _kinds(cls, v: list[ProcessBase]) -> list[ProcessBase]:
        return unique_kinds(v)


def url_scope(url: str) -> str:
    """The scope of a source known by its URL: host and path, e.g.
    ``example.atlassian.net/jira`` (the scheme and a trailing slash say nothing)."""
    parts = urlsplit(url)
    return f"{parts.netloc}{parts.path}".rstrip("/")


# --------------------------------------------------------------------------- items


def person(pid: Any, name: Any = None) -> dict[str, Any] | None:
    """``{"id", "name"}`` — the id is what segregation of duties compares."""
    if pid in (None, ""):
        return None
    return {"id": str(pid), "name": str(name) if name not in (None, "") else None}


def history_entry(
    *,
    at: Any,
    by: dict[str, Any] | None,
    field: str,
    to: Any,
    frm: Any = None,
    to_value: Any = None,
    entry_id: Any = None,
) -> dict[str, Any]:
    """One change of one field: who, what, when."""
    return {
        "at": iso(at),
        "by": by,
        "field": field,
        "from": None if frm is None else str(frm),
        "to": None if to is None else str(to),
        "to_value": None if to_value is None else str(to_value),
        "id": None if entry_id is None else str(entry_id),
    }


def sort_history(entries: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Chronological, with a total order so two reads of the same history are identical."""
    return sorted(
        entries,
        key=lambda e: (
            e["at"] or "",
            _id_key(e.get("id")),
            e["field"],
            e.get("from") or "",
            e.get("to") or "",
            (e.get("by") or {}).get("id") or "",
        ),
    )


def _id_key(value: Any) -> tuple[int, str]:
    text = "" if value is None else str(value)
    return (int(text), "") if text.isdigit() else (0, text)


def _fold(states: Iterable[str]) -> frozenset[str]:
    return frozenset(s.casefold() for s in states)


def _hits(entry: Mapping[str, Any], names: frozenset[str]) -> bool:
    for key in ("to", "to_value"):
        v = entry.get(key)
        if v is not None and v.casefold() in names:
            return True
    return False


def _in_state(ticket: Mapping[str, Any], names: frozenset[str]) -> bool:
    return any(
        v is not None and str(v).casefold() in names
        for v in (ticket.get("status"), ticket.get("status_value"))
    )


def _distinct(people: Iterable[dict[str, Any] | None], system: frozenset[str]) -> list[dict]:
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    for p in people:
        if not p or p["id"] in seen or p["id"].casefold() in system:
            continue
        seen.add(p["id"])
        out.append(p)
    return out


def derive(
    process: ProcessBase,
    ticket: Mapping[str, Any],
    history: Sequence[Mapping[str, Any]],
    *,
    state_fields: Iterable[str],
    system_users: Iterable[str] = (),
) -> dict[str, Any]:
    """The process facts of one ticket, from its (sorted) history and the declaration.

    * approved: first entry into an ``approved_states`` state (for emergency changes also
      a ``reviewed_states`` one); approvers are every actor of such an entry (system
      accounts excluded).
    * implemented: first entry into an ``implemented_states`` state; implementers are its
      actor and the assignee. A ticket *created* in such a state (no transition) counts as
      implemented at creation by its requester; one that moved between states but never
      into the implemented state it is in has a ``history_gap`` (checks are ``error``).
    * resolved: first entry into a ``resolved_states`` state, else the ticket's own
      resolution timestamp when it is in such a state now.
    * acknowledged: first entry into an ``acknowledged_states`` or resolved state.
    * reviewed (emergency changes): first entry into a ``reviewed_states`` state (or, if
      none are declared, an approved state) at or after implementation.
    * due dates: creation + SLA of the severity; acknowledgement due likewise in hours.
    """
    fields = frozenset(state_fields)
    system = _fold(system_users)
    moves = [h for h in history if h.get("field") in fields and h.get("at")]

    def first(states: Iterable[str], after: str | None = None) -> Mapping[str, Any] | None:
        names = _fold(states)
        if not names:
            return None
        for h in moves:
            if after is not None and h["at"] < after:
                continue
            if _hits(h, names):
                return h
        return None

    created = ticket.get("created")
    requester = ticket.get("requested_by")
    assignee = ticket.get("assignee")

    # An emergency change's after-the-fact review is its approval.
    approved_names = _fold(
        [*process.approved_states, *process.reviewed_states]
        if process.kind == "emergency_change"
        else process.approved_states
    )
    approvals = [h for h in moves if _hits(h, approved_names)] if approved_names else []
    approved_at = approvals[0]["at"] if approvals else None
    approvers = _distinct((h.get("by") for h in approvals), system)

    impl = first(process.implemented_states)
    implemented_at: str | None = impl["at"] if impl else None
    impl_actor = impl.get("by") if impl else None
    gap: str | None = None
    if impl is None and _in_state(ticket, _fold(process.implemented_states)):
        if moves:
            # It moved between states, yet never into the state it is in: the history
            # (or the declared state names) cannot be trusted to judge it.
            gap = (
                f"status {ticket.get('status')!r} is an implemented state, but no transition "
                "into an implemented state is recorded (check the declared state names)"
            )
        else:
            implemented_at, impl_actor = created, requester
    implementers = _distinct([impl_actor, assignee], system) if implemented_at is not None else []

    res = first(process.resolved_states)
    resolved_at: str | None = res["at"] if res else None
    if resolved_at is None and _in_state(ticket, _fold(process.resolved_states)):
        resolved_at = ticket.get("resolved") or created

    ack = first([*process.acknowledged_states, *process.resolved_states])
    acknowledged_at: str | None = ack["at"] if ack else None
    if acknowledged_at is None and resolved_at is not None and process.acknowledged_states:
        acknowledged_at = resolved_at

    reviewed = None
    if process.kind == "emergency_change" and implemented_at is not None:
        reviewed = first(process.reviewed_states or process.approved_states, implemented_at)

    severity = ticket.get("severity")
    sla = process.sla_for(severity) if process.kind != "change" else None
    ack_hours = (
        _lookup_sla(process.ack_sla_hours, severity, None)
        if process.kind == "incident" and process.ack_sla_hours
        else None
    )
    review_required = process.kind == "incident" and bool(
        severity and severity.casefold() in _fold(process.review_required_for)
    )
    excluded = [p["id"] for p in implementers]
    if not process.requester_may_approve and requester and requester["id"] not in excluded:
        excluded.append(requester["id"])
    if process.kind == "emergency_change":
        review_due = _plus(implemented_at, days=process.review_within_days)
    elif review_required:
        review_due = _plus(resolved_at, days=process.review_within_days)
    else:
        review_due = None
    return {
        "kind": process.kind,
        "requested_by": requester,
        "approved_at": approved_at,
        "approved_by": approvers,
        "implemented_at": implemented_at,
        "implemented_by": implementers,
        "segregated_from": sorted(excluded),
        "acknowledged_at": acknowledged_at,
        "resolved_at": resolved_at,
        "reviewed_at": reviewed["at"] if reviewed else None,
        "reviewed_by": _distinct([reviewed.get("by")], system) if reviewed else [],
        "review_due_at": review_due,
        "severity": severity,
        "sla_days": sla,
        "due_at": _plus(created, days=sla) if sla is not None else None,
        "ack_sla_hours": ack_hours,
        "ack_due_at": _plus(created, hours=ack_hours) if ack_hours is not None else None,
        "review_required": review_required,
        "reviews": sorted({str(ln["key"]) for ln in ticket.get("links", []) if ln.get("review")}),
        "history_gap": gap,
    }


def item_payload(
    process: ProcessBase,
    ticket: dict[str, Any],
    history: list[dict[str, Any]],
    *,
    state_fields: Iterable[str],
    system_users: Iterable[str] = (),
    errors: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The evidence payload of one item (see the module docstring)."""
    history = sort_history(history)
    payload: dict[str, Any] = {
        "process": process.kind,
        "ticket": ticket,
        "history": history,
        "derived": derive(
            process, ticket, history, state_fields=state_fields, system_users=system_users
        ),
    }
    if errors:
        payload[ERRORS_KEY] = dict(sorted(errors.items()))
    return payload


class TicketReader:
    """Reads one process's tickets from a source (thread-safe) and turns each into
    evidence ``<prefix>.<kind>.ticket``. ``settings`` has the source's ``system_users``."""

    #: The connector's prefix.
    prefix: ClassVar[str]
    #: The source's fields whose changes are state transitions.
    state_fields: ClassVar[tuple[str, ...]]

    def __init__(self, http: HttpClient, settings: Any, process: Any, scope: str) -> None:
        self.http = http
        self.s = settings
        self.process = process
        self.scope = scope

    def evidence(
        self,
        key: str,
        ticket: dict[str, Any],
        history: list[dict[str, Any]],
        errors: Mapping[str, str],
    ) -> Evidence:
        """The evidence of one ticket: its facts, history and derived process facts."""
        payload = item_payload(
            self.process,
            ticket,
            history,
            state_fields=self.state_fields,
            system_users=self.s.system_users,
            errors=errors,
        )
        rtype = f"{self.prefix}.{self.process.kind}.ticket"
        return Evidence(self.scope, GLOBAL, rtype, key, payload)


# --------------------------------------------------------------------------- checks


def _now() -> datetime:
    return datetime.now(UTC)


def _derived(payload: Mapping[str, Any], *needs_history: bool) -> Mapping[str, Any]:
    """``payload["derived"]``, or EvidenceMissing when the history it needs is unreadable."""
    errors = payload.get(ERRORS_KEY) or {}
    if needs_history and needs_history[0] and errors.get("history"):
        raise EvidenceMissing(f"the transition history could not be read: {errors['history']}")
    derived = payload.get("derived")
    if not isinstance(derived, Mapping):
        raise EvidenceMissing("the evidence has no derived process facts")
    if needs_history and needs_history[0] and derived.get("history_gap"):
        raise EvidenceMissing(str(derived["history_gap"]))
    return derived


def _names(people: Sequence[Mapping[str, Any]]) -> str:
    return ", ".join(p.get("name") or p["id"] for p in people) or "nobody"


def _key(payload: Mapping[str, Any]) -> str:
    return str((payload.get("ticket") or {}).get("key") or "item")


def approved_before_implemented(payload: Mapping[str, Any], _params: Mapping[str, Any]) -> Verdict:
    """A.8.32: an approval recorded in the history before the change went live."""
    d = _derived(payload, True)
    impl, appr = d.get("implemented_at"), d.get("approved_at")
    if impl is None:
        return not_applicable(f"{_key(payload)} is not implemented yet")
    if appr is None:
        discounted = d.get("discounted_approvals") or []
        why = "; ".join(f"{(x.get('by') or {}).get('id')}: {x.get('reason')}" for x in discounted)
        extra = f" (approvals not counted: {why})" if why else ""
        return failed(
            f"{_key(payload)} was implemented at {impl} without any recorded approval{extra}"
        )
    if parse_ts(appr) > parse_ts(impl):
        return failed(
            f"{_key(payload)} was approved at {appr} by {_names(d.get('approved_by') or [])}, "
            f"after it was implemented at {impl}"
        )
    return passed(
        f"{_key(payload)} approved at {appr} by {_names(d.get('approved_by') or [])}, "
        f"before implementation at {impl}"
    )


def approver_not_implementer(payload: Mapping[str, Any], _params: Mapping[str, Any]) -> Verdict:
    """A.5.3: at least one approver who neither implemented nor (unless allowed) requested."""
    d = _derived(payload, True)
    approvers = d.get("approved_by") or []
    if not approvers:
        if d.get("approved_at") is not None:
            raise EvidenceMissing("an approval is recorded but its approver is unknown")
        return not_applicable(f"{_key(payload)} has no recorded approval to segregate")
    excluded = set(d.get("segregated_from") or [])
    independent = [a for a in approvers if a["id"] not in excluded]
    if independent:
        return passed(
            f"{_key(payload)} approved by {_names(independent)}, independent of "
            f"implementer(s) {_names(d.get('implemented_by') or [])}"
        )
    return failed(
        f"{_key(payload)} approved only by {_names(approvers)}, who also implemented or "
        "requested it (no segregation of duties)"
    )


def reviewed_within_window(payload: Mapping[str, Any], _params: Mapping[str, Any]) -> Verdict:
    """A.8.32: an emergency change is reviewed after the fact within the declared days."""
    d = _derived(payload, True)
    impl, reviewed, due = d.get("implemented_at"), d.get("reviewed_at"), d.get("review_due_at")
    if impl is None or due is None:
        return not_applicable(f"{_key(payload)} is not implemented yet")
    if reviewed is not None:
        if parse_ts(reviewed) <= parse_ts(due):
            return passed(f"{_key(payload)} implemented {impl}, reviewed {reviewed} (due {due})")
        return failed(
            f"{_key(payload)} implemented {impl}, reviewed late at {reviewed} (due {due})"
        )
    if _now() > parse_ts(due):
        return failed(f"{_key(payload)} implemented {impl} and not reviewed by {due}")
    return not_applicable(f"{_key(payload)} implemented {impl}; review due by {due}")


def _within(payload: Mapping[str, Any], done_key: str, due_key: str, what: str) -> Verdict:
    d = _derived(payload, True)
    key = _key(payload)
    severity = d.get("severity")
    due = d.get(due_key)
    if due is None:
        if what == "acknowledgement":
            return not_applicable(f"{key}: no acknowledgement SLA for severity {severity!r}")
        if d.get("kind") in SEVERITY_KINDS and not severity:
            return failed(f"{key} has no severity, so no resolution deadline can apply")
        raise EvidenceMissing(f"no SLA is declared for severity {severity!r}")
    done = d.get(done_key)
    sev = f" ({severity})" if severity else ""
    if done is not None:
        if parse_ts(done) <= parse_ts(due):
            return passed(f"{key}{sev} {what} at {done}, within the SLA (due {due})")
        return failed(f"{key}{sev} {what} at {done}, after the SLA deadline {due}")
    if _now() > parse_ts(due):
        return failed(f"{key}{sev} still without {what}; the SLA deadline {due} has passed")
    return not_applicable(f"{key}{sev} open; {what} due by {due}")


def acknowledged_within_sla(payload: Mapping[str, Any], _params: Mapping[str, Any]) -> Verdict:
    """A.5.25: the incident was picked up (assessed) within its severity's time."""
    return _within(payload, "acknowledged_at", "ack_due_at", "acknowledgement")


def resolved_within_sla(payload: Mapping[str, Any], _params: Mapping[str, Any]) -> Verdict:
    """A.5.26 / A.8.8 / A.6.5: resolved or closed by the deadline of its severity."""
    return _within(payload, "resolved_at", "due_at", "resolution")


def post_incident_review(payload: Mapping[str, Any], _params: Mapping[str, Any]) -> Verdict:
    """A.5.27: a high-severity incident links to a post-incident review."""
    d = _derived(payload, False)
    key = _key(payload)
    if not d.get("review_required"):
        return not_applicable(f"{key}: severity {d.get('severity')!r} needs no review")
    reviews = d.get("reviews") or []
    if reviews:
        return passed(f"{key} links post-incident review {', '.join(reviews)}")
    resolved, due = d.get("resolved_at"), d.get("review_due_at")
    if resolved is None:
        return not_applicable(f"{key} is not resolved yet; its review comes after")
    if due is not None and _now() <= parse_ts(due):
        return not_applicable(f"{key} resolved {resolved}; review due by {due}")
    return failed(
        f"{key} ({d.get('severity')}) resolved {resolved} with no linked post-incident review"
    )


def every_period(payload: Mapping[str, Any], _params: Mapping[str, Any]) -> Verdict:
    """A.5.18 / A.5.30 / A.5.35: a completed item (access review, DR test, internal
    audit) in every elapsed review period."""
    what = PERIODIC_KINDS.get(str(payload.get("process")), "review")
    periods = payload.get("periods")
    if not isinstance(periods, list):
        raise EvidenceMissing("the population summary has no review periods")
    judged = [p for p in periods if p.get("status") != "in_progress"]
    if not judged:
        return not_applicable("no review period has ended yet")
    missing = [p["period"] for p in judged if p.get("status") == "missing"]
    if missing:
        return failed(
            f"no {what} completed in {', '.join(missing)} "
            f"({len(judged) - len(missing)} of {len(judged)} periods covered)"
        )
    return passed(
        f"a {what} was completed in each of {len(judged)} periods "
        f"({judged[0]['period']} to {judged[-1]['period']})"
    )


#: (kind, name, function, severity) of every per-item check.
_ITEM_CHECKS: tuple[tuple[str, str, Callable[..., Verdict], str], ...] = (
    ("change", "approved_before_implemented", approved_before_implemented, "high"),
    ("change", "approver_not_implementer", approver_not_implementer, "high"),
    ("emergency_change", "reviewed_within_window", reviewed_within_window, "high"),
    ("emergency_change", "approver_not_implementer", approver_not_implementer, "high"),
    ("incident", "acknowledged_within_sla", acknowledged_within_sla, "medium"),
    ("incident", "resolved_within_sla", resolved_within_sla, "high"),
    ("incident", "post_incident_review", post_incident_review, "medium"),
    ("vulnerability", "closed_within_sla", resolved_within_sla, "high"),
    ("leaver", "closed_within_sla", resolved_within_sla, "high"),
    ("dr_test", "closed_within_sla", resolved_within_sla, "medium"),
    ("internal_audit", "closed_within_sla", resolved_within_sla, "medium"),
    ("nonconformity", "closed_within_sla", resolved_within_sla, "high"),
    ("management_review", "closed_within_sla", resolved_within_sla, "medium"),
)

_TEXT: dict[str, tuple[str, str, str]] = {
    # name: (title, rationale, remediation) — {noun} is "ticket" or "pull request".
    "approved_before_implemented": (
        "Change approved before it was implemented",
        "Change management requires authorisation before a change reaches production; the "
        "order is read from the {noun}'s transition history, not its current status.",
        "Enforce an approval step in the workflow before the implemented state, and review "
        "the listed changes retrospectively.",
    ),
    "approver_not_implementer": (
        "Approver differs from the implementer",
        "Segregation of duties: a person approving their own change defeats the approval.",
        "Require approval from someone other than the assignee/implementer and requester "
        "(workflow condition or approver group).",
    ),
    "reviewed_within_window": (
        "Emergency change reviewed after the fact within the declared days",
        "Emergency changes skip prior approval; a prompt retrospective review keeps them "
        "under change control.",
        "Review and close each emergency change within review_within_days of implementation.",
    ),
    "acknowledged_within_sla": (
        "Incident acknowledged within its severity's SLA",
        "Security events must be assessed promptly; acknowledgement time shows triage works.",
        "Staff the on-call rota and alerting so incidents are picked up within the SLA.",
    ),
    "resolved_within_sla": (
        "Incident resolved within its severity's SLA",
        "Incidents must be responded to according to documented procedures and timelines.",
        "Escalate incidents approaching their deadline; revisit SLAs that are never met.",
    ),
    "post_incident_review": (
        "High-severity incident has a linked post-incident review",
        "Learning from incidents requires a review of every serious one.",
        "Link a post-incident review to every incident of the listed severities.",
    ),
    "closed_within_sla": (
        "Closed within the SLA of its severity",
        "Remediation deadlines by severity bound how long the exposure lasts.",
        "Track open items against their deadline and escalate before it passes.",
    ),
    # Kind-specific texts ("kind.name") take precedence over the generic ones.
    "dr_test.closed_within_sla": (
        "Disaster-recovery / continuity test completed by its due date",
        "ICT continuity plans must be tested to show they work; a scheduled DR test that "
        "is not carried out and closed by its due date leaves readiness unverified.",
        "Run the scheduled test, record its results and close the {noun}; reschedule "
        "with a documented reason rather than letting it lapse.",
    ),
    "internal_audit.closed_within_sla": (
        "Internal audit completed by its due date",
        "Internal audits and independent reviews must be carried out at planned "
        "intervals; an audit that overruns its schedule leaves the programme incomplete.",
        "Complete the audit and its report, or re-plan it formally in the audit programme.",
    ),
    "nonconformity.closed_within_sla": (
        "Nonconformity corrected within the deadline of its severity",
        "Nonconformities must be reacted to, corrected and their causes addressed "
        "(ISO/IEC 27001 clause 10.2); a deadline per severity bounds how long a known "
        "control failure persists.",
        "Take the corrective action, verify its effectiveness and close the {noun}; "
        "escalate those approaching their deadline.",
    ),
    "management_review.closed_within_sla": (
        "Management review or its action completed by its due date",
        "Top management must review the ISMS at planned intervals and act on the results "
        "(ISO/IEC 27001 clause 9.3); a review or review action left open past its due date "
        "shows the review's decisions are not carried out.",
        "Hold the review as planned and close each resulting action by its due date, or "
        "re-plan it with a recorded decision.",
    ),
}

_EVERY_PERIOD_TEXT: dict[str, tuple[str, str, str, str]] = {
    # kind: (title, rationale, remediation, severity)
    "access_review": (
        "an access review was completed in every review period",
        "Access rights must be reviewed at planned intervals; a period without a completed "
        "review is a gap in the control.",
        "Complete (and record) an access review in every period; a late review does not "
        "cover the missed period.",
        "high",
    ),
    "dr_test": (
        "a disaster-recovery / continuity test was completed in every period",
        "Information security continuity and ICT readiness must be verified by tests at "
        "planned intervals; a period without a completed DR test leaves recovery unproven.",
        "Schedule DR/continuity tests in every period and close their tickets with results; "
        "a later test does not cover the missed period.",
        "high",
    ),
    "internal_audit": (
        "an internal audit was completed in every period",
        "The approach to information security must be independently reviewed at planned "
        "intervals (internal audit programme); a period without a completed audit is a gap.",
        "Complete an internal audit in every period of the audit programme and record it.",
        "high",
    ),
    "management_review": (
        "a management review was completed in every period",
        "Top management must review the ISMS at planned intervals (ISO/IEC 27001 clause "
        "9.3); a period without a completed management review is a gap.",
        "Hold and record a management review in every planned period; a later review does "
        "not cover the missed period.",
        "high",
    ),
}


def register_process_checks(
    prefix: str,
    source_label: str,
    *,
    kinds: Iterable[str] = KINDS,
    item: str = "ticket",
    registry: CheckRegistry = REGISTRY,
) -> list[CheckSpec]:
    """Register the per-item and population checks of ``kinds`` for one source.

    Check ids are ``{prefix}.{kind}.{name}``; they judge evidence of type
    ``{prefix}.{kind}.{item}`` (and ``{prefix}.{kind}.population`` for the kinds of
    :data:`PERIODIC_KINDS`).
    """
    wanted = set(kinds)
    noun = item.replace("_", " ")
    specs: list[CheckSpec] = []
    for kind, name, func, severity in _ITEM_CHECKS:
        if kind not in wanted:
            continue
        title, rationale, remediation = _TEXT.get(f"{kind}.{name}") or _TEXT[name]
        cid = f"{prefix}.{kind}.{name}"
        check(
            id=cid,
            title=f"{source_label}: {title} ({kind.replace('_', ' ')})",
            severity=severity,  # type: ignore[arg-type]
            resource_type=f"{prefix}.{kind}.{item}",
            rationale=rationale.format(noun=noun),
            remediation=remediation.format(noun=noun),
            registry=registry,
        )(func)
        specs.append(registry.get(cid))
    for kind in PERIODIC_KINDS:
        if kind not in wanted:
            continue
        title, rationale, remediation, severity = _EVERY_PERIOD_TEXT[kind]
        cid = f"{prefix}.{kind}.every_period"
        check(
            id=cid,
            title=f"{source_label}: {title}",
            severity=severity,  # type: ignore[arg-type]
            resource_type=f"{prefix}.{kind}.population",
            rationale=rationale,
            remediation=remediation,
            registry=registry,
        )(every_period)
        specs.append(registry.get(cid))
    return specs


# --------------------------------------------------------------------------- summaries


class PopulationSummary:
    """Counts of one population's check outcomes, built while items stream by.

    Memory is bounded by the number of checks and periods (failing keys are capped), not
    by the population size.
    """

    def __init__(
        self,
        process: ProcessBase,
        item_checks: Sequence[CheckSpec],
        *,
        now: datetime | None = None,
    ) -> None:
        self.process = process
        self.checks = list(item_checks)
        self.now = now or _now()
        self.items = 0
        self.unreadable = 0
        self.counts: dict[str, dict[str, int]] = {
            s.id: {"pass": 0, "fail": 0, "error": 0, "not_applicable": 0} for s in self.checks
        }
        self.failing: dict[str, list[str]] = {s.id: [] for s in self.checks}
        self.periods: dict[str, dict[str, Any]] = {}
        if process.kind in PERIODIC_KINDS and process.review_period and process.periods_from:
            for start, end, label in periods_between(
                process.periods_from, self.now.date(), process.review_period
            ):
                self.periods[label] = {
                    "period": label,
                    "start": start.isoformat(),
                    "end": end.isoformat(),
                    "reviews": [],
                    "ended": end < self.now.date(),
                }

    def add(self, key: str, payload: Mapping[str, Any]) -> None:
        self.items += 1
        for spec in self.checks:
            try:
                status = spec.func(payload, spec.parameters).status
            except Exception:  # noqa: BLE001 - a check that cannot run is an error, counted
                status = "error"
            self.counts[spec.id][status] += 1
            if status in ("fail", "error") and len(self.failing[spec.id]) < MAX_LISTED:
                self.failing[spec.id].append(key)
        if self.periods:
            resolved = (payload.get("derived") or {}).get("resolved_at")
            if resolved:
                assert self.process.review_period is not None
                _, _, label = period_bounds(parse_ts(resolved).date(), self.process.review_period)
                slot = self.periods.get(label)
                if slot is not None and len(slot["reviews"]) < MAX_PERIOD_KEYS:
                    slot["reviews"].append(key)

    def payload(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "process": self.process.kind,
            "items": self.items,
            "checks": {
                cid: {**self.counts[cid], "failing": sorted(self.failing[cid])}
                for cid in sorted(self.counts)
            },
        }
        if self.process.kind in PERIODIC_KINDS:
            periods = []
            for slot in self.periods.values():
                if slot["reviews"]:
                    status = "completed"
                elif slot["ended"]:
                    status = "missing"
                else:
                    status = "in_progress"
                periods.append(
                    {
                        "period": slot["period"],
                        "start": slot["start"],
                        "end": slot["end"],
                        "status": status,
                        "reviews": sorted(slot["reviews"]),
                    }
                )
            out["review_period"] = self.process.review_period
            out["periods"] = periods
        return out


def stream_population(
    process: ProcessBase,
    item_checks: Sequence[CheckSpec],
    pages: Iterable[Iterable[Evidence | str]],
    cancelled: Callable[[], bool],
    *,
    scope: str,
    resource_type: str,
    noun: str = "item",
) -> Iterator[Evidence]:
    """Every item of ``pages`` as evidence, then the population summary (of
    ``resource_type``, resource id = the kind).

    A ``str`` in a page names an item that could not be read at all (no key, no fields):
    such items are counted and, if any, the unit ends with an error after everything
    readable was yielded, so nothing is closed by absence and the process's checks show
    ``error`` until they read cleanly. Cancellation is looked at after each page.
    """
    summary = PopulationSummary(process, item_checks)
    unreadable: list[str] = []
    for page in pages:
        for result in page:
            if isinstance(result, str):
                unreadable.append(result)
                continue
            summary.add(result.resource_id, result.payload)
            yield result
        if cancelled():
            return
    yield Evidence(scope, GLOBAL, resource_type, process.kind, summary.payload())
    if unreadable:
        raise MalformedResponseError(
            f"{len(unreadable)} {noun}(s) could not be read: {'; '.join(unreadable[:5])}"
        )


def item_checks_for(specs: Iterable[CheckSpec], prefix: str, kind: str) -> list[CheckSpec]:
    """The per-item checks (not population ones) of ``kind``."""
    head = f"{prefix}.{kind}."
    return [
        s for s in specs if s.id.startswith(head) and not s.resource_type.endswith(".population")
    ]


def process_units(
    scope: str,
    processes: Iterable[ProcessBase],
    specs: Iterable[CheckSpec],
    prefix: str,
    read: Callable[[ProcessBase, list[CheckSpec]], Iterable[Evidence]],
    cancelled: Callable[[], bool],
    *,
    source: str,
) -> Iterator[Record]:
    """One unit per declared process (service = its kind), in order: ``read(process,
    item_checks)`` under the kit's :func:`~connectors.kit.run_unit`."""
    specs = list(specs)
    for process in processes:
        if cancelled():
            return
        checks = item_checks_for(specs, prefix, process.kind)
        yield from run_unit(
            scope,
            process.kind,
            lambda p=process, c=checks: read(p, c),  # type: ignore[misc]
            cancelled,
            source=source,
        )


def process_errors(
    scope: str, processes: Iterable[ProcessBase], error: str
) -> Iterator[Coverage]:
    """Every process unit failed before anything was read (a credential, a token)."""
    for p in processes:
        yield Coverage(scope, GLOBAL, p.kind, ok=False, error=error)


#: Reads one process: ``read(process, item_checks)`` yields its items and population.
ProcessReader = Callable[[ProcessBase, list[CheckSpec]], Iterable[Evidence]]


class ProcessConnector(Connector):
    """A ticketing source read as one unit per declared process (Jira, ServiceNow).

    Its options have ``scope`` and ``processes``. When signing in fails (a secret is
    missing, a token is refused) every process unit is ``error`` with the reason.
    """

    def collect(self, ctx: CollectContext) -> Iterator[Record]:
        opts: Any = self.options
        with ExitStack() as stack:
            try:
                read = self._reader(ctx, stack)
            except (SecretUnavailableError, SourceError) as exc:
                yield from process_errors(opts.scope, opts.processes, str(exc))
                return
            yield from process_units(
                opts.scope,
                opts.processes,
                self.checks(),
                self.prefix,
                read,
                ctx.cancelled,
                source=self.type,
            )

    @abstractmethod
    def _reader(self, ctx: CollectContext, stack: ExitStack) -> ProcessReader:
        """Sign in, open the clients on ``stack`` and return the reader of a process."""


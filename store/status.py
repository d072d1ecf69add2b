"""A control's status at an instant: the one rule (:func:`combine_status`) and its inputs.

Control status is computed in one place, :func:`combine_status`, from the findings in
force (each finding counts for the controls stored with it, i.e. the mapping in force
when it was written), the exceptions, manual evidence and the freshness of unit reads.
Both the instant view (:func:`control_statuses`) and the period replay
(:func:`store.timelines.control_timelines`) call it, so ``--at T`` and a history over a
period can never disagree about T.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine

from core.records import utcnow
from store.exceptions import ExceptionRule, exception_for
from store.manual_records import ManualRecord
from store.queries import findings_light, last_ok_units, manual_at
from store.schema import ControlsTexts

CONTROL_STATUSES = (
    "fail",
    "error",
    "stale",
    "undocumented",
    "excepted",
    "pass",
    "not_applicable",
    "no_evidence",
    "manual",
)
#: Severity order used for "worst status over a period" (first is worst).
STATUS_RANK = {s: i for i, s in enumerate(CONTROL_STATUSES)}
MAX_LISTED = 50


def combine_status(
    counts: Mapping[str, int],
    *,
    stale_pass: bool,
    manual_valid: int,
    manual_expired: int,
    manual_control: bool,
    has_checks: bool,
    automated_sufficient: bool = False,
) -> str:
    """The one rule that turns a control's inputs into its status.

    A control has two parts: the automated part (its checks' findings) and the
    documented part (a recorded document, e.g. a policy or a test record — manual
    evidence). ``counts`` are the *effective* statuses of its findings in force (a
    failure covered by an active exception counts as ``excepted``). Precedence:
    ``fail`` > ``error`` > ``stale`` > ``undocumented`` > ``excepted`` > ``pass`` >
    ``not_applicable`` > ``manual``/``no_evidence``.

    * A control with checks is ``pass`` only when they pass *and* a valid document is
      recorded — unless its mapping declares the automated part sufficient. Passing
      checks without it: ``undocumented``. A document without passing checks is not
      a pass: the automated part has no evidence (``no_evidence``).
    * A control no check can evidence (``manual_control``) passes on a valid document;
      an expired one without a successor makes it ``stale``.
    """
    if counts.get("fail"):
        return "fail"
    if counts.get("error"):
        return "error"
    automated = has_checks and bool(counts.get("pass") or counts.get("excepted"))
    if automated:
        if counts.get("pass") and stale_pass:
            return "stale"
        if not automated_sufficient and not manual_valid:
            return "undocumented"
        return "excepted" if counts.get("excepted") else "pass"
    if counts.get("not_applicable"):
        return "not_applicable"
    if has_checks:
        return "no_evidence"
    if manual_expired and not manual_valid:
        return "stale"
    if manual_valid:
        return "pass"
    return "manual" if manual_control else "no_evidence"


@dataclass
class ControlStatus:
    id: str
    title: str
    theme: str
    status: str
    checks: tuple[str, ...]
    manual: bool
    expected_evidence: str | None = None
    counts: dict[str, int] = field(default_factory=dict)
    failing: list[str] = field(default_factory=list)
    erroring: list[str] = field(default_factory=list)
    excepted: list[str] = field(default_factory=list)
    manual_evidence: list[dict[str, Any]] = field(default_factory=list)
    last_confirmed: datetime | None = None
    evidence_items: int = 0
    #: The documented part: ``valid``, ``missing``, ``expired`` or ``not_required``.
    document: str = "missing"
    explanation: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "control": self.id,
            "title": self.title,
            "theme": self.theme,
            "status": self.status,
            "explanation": self.explanation,
            "document": self.document,
            "checks": list(self.checks),
            "manual": self.manual,
            "expected_evidence": self.expected_evidence,
            "counts": self.counts,
            "failing_resources": self.failing,
            "error_scopes": self.erroring,
            "excepted_resources": self.excepted,
            "manual_evidence": self.manual_evidence,
            "evidence_items": self.evidence_items,
            "last_confirmed": self.last_confirmed.isoformat() if self.last_confirmed else None,
        }


@dataclass
class _Acc:
    counts: dict[str, int] = field(default_factory=dict)
    failing: list[str] = field(default_factory=list)
    erroring: list[str] = field(default_factory=list)
    excepted: list[str] = field(default_factory=list)
    oldest_pass_confirmation: datetime | None = None
    unconfirmed_pass: bool = False
    last_confirmed: datetime | None = None
    evidence: set[str] = field(default_factory=set)
    #: Distinct evidence counted by the database (the materialised path), else None.
    evidence_count: int | None = None


def _resource_label(f: Mapping[str, Any]) -> str:
    return f"{f['resource_id']} ({f['check_id']})"


def _accumulate(
    acc: dict[str, _Acc],
    rows: Iterable[tuple[Any, ...]],
    units: Mapping[tuple[str, str, str, str], datetime],
    rules: list[ExceptionRule],
    at: datetime,
    approved_policies: list[tuple[str, str, str]],
    *,
    listing: bool = False,
) -> None:
    """Add findings in force (tuples starting with :data:`_LIGHT`'s fields) to each of
    their controls. ``listing``: the rows of the materialised path, whose next two
    fields are (key, whole); a row not whole is only listed (the database counted it
    with its group)."""
    # A finding is confirmed by its own observation, and since by every clean read of
    # its unit (unchanged items write no new row): the unit's part once per unit.
    unit_reads: dict[tuple[str, str, str, str], datetime | None] = {}
    for row in rows:
        source, scope, region, service, check_id, resource_id, status, controls, eh, observed = (
            row[:10]
        )
        if listing and not row[11]:
            _list_only(acc, controls, status, f"{resource_id} ({check_id})")
            continue
        if check_id == "policies.document.approved" and status == "pass" and eh:
            approved_policies.append((source, resource_id, eh))
        unit = (source, scope, region, service)
        read = unit_reads.get(unit, _UNREAD)
        if read is _UNREAD:
            read = unit_reads[unit] = _latest(
                units.get(unit), units.get((source, scope, "global", service)))
        confirmed = _latest(read, observed)
        eff = status
        if status == "fail" and rules:
            f = {
                "source": source,
                "scope": scope,
                "check_id": check_id,
                "resource_id": resource_id,
                "status": status,
            }
            if exception_for(rules, f, at):
                eff = "excepted"
        for cid in controls:
            a = acc.get(cid)
            if a is None:
                a = acc[cid] = _Acc()
            a.counts[eff] = a.counts.get(eff, 0) + 1
            if eh:
                a.evidence.add(eh)
            if eff == "pass":
                if confirmed is None:
                    a.unconfirmed_pass = True
                elif (
                    a.oldest_pass_confirmation is None or confirmed < a.oldest_pass_confirmation
                ):
                    a.oldest_pass_confirmation = confirmed
            elif eff in ("fail", "error", "excepted"):
                listed = (
                    a.failing
                    if eff == "fail"
                    else (a.erroring if eff == "error" else a.excepted)
                )
                if len(listed) < MAX_LISTED:
                    listed.append(f"{resource_id} ({check_id})")
            if confirmed and (a.last_confirmed is None or confirmed > a.last_confirmed):
                a.last_confirmed = confirmed


_UNREAD: Any = object()


def _latest(a: datetime | None, b: datetime | None) -> datetime | None:
    """The later of two instants, either of which may be missing."""
    if a is None:
        return b
    return a if b is None or a > b else b


def _list_only(acc: dict[str, _Acc], controls: list[str], status: str, label: str) -> None:
    for cid in controls:
        a = acc.get(cid)
        if a is None:
            a = acc[cid] = _Acc()
        listed = (
            a.failing if status == "fail" else (a.erroring if status == "error" else a.excepted)
        )
        if len(listed) < MAX_LISTED:
            listed.append(label)


def _accumulate_groups(
    acc: dict[str, _Acc],
    groups: Iterable[tuple[Any, ...]],
    units: Mapping[tuple[str, str, str, str], datetime],
) -> None:
    """Add findings counted per (controls, status, unit) — none of them listed, none
    failing — as :func:`_accumulate` would one by one. A finding is confirmed at the
    latest of its unit's clean reads and its own observation, so over a group the
    oldest confirmation is that of its oldest observation, the newest of its newest."""
    parsed = ControlsTexts()
    for controls_text, status, source, scope, region, service, n, oldest, newest in groups:
        controls = parsed[controls_text]
        read = [
            x for x in (units.get((source, scope, region, service)),
                        units.get((source, scope, "global", service))) if x is not None
        ]
        first, last = max([*read, oldest]), max([*read, newest])
        for cid in controls:
            a = acc.get(cid)
            if a is None:
                a = acc[cid] = _Acc()
            a.counts[status] = a.counts.get(status, 0) + n
            if status == "pass" and (
                a.oldest_pass_confirmation is None or first < a.oldest_pass_confirmation
            ):
                a.oldest_pass_confirmation = first
            if a.last_confirmed is None or last > a.last_confirmed:
                a.last_confirmed = last


def control_statuses(
    engine: Engine,
    index: Any,
    at: datetime | None = None,
    freshness: timedelta = timedelta(days=7),
    *,
    exceptions: Iterable[ExceptionRule] = (),
    materialised: bool = True,
    controls: Collection[str] | None = None,
) -> list[ControlStatus]:
    """Every catalog control's status at ``at`` (see :func:`combine_status`), or only
    those of ``controls`` (only the findings that can count for them are read).

    A pass whose unit has not been read cleanly within ``freshness`` before ``at``
    is ``stale``; nothing passes by absence. The findings in force come from the
    materialised table at now, or a snapshot and the versions since it when they answer
    ``at`` exactly (``store.snapshots.light_rows_at``);
    ``materialised=False`` always walks the history (the reference it is tested against).
    """
    at = at or utcnow()
    rules = list(exceptions)
    acc: dict[str, _Acc] = {}
    with engine.connect() as conn:
        units = last_ok_units(conn, at)
        manual = manual_at(conn, at)
        approved_policies: list[tuple[str, str, str]] = []
        from store import current
        from store.snapshots import light_rows_at

        now = materialised and current.trusted(conn, at)
        # A past instant: the snapshot (held in memory once read) and the versions since
        # it; the checks it narrows its read to are looked up only then.
        past = (light_rows_at(conn, at, _reading_checks(conn, index, controls))
                if materialised and not now else None)
        if past is not None:
            _accumulate(acc, past, units, rules, at, approved_policies)
        elif now:
            # O(groups): the findings in force now aggregated in SQL; only rows
            # that are listed or matched one by one (failures, errors, approved
            # policies) come back as rows.
            rel = current.findings_in_force
            if controls is not None:
                rel = _only_touching(rel, index, controls)
            checks = {r.check for r in rules if r.active(at)}
            rows = current.listed_rows(conn, checks, MAX_LISTED, rel)
            _accumulate(acc, rows, units, rules, at, approved_policies, listing=True)
            _accumulate_groups(acc, current.groups(conn, checks, rel), units)
            for cid, n in current.evidence_counts(conn, rel).items():
                acc.setdefault(cid, _Acc()).evidence_count = n
        else:
            _accumulate(acc, findings_light(conn, at), units, rules, at, approved_policies)
        if approved_policies:
            from store.policy_documents import policy_records

            manual += policy_records(conn, approved_policies)
    by_control: dict[str, list[ManualRecord]] = {}
    for rec in manual:
        by_control.setdefault(rec.control, []).append(rec)
    out: list[ControlStatus] = []
    for cid, control in index.catalog.items():
        if controls is not None and cid not in controls:
            continue
        checks = index.checks_for(cid)
        is_manual = index.is_manual(cid)
        part = index.documented(cid)
        expected = part.expected_evidence
        a = acc.get(cid) or _Acc()
        recs = [within_review(r, index) for r in by_control.get(cid, [])]
        recs = [r for r in recs if r is not None]
        valid = [r for r in recs if r.valid(at)]
        expired = [r for r in recs if r.expired(at)]
        stale_pass = a.unconfirmed_pass or (
            a.oldest_pass_confirmation is not None and a.oldest_pass_confirmation < at - freshness
        )
        status = combine_status(
            a.counts,
            stale_pass=stale_pass,
            manual_valid=len(valid),
            manual_expired=len(expired),
            manual_control=is_manual,
            has_checks=bool(checks),
            automated_sufficient=part.automated_sufficient,
        )
        document = (
            "valid"
            if valid
            else "not_required"
            if part.automated_sufficient and checks
            else "expired"
            if expired
            else "missing"
        )
        counts = dict(sorted(a.counts.items()))
        if valid:
            counts["manual_evidence"] = len(valid)
        if expired:
            counts["manual_expired"] = len(expired)
        out.append(
            ControlStatus(
                id=cid,
                title=control.title,
                theme=control.theme,
                status=status,
                checks=tuple(checks),
                manual=is_manual,
                expected_evidence=expected,
                counts=counts,
                failing=a.failing,
                erroring=a.erroring,
                excepted=a.excepted,
                manual_evidence=[
                    {
                        **r.as_dict(),
                        "state": "valid"
                        if r.valid(at)
                        else ("expired" if r.expired(at) else "not_yet_valid"),
                    }
                    for r in recs
                ],
                last_confirmed=a.last_confirmed,
                evidence_items=(
                    len(a.evidence) if a.evidence_count is None else a.evidence_count
                ) + len(valid),
                document=document,
                explanation=explain(status, cid, document, a.counts, expired, part),
            )
        )
    return out


def _reading_checks(conn: Any, index: Any, controls: Collection[str] | None) -> set[str] | None:
    """The checks whose findings can count for ``controls``: theirs, any stored mapped to
    one of them, and the approved policies (documents of any control); None: all."""
    from store import status_changes
    from store.current import _POLICY_CHECK

    if controls is None:
        return None
    naming = status_changes.checks_naming(conn, controls)
    if naming is None:
        return None
    return {c for cid in controls for c in index.checks_for(cid)} | {_POLICY_CHECK} | naming


def _only_touching(rel: Any, index: Any, controls: Collection[str]) -> Any:
    """The rows of ``rel`` that can count for ``controls``: of their checks, or stored
    with a mapping naming one of them (it may differ from today's); and the approved
    policies, which are documents of any control."""
    from sqlalchemy import select

    from store.current import _POLICY_CHECK, touching

    cur = rel.c
    checks = {c for cid in controls for c in index.checks_for(cid)} | {_POLICY_CHECK}
    return select(rel).where(touching(cur.check_id, cur.controls, checks,
                                      sorted(controls))).subquery()


def within_review(rec: ManualRecord | None, index: Any) -> ManualRecord | None:
    if rec is None or rec.control not in index.catalog:
        return rec
    return rec.within_review(index.documented(rec.control).review_interval)


def explain(
    status: str,
    control: str,
    document: str,
    counts: Mapping[str, int],
    expired: Sequence[ManualRecord],
    part: Any,
) -> str:
    """One sentence saying why a control has its status and what would change it."""
    record = f"`annexa evidence add --control {control} --file …`"
    if status == "undocumented":
        why = (
            f"its document expired on {max(r.valid_until for r in expired):%Y-%m-%d}"
            if document == "expired" and expired
            else "no valid document is recorded"
        )
        return f"checks pass, but {why}; expected: {part.expected_evidence} Record it with {record}"
    if status == "pass":
        if document == "not_required":
            return f"checks pass; the checks alone evidence it: {part.rationale}"
        return (
            "checks pass and a valid document is recorded"
            if counts
            else ("a valid document is recorded (no check can evidence this control)")
        )
    if status == "excepted":
        return "failures are covered by recorded exceptions; the rest passes"
    if status == "fail":
        return f"{counts.get('fail', 0)} finding(s) fail"
    if status == "error":
        return f"{counts.get('error', 0)} check(s) could not be evaluated (read errors)"
    if status == "stale":
        return (
            "its document expired without a successor"
            if not counts
            else "a passing check's source was not read cleanly within the freshness window"
        )
    if status == "no_evidence":
        return "no finding of its checks is in force (no configured source evidences it)" + (
            "; a document alone is half of it" if document == "valid" else ""
        )
    if status == "manual":
        return f"no check can evidence it: record {part.expected_evidence} with {record}"
    return "every finding is not applicable"

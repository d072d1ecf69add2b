"""Helpers shared by the KnowBe4 readers and checks: matching required training by name
and reading an enrolment's completion, identically for on-hire, yearly and remedial
training."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from core.times import parse_time

#: Enrolment statuses (KnowBe4 Reporting API ``Enrollment.status``) that mean the
#: module was finished: "Passed" for courses with an assessment, "Completed" otherwise.
DONE_STATUSES = frozenset({"passed", "completed"})


def enrolment_summary(e: Mapping[str, Any]) -> dict[str, Any]:
    """What an auditor needs of one enrolment; ``time_spent`` and ``start_date`` move while
    a course is in progress and are left out so an unchanged record writes nothing."""
    return {
        "id": e.get("enrollment_id"),
        "module": e.get("module_name"),
        "campaign": e.get("campaign_name"),
        "content_type": e.get("content_type"),
        "status": e.get("status"),
        "enrollment_date": e.get("enrollment_date"),
        "completion_date": e.get("completion_date"),
    }


def matches(enrolment: Mapping[str, Any], name: str) -> bool:
    """True when ``name`` is the enrolment's module or campaign (case-insensitive)."""
    want = name.strip().casefold()
    return any(
        isinstance(v, str) and v.strip().casefold() == want
        for v in (enrolment.get("module"), enrolment.get("campaign"))
    )


def completed_at(enrolment: Mapping[str, Any]) -> datetime | None:
    """When the enrolment was finished, or None while it is not."""
    status = str(enrolment.get("status") or "").casefold()
    if status not in DONE_STATUSES or not enrolment.get("completion_date"):
        return None
    return parse_time(enrolment["completion_date"])


def required_items(enrolments: Sequence[Mapping[str, Any]], required: Iterable[str]) -> list[str]:
    """The names judged: the configured ones, or (none configured) every module the
    person is enrolled in."""
    names = [r for r in required if isinstance(r, str) and r.strip()]
    if names:
        return names
    return sorted({str(e["module"]) for e in enrolments if e.get("module")})


def completions(enrolments: Iterable[Mapping[str, Any]], name: str) -> list[datetime]:
    """Completion times of the enrolments matching ``name``, oldest first."""
    return sorted(t for e in enrolments if matches(e, name) and (t := completed_at(e)))

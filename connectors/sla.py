"""Remediation deadlines by severity: which open findings are past their SLA.

Shared by every check of the form "vulnerabilities of severity S are fixed within N
days" (Defender for Cloud assessments, Security Command Center findings, …). Ages are
judged from full timestamps (:func:`core.times.days_since`); a severity the
limits do not name gets the strictest limit, so an unexpected value is never given
more time than the worst known one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from connectors.kit import EvidenceMissing
from core.checks import Verdict, failed, passed
from core.times import days_since


@dataclass(frozen=True)
class OpenItem:
    """One open finding: what it is, where, how severe, since when."""

    label: str
    severity: str
    since: str | None


def limits_of(param: Mapping[str, object]) -> dict[str, float]:
    """Severity (case-insensitive) → maximum age in days, validated."""
    out: dict[str, float] = {}
    for severity, days in param.items():
        value = float(str(days))
        if value < 0:
            raise ValueError(f"max age for {severity} must be >= 0 days")
        out[str(severity).lower()] = value
    if not out:
        raise ValueError("no severity limits given")
    return out


def overdue(items: Iterable[OpenItem], limits: Mapping[str, float], *,
            now: object = None) -> list[tuple[OpenItem, float, float]]:
    """``(item, age in days, limit)`` of each item older than its severity's limit."""
    strictest = min(limits.values())
    late = []
    for item in items:
        if not item.since:
            raise EvidenceMissing(f"{item.label}: no date to judge its age by")
        age = days_since(item.since, now)  # type: ignore[arg-type]
        limit = limits.get(item.severity.lower(), strictest)
        if age > limit:
            late.append((item, age, limit))
    return late


def sla_verdict(items: list[OpenItem], param: Mapping[str, object], noun: str) -> Verdict:
    """Fail when any open item is past the SLA of its severity; name the worst ones."""
    late = overdue(items, limits_of(param))
    if late:
        late.sort(key=lambda t: t[1] - t[2], reverse=True)
        shown = "; ".join(f"{i.severity} {i.label} ({int(age)} days > {int(limit)})"
                          for i, age, limit in late[:5])
        more = f" and {len(late) - 5} more" if len(late) > 5 else ""
        return failed(f"{len(late)} open {noun} past their remediation SLA: {shown}{more}")
    if items:
        return passed(f"All {len(items)} open {noun} are within their remediation SLA")
    return passed(f"No open {noun}")

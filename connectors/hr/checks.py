"""HR checks: screening, terms of employment and NDA completed before the start date.

The same three checks judge every HR source (BambooHR, SCIM, CSV): :func:`register`
registers them under a connector's prefix (``bamboohr.employee.*``, ``hr.employee.*``)
for its resource type, so each source's findings carry its own check ids and mappings.

Each compares two days of the person's own record (an event date with the hire date),
so a verdict does not depend on when it is judged; only "has this person started yet"
does (a future joiner is ``not_applicable`` until the start date, not failed early).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime
from typing import Any

from connectors.hr.model import record_type, who
from connectors.kit import EvidenceMissing, require
from core.checks import Verdict, check, failed, not_applicable, passed

#: Parameters of every check here: ``hired_on_or_after`` (``YYYY-MM-DD``) leaves out
#: people hired before the process existed (empty: judge everyone).
PARAMETERS: dict[str, Any] = {"hired_on_or_after": ""}


def _started(hire: str, now: datetime | None = None) -> bool:
    today = (now or datetime.now(UTC)).date()
    return date.fromisoformat(hire) <= today


def before_start(
    payload: Mapping[str, Any], params: Mapping[str, Any], field: str, what: str
) -> Verdict:
    """Pass when ``field`` (a day) is on or before the hire date."""
    person = who(payload)
    hire = require(payload, "hire_date")
    if not hire:
        raise EvidenceMissing(f"{person}: the HR record has no hire date to judge by")
    since = str(params.get("hired_on_or_after") or "")
    if since and hire < since:
        return not_applicable(f"{person}: hired on {hire}, before {since} (not judged)")
    done = require(payload, field)
    if done is None:
        if not _started(hire):
            return not_applicable(f"{person}: starts on {hire}; no {what} recorded yet")
        return failed(f"{person}: started on {hire} with no {what} recorded")
    if done > hire:
        late = (date.fromisoformat(done) - date.fromisoformat(hire)).days
        return failed(f"{person}: {what} dated {done}, {late} day(s) after the start on {hire}")
    return passed(f"{person}: {what} dated {done}, on or before the start on {hire}")


def screened_before_start(payload: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    return before_start(payload, params, "background_check_date", "background check")


def terms_signed_before_start(payload: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    return before_start(payload, params, "contract_signed_date", "signed employment contract")


def nda_signed_before_start(payload: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    return before_start(payload, params, "nda_signed_date", "signed NDA")


def register(prefix: str, source: str) -> None:
    """Register the HR checks for ``{prefix}.employee.record`` (idempotent)."""
    rtype = record_type(prefix)
    check(
        id=f"{prefix}.employee.screened_before_start",
        title=f"Background check completed before the start date ({source})",
        severity="high",
        resource_type=rtype,
        rationale=(
            "Screening is only a control if it happens before the person is given access "
            "to information; a check completed after the start date, or never recorded, "
            "means someone worked unverified."
        ),
        remediation=(
            "Complete and record the background check (date in the HR system) before "
            "the start date; for people already started, complete it now and record why "
            "it was late."
        ),
        parameters=PARAMETERS,
    )(screened_before_start)
    check(
        id=f"{prefix}.employee.terms_signed_before_start",
        title=f"Employment contract signed before the start date ({source})",
        severity="medium",
        resource_type=rtype,
        rationale=(
            "The contract states the person's information security responsibilities; "
            "unsigned at the start, they were not agreed before access was given."
        ),
        remediation=(
            "Have the contract (terms stating security responsibilities) signed before "
            "the start date and record the signature date in the HR system."
        ),
        parameters=PARAMETERS,
    )(terms_signed_before_start)
    check(
        id=f"{prefix}.employee.nda_signed_before_start",
        title=f"Confidentiality agreement (NDA) signed before the start date ({source})",
        severity="medium",
        resource_type=rtype,
        rationale=(
            "A confidentiality agreement signed after the start leaves the first days' "
            "access to confidential information without a signed duty to protect it."
        ),
        remediation=(
            "Have the NDA signed before the start date and record the signature date in "
            "the HR system; for people already started, obtain it now."
        ),
        parameters=PARAMETERS,
    )(nda_signed_before_start)

"""The HR record every HR source produces: one person, the dates auditors sample.

BambooHR, a SCIM 2.0 endpoint and a CSV export all describe the same facts in different
shapes; each reader turns its shape into an :class:`HrPerson`, whose payload is what the
checks (:mod:`connectors.hr.checks`) judge and what the identity correlation
(:mod:`analyzers.identity`) and later device checks join on: ``employee_id`` and
``work_email`` identify the person, ``termination_date`` says when access and equipment
were due back.

Dates are stored as days (``YYYY-MM-DD``): HR systems record days, and a day compares
with another day the same way at any hour. A value that is not a date is never guessed:
the field goes to ``_errors`` so the checks needing it report ``error``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from connectors.kit import ERRORS_KEY, GLOBAL, Pseudonymiser
from core.records import Evidence

#: The unit (service) of every HR source and the last part of its resource type.
SERVICE = "employee"

#: Dates the checks judge; each may be absent (None) or unreadable (in ``_errors``).
DATE_FIELDS = (
    "hire_date",
    "termination_date",
    "background_check_date",
    "contract_signed_date",
    "nda_signed_date",
)

_EMPTY_DATES = frozenset({"", "0000-00-00", "0000-00-00T00:00:00"})  # BambooHR: no value
_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}")


def record_type(prefix: str) -> str:
    """``{prefix}.employee.record``: the resource type of one HR source's people."""
    return f"{prefix}.{SERVICE}.record"


def hr_date(value: Any) -> str | None:
    """``YYYY-MM-DD`` of a date value, None when empty; ValueError when not a date.

    Accepts ISO days and ISO timestamps (the day part is kept: HR dates are days).
    """
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.date().isoformat()
    if isinstance(value, date):
        return value.isoformat()
    text = str(value).strip()
    if text in _EMPTY_DATES:
        return None
    if not _DAY.match(text):
        raise ValueError(f"{text!r} is not a date (YYYY-MM-DD)")
    day = text[:10]
    try:
        date.fromisoformat(day)
    except ValueError:
        raise ValueError(f"{text!r} is not a valid date") from None
    return day


def text(value: Any) -> str | None:
    """A trimmed string, or None for empty values."""
    if value is None:
        return None
    out = str(value).strip()
    return out or None


@dataclass
class HrPerson:
    """One person as an HR source describes them (see the module docstring)."""

    employee_id: str
    work_email: str | None = None
    name: str | None = None
    employment_status: str | None = None
    terminated: bool = False
    department: str | None = None
    manager: str | None = None
    dates: dict[str, str | None] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def set_date(self, name: str, value: Any, source_field: str | None = None) -> None:
        """Record one date; a malformed value becomes an ``_errors`` entry, never a guess."""
        try:
            self.dates[name] = hr_date(value)
        except ValueError as exc:
            where = f" (field {source_field})" if source_field else ""
            self.errors[name] = f"{exc}{where}"
            self.dates.pop(name, None)

    def missing(self, name: str, reason: str) -> None:
        """``name`` could not be read at all (e.g. no source field is configured)."""
        self.dates.pop(name, None)
        self.errors[name] = reason

    def payload(self, pseudo: Pseudonymiser) -> dict[str, Any]:
        """The evidence payload: identifiers, status, the dates, and what was unreadable."""
        out: dict[str, Any] = {
            "employee_id": self.employee_id,
            "work_email": pseudo(self.work_email.lower()) if self.work_email else None,
            "name": pseudo(self.name),
            "employment_status": self.employment_status,
            "terminated": self.terminated,
            "department": self.department,
            "manager": pseudo(self.manager),
        }
        for name in DATE_FIELDS:
            if name in self.errors:
                continue
            out[name] = self.dates.get(name)
        out.update(self.extra)
        if self.errors:
            out[ERRORS_KEY] = dict(sorted(self.errors.items()))
        return out


def who(payload: Mapping[str, Any]) -> str:
    """How a finding names the person: employee id and work e-mail."""
    email = payload.get("work_email")
    return f"employee {payload.get('employee_id')}" + (f" ({email})" if email else "")


def evidence(
    people: Iterable[HrPerson], scope: str, rtype: str, pseudo: Pseudonymiser
) -> Iterator[Evidence]:
    """One evidence per person (resource id = the employee id)."""
    for p in people:
        yield Evidence(scope, GLOBAL, rtype, p.employee_id, p.payload(pseudo))

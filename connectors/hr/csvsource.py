"""HR records from a CSV export, for HR systems with no API Annexa supports.

Header row required; columns (extra columns are ignored)::

    employee_id, work_email, name, employment_status, hire_date, termination_date,
    department, manager, background_check_date, contract_signed_date, nda_signed_date

``employee_id`` and ``hire_date`` are required; dates are ``YYYY-MM-DD`` (empty = none).
A person is terminated when ``termination_date`` is set or ``employment_status`` is one
of the configured terminated statuses.

A malformed row (wrong number of fields, no id, a duplicate id, a value that is not a
date) is skipped and named with its file and line; every other row is still read, and
the unit then ends in error (so nothing is closed by the absence of the bad row).
"""

from __future__ import annotations

import csv
from collections.abc import Collection, Iterator
from pathlib import Path

from connectors.hr.model import HrPerson, hr_date, text
from connectors.http import SourceError

COLUMNS = (
    "employee_id",
    "work_email",
    "name",
    "employment_status",
    "hire_date",
    "termination_date",
    "department",
    "manager",
    "background_check_date",
    "contract_signed_date",
    "nda_signed_date",
)
REQUIRED = ("employee_id", "hire_date")
_DATES = (
    "hire_date",
    "termination_date",
    "background_check_date",
    "contract_signed_date",
    "nda_signed_date",
)
#: Problems named in the unit's error before "and N more".
SHOWN = 5


class CsvRowError(ValueError):
    """One row cannot be read: the message names the column and the reason."""


def person_from_row(row: dict[str | None, str | None], terminated: Collection[str]) -> HrPerson:
    """An :class:`HrPerson` from one CSV row, or :class:`CsvRowError`."""
    if None in row:
        raise CsvRowError(f"{len(row[None] or [])} more field(s) than the header has")
    short = [k for k, v in row.items() if v is None]
    if short:
        raise CsvRowError(f"too few fields (no value for {', '.join(map(str, short))})")
    emp = text(row.get("employee_id"))
    if not emp:
        raise CsvRowError("employee_id is empty")
    p = HrPerson(
        employee_id=emp,
        work_email=text(row.get("work_email")),
        name=text(row.get("name")),
        employment_status=text(row.get("employment_status")),
        department=text(row.get("department")),
        manager=text(row.get("manager")),
    )
    for name in _DATES:
        try:
            p.dates[name] = hr_date(row.get(name)) if name in row else None
        except ValueError as exc:
            raise CsvRowError(f"column {name}: {exc}") from None
    if not p.dates.get("hire_date"):
        raise CsvRowError("hire_date is empty")
    status = (p.employment_status or "").lower()
    p.terminated = bool(p.dates.get("termination_date")) or status in terminated
    return p


def read_csv(path: Path, shown: str, terminated: Collection[str]) -> Iterator[HrPerson]:
    """Every well-formed row of ``path``; then :class:`SourceError` naming the bad ones."""
    problems: list[str] = []
    seen: dict[str, int] = {}
    lowered = {s.lower() for s in terminated}
    try:
        fh = path.open(encoding="utf-8-sig", newline="")
    except OSError as exc:
        raise SourceError(f"{shown}: cannot be read: {exc.strerror}") from None
    with fh:
        reader = csv.DictReader(fh)
        try:
            header = reader.fieldnames or []
        except (csv.Error, UnicodeDecodeError) as exc:
            raise SourceError(f"{shown}:1: unreadable header: {exc}") from None
        missing = [c for c in REQUIRED if c not in header]
        if missing:
            raise SourceError(
                f"{shown}:1: missing column(s) {', '.join(missing)} "
                f"(header: {', '.join(h for h in header if h) or 'empty'})"
            )
        while True:
            try:
                row = next(reader)
            except StopIteration:
                break
            except (csv.Error, UnicodeDecodeError) as exc:
                problems.append(f"{shown}:{reader.line_num}: {exc}")
                if isinstance(exc, UnicodeDecodeError):
                    break  # the decoder cannot resynchronise
                continue
            line = reader.line_num
            try:
                person = person_from_row(row, lowered)
            except CsvRowError as exc:
                problems.append(f"{shown}:{line}: {exc}")
                continue
            first = seen.setdefault(person.employee_id, line)
            if first != line:
                problems.append(
                    f"{shown}:{line}: duplicate employee_id {person.employee_id!r} "
                    f"(first on line {first})"
                )
                continue
            yield person
    if problems:
        more = f" and {len(problems) - SHOWN} more" if len(problems) > SHOWN else ""
        raise SourceError(
            f"{len(problems)} malformed row(s) skipped: " + "; ".join(problems[:SHOWN]) + more
        )

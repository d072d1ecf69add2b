"""Reading a policy's YAML front matter into a payload, with errors that name the file.

A policy is a Markdown file that starts with a YAML block::

    ---
    title: Information Security Policy
    owner: ciso@acme.example
    approver: ceo@acme.example
    approved_on: 2026-03-01
    review_interval: 12 months        # or "1 year", "P1Y", "6 months", "90 days", "P90D"
    version: "3.2"
    controls: [A.5.1, A.5.37]
    acknowledgement_required: true    # default true; false for procedures
    ---

Every problem is recorded in the payload's ``_errors`` under the field it spoils, so a
check that needs that field is ``error`` with the file and the reason, and the file's
other checks — and every other policy — are still judged.
"""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta
from typing import Any

import yaml

from connectors.kit import ERRORS_KEY

#: Fields the checks read; a front matter that cannot be parsed spoils all of them.
FIELDS = (
    "title",
    "owner",
    "approver",
    "approved_on",
    "review_interval",
    "version",
    "controls",
    "acknowledgement_required",
)
_CONTROL = re.compile(r"^A\.(5|6|7|8)\.\d{1,2}$")
_ISO_PERIOD = re.compile(r"^P(?:(\d+)Y)?(?:(\d+)M)?(?:(\d+)W)?(?:(\d+)D)?$", re.IGNORECASE)
_WORDS = re.compile(r"^(\d+)\s*(year|month|week|day)s?$", re.IGNORECASE)
_DAYS = {"year": 365, "month": 30.4375, "week": 7, "day": 1}


def interval(text: str) -> tuple[int, int]:
    """``(months, days)`` of ``"12 months"``, ``"1 year"``, ``"P1Y"``, ``"P6M"``, ``"90 days"``…

    Years and months stay calendar months, so "12 months" after 2024-01-01 is 2025-01-01
    (not 365 days, which a leap year would make 2024-12-31)."""
    value = text.strip()
    if m := _ISO_PERIOD.fullmatch(value):
        if not any(m.groups()):
            raise ValueError(f"empty period {text!r}")
        y, mo, w, d = (int(g or 0) for g in m.groups())
        months, days = y * 12 + mo, w * 7 + d
    elif m := _WORDS.fullmatch(value):
        n, unit = int(m[1]), m[2].lower()
        months = n * 12 if unit == "year" else n if unit == "month" else 0
        days = n * 7 if unit == "week" else n if unit == "day" else 0
    else:
        raise ValueError(
            f"review_interval {text!r} is not a period such as '12 months', '1 year' or 'P1Y'"
        )
    if months <= 0 and days <= 0:
        raise ValueError(f"review_interval {text!r} is not a positive period")
    return months, days


def interval_days(text: str) -> int:
    """Approximate length of the interval in days (for messages and defaults)."""
    months, days = interval(text)
    return round(months * _DAYS["month"] + days)


def add_interval(start: date, text: str) -> date:
    """``start`` plus the interval, by the calendar (31 Jan + 1 month = 28/29 Feb)."""
    months, days = interval(text)
    total = start.year * 12 + (start.month - 1) + months
    year, month = divmod(total, 12)
    month += 1
    last = (date(year + (month == 12), month % 12 + 1, 1) - timedelta(days=1)).day
    return date(year, month, min(start.day, last)) + timedelta(days=days)


def split(text: str) -> tuple[str | None, str]:
    """(front matter YAML or None, body)."""
    lines = text.splitlines(keepends=True)
    if not lines or lines[0].strip() != "---":
        return None, text
    for i, line in enumerate(lines[1:], start=1):
        if line.strip() in ("---", "..."):
            return "".join(lines[1:i]), "".join(lines[i + 1 :])
    raise ValueError("the front matter opened with '---' is never closed")


def _day(value: Any) -> str:
    if isinstance(value, datetime):
        return value.date().isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, str):
        return date.fromisoformat(value.strip()).isoformat()
    raise ValueError(f"approved_on {value!r} is not a date (YYYY-MM-DD)")


def parse(relpath: str, text: str) -> dict[str, Any]:
    """The payload of one policy file; problems go to ``_errors`` naming ``relpath``."""
    payload: dict[str, Any] = {"path": relpath}
    errors: dict[str, str] = {}
    try:
        raw, _ = split(text)
        if raw is None:
            raise ValueError("no YAML front matter (a '---' block at the top of the file)")
        meta = yaml.safe_load(raw)
        if meta is None:
            meta = {}
        if not isinstance(meta, dict):
            raise ValueError(f"front matter is a {type(meta).__name__}, not a mapping of fields")
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 2}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or type(exc).__name__
        reason = f"{relpath}: front matter is not valid YAML{where}: {problem}"
        return {**payload, ERRORS_KEY: dict.fromkeys(FIELDS, reason)}
    except ValueError as exc:
        reason = f"{relpath}: {exc}"
        return {**payload, ERRORS_KEY: dict.fromkeys(FIELDS, reason)}

    def text_field(name: str) -> None:
        value = meta.get(name)
        if value is None or (isinstance(value, str) and not value.strip()):
            payload[name] = None
        elif isinstance(value, (str, int, float)) and not isinstance(value, bool):
            payload[name] = str(value).strip()
        else:
            errors[name] = f"{relpath}: {name} must be a text, got {type(value).__name__}"

    for name in ("title", "owner", "approver", "version"):
        text_field(name)
    if meta.get("approved_on") in (None, ""):
        payload["approved_on"] = None
    else:
        try:
            payload["approved_on"] = _day(meta["approved_on"])
        except ValueError as exc:
            errors["approved_on"] = f"{relpath}: {exc}"
    every = meta.get("review_interval")
    if every in (None, ""):
        payload["review_interval"] = None
        payload["review_days"] = None
        payload["review_due"] = None
    else:
        try:
            payload["review_interval"] = str(every)
            payload["review_days"] = interval_days(str(every))
            approved = payload.get("approved_on")
            payload["review_due"] = (
                add_interval(date.fromisoformat(approved), str(every)).isoformat()
                if approved
                else None
            )
        except ValueError as exc:
            errors["review_interval"] = f"{relpath}: {exc}"
    controls = meta.get("controls", [])
    if isinstance(controls, str):
        controls = [controls]
    if not isinstance(controls, list) or not all(isinstance(c, str) for c in controls):
        errors["controls"] = f"{relpath}: controls must be a list of Annex A ids"
    else:
        bad = [c for c in controls if not _CONTROL.fullmatch(c.strip())]
        if bad:
            errors["controls"] = f"{relpath}: not Annex A control ids: {', '.join(bad)}"
        else:
            payload["controls"] = sorted({c.strip() for c in controls})
    ack = meta.get("acknowledgement_required", True)
    if isinstance(ack, bool):
        payload["acknowledgement_required"] = ack
    else:
        errors["acknowledgement_required"] = (
            f"{relpath}: acknowledgement_required must be true/false"
        )
    if errors:
        payload[ERRORS_KEY] = errors
    return payload

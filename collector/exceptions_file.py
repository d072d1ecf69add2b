"""The exceptions file (TOML) an operator writes: parsed and validated into rules.

Parsing a file is input, not storage: the rules it yields are recorded as decisions by
:mod:`collector.decisions` and applied by the store (:mod:`store.exceptions`).
"""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path

from core.times import day_or_instant
from core.tomlfile import check_table, read_toml, table_array
from store.exceptions import ExceptionRule


class ExceptionsError(ValueError):
    """The exceptions file is invalid: file, entry and reason (the CLI exits 2)."""

    def __init__(self, file: str, entry: str, reason: str) -> None:
        self.file = file
        self.entry = entry
        self.reason = reason
        super().__init__(f"{file}: {entry}: {reason}")


_EXC_KEYS = {
    "id",
    "check",
    "resource",
    "reason",
    "approved_by",
    "expires",
    "approved_on",
    "source",
    "scope",
}
_EXC_REQUIRED = ("check", "resource", "reason", "approved_by", "expires")


def load_exceptions(path: str | Path, known_checks: Collection[str]) -> list[ExceptionRule]:
    """Parse and validate an exceptions file; raise :class:`ExceptionsError` on any problem.

    Format (TOML)::

        [[exception]]
        id = "EX-12"                       # optional, default exception[N]
        check = "aws.s3.bucket_default_encryption"
        resource = "legacy-*"              # glob on the resource id
        reason = "Legacy export bucket, decommissioned in Q1 (CHG-1234)"
        approved_by = "CISO, J. Doe"
        approved_on = 2026-10-01           # optional: not excepted before this date
        expires = 2027-01-31               # a date: excepted through that whole day
        source = "prod"                    # optional: only this connector instance
        scope = "123456789012"             # optional: only this account / org / tenant
    """
    p = Path(path)
    file = str(p)
    doc = read_toml(p, ExceptionsError)
    for key in doc:
        if key != "exception":
            raise ExceptionsError(
                file, "<file>", f"unknown top-level key {key!r} (expected [[exception]] tables)"
            )
    items = table_array(file, doc, "exception", ExceptionsError)
    rules: list[ExceptionRule] = []
    ids: set[str] = set()
    for n, item in enumerate(items, start=1):
        entry = f"exception[{n}]"
        check_table(file, entry, item, _EXC_KEYS, ExceptionsError)
        for key in _EXC_REQUIRED:
            if key not in item:
                raise ExceptionsError(file, entry, f"missing key {key!r}")
        for key in ("id", "check", "resource", "reason", "approved_by", "source", "scope"):
            if key in item and (not isinstance(item[key], str) or not item[key].strip()):
                raise ExceptionsError(file, entry, f"{key!r} must be a non-empty string")
        check = item["check"]
        if check not in known_checks:
            raise ExceptionsError(file, entry, f"unknown check {check!r}")
        try:
            expires = day_or_instant(item["expires"], end_of_day=True)
            starts = None
            if "approved_on" in item:
                starts = day_or_instant(item["approved_on"], end_of_day=False)
        except ValueError as exc:
            raise ExceptionsError(file, entry, str(exc)) from None
        if starts is not None and starts >= expires:
            raise ExceptionsError(file, entry, "approved_on is not before expires")
        rid = item.get("id", entry)
        if rid in ids:
            raise ExceptionsError(file, entry, f"duplicate id {rid!r}")
        ids.add(rid)
        rules.append(
            ExceptionRule(
                id=rid,
                check=check,
                resource=item["resource"],
                reason=item["reason"],
                approved_by=item["approved_by"],
                expires=expires,
                starts=starts,
                source=item.get("source"),
                scope=item.get("scope"),
            )
        )
    return rules

"""Policy acknowledgements: did every active employee acknowledge the current policies?

Inputs (both CSV exports, joined by e-mail address, trimmed and lower-cased):

* an acknowledgement / e-signature export: one row per acknowledgement — who (e-mail),
  which policy (its path, file name without ``.md``, or title), when, and optionally
  which version;
* the roster of employees: e-mail, optionally status and start date. Today this is an
  HR export; the join is by e-mail so that the HR connector's stored people can take
  its place without changing the evidence or the check.

One evidence per active employee (``policies.acknowledgement.person``, id = e-mail):
each policy that requires acknowledgement with its current version and approval date,
and the person's latest acknowledgement of it. An acknowledgement counts for the
current text when its version equals the policy's version or, without versions, when
it was made on or after the policy's approval date.
"""

from __future__ import annotations

import csv
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from connectors.http import SourceError
from connectors.kit import GLOBAL, require
from core.checks import Verdict, check, failed, passed
from core.records import Evidence
from core.times import parse_time

PERSON_TYPE = "policies.acknowledgement.person"


@dataclass(frozen=True)
class Policy:
    path: str
    title: str | None
    version: str | None
    approved_on: str | None

    def keys(self) -> set[str]:
        stem = self.path.rsplit("/", 1)[-1].removesuffix(".md")
        out = {self.path.casefold(), stem.casefold()}
        if self.title:
            out.add(self.title.casefold())
        return out


def _rows(path: Path, needed: Sequence[str]) -> Iterator[dict[str, str]]:
    """Rows of a CSV export; a missing file or column is a clear :class:`SourceError`."""
    try:
        handle = path.open(newline="", encoding="utf-8-sig")
    except OSError as exc:
        raise SourceError(f"{path} cannot be read: {exc.strerror}") from None
    with handle:
        reader = csv.DictReader(handle)
        header = reader.fieldnames or []
        missing = [c for c in needed if c and c not in header]
        if missing:
            raise SourceError(
                f"{path}: column(s) {', '.join(missing)} not in the header ({', '.join(header)})"
            )
        try:
            for row in reader:
                yield {k: (v or "").strip() for k, v in row.items() if k is not None}
        except csv.Error as exc:
            raise SourceError(f"{path}: line {reader.line_num}: {exc}") from None


def read_acknowledgements(
    path: Path, *, email: str, policy: str, at: str, version: str | None
) -> dict[str, list[dict[str, str | None]]]:
    """Acknowledgements by e-mail: ``[{policy, at, version}]``."""
    out: dict[str, list[dict[str, str | None]]] = defaultdict(list)
    for row in _rows(path, [email, policy, at, version or ""]):
        who = row.get(email, "").lower()
        if not who:
            continue
        when = row.get(at, "")
        try:
            stamp = parse_time(when).strftime("%Y-%m-%dT%H:%M:%SZ")
        except ValueError:
            raise SourceError(f"{path}: {when!r} in column {at} is not a date or time") from None
        out[who].append(
            {"policy": row.get(policy, ""), "at": stamp, "version": row.get(version or "") or None}
        )
    return out


def read_people(
    path: Path,
    *,
    email: str,
    status: str | None,
    active_values: Sequence[str],
    start_date: str | None,
    termination_date: str | None = None,
) -> list[dict[str, str | None]]:
    """Active employees of the roster: ``[{email, start_date}]``.

    Active: the status (when a status column is named) is one of ``active_values``, and
    the termination date (when that column is named) is empty or still to come — so the
    ``hr`` connector's CSV export (``work_email``, ``hire_date``, ``termination_date``)
    can serve as the roster unchanged."""
    active = {v.casefold() for v in active_values}
    now = datetime.now(UTC)
    people = []
    for row in _rows(path, [email, status or "", start_date or "", termination_date or ""]):
        who = row.get(email, "").lower()
        if not who or (status and row.get(status, "").casefold() not in active):
            continue
        left = row.get(termination_date or "") if termination_date else None
        if left:
            try:
                if parse_time(left) <= now:
                    continue
            except ValueError:
                raise SourceError(
                    f"{path}: {left!r} in column {termination_date} is not a date"
                ) from None
        people.append({"email": who, "start_date": (row.get(start_date or "") or None)})
    return people


def person_evidence(
    scope: str,
    people: Sequence[Mapping[str, str | None]],
    policies: Sequence[Policy],
    acks: Mapping[str, list[dict[str, str | None]]],
) -> Iterator[Evidence]:
    for person in sorted(people, key=lambda p: str(p["email"])):
        mine = acks.get(str(person["email"]), [])
        items = []
        for pol in policies:
            keys = pol.keys()
            hits = sorted(
                (a for a in mine if (a.get("policy") or "").casefold() in keys),
                key=lambda a: str(a["at"]),
            )
            last = hits[-1] if hits else None
            current = [a for a in hits if pol.version and a.get("version") == pol.version]
            if current:
                last = current[-1]
            items.append(
                {
                    "policy": pol.path,
                    "title": pol.title,
                    "version": pol.version,
                    "approved_on": pol.approved_on,
                    "acknowledged_at": last["at"] if last else None,
                    "acknowledged_version": last.get("version") if last else None,
                }
            )
        yield Evidence(
            scope,
            GLOBAL,
            PERSON_TYPE,
            str(person["email"]),
            {"email": person["email"], "start_date": person.get("start_date"), "policies": items},
        )


def _current(item: Mapping[str, Any]) -> bool:
    if not item.get("acknowledged_at"):
        return False
    if item.get("version") and item.get("acknowledged_version"):
        return item["version"] == item["acknowledged_version"]
    if item.get("approved_on"):
        return parse_time(item["acknowledged_at"]) >= parse_time(item["approved_on"])
    return True


def _missing_text(item: Mapping[str, Any]) -> str:
    name = str(item["policy"]) + (f" v{item['version']}" if item.get("version") else "")
    if not item.get("acknowledged_at"):
        return f"{name} (never acknowledged)"
    old = f" v{item['acknowledged_version']}" if item.get("acknowledged_version") else ""
    return f"{name} (last acknowledged{old} on {str(item['acknowledged_at'])[:10]})"


@check("policies.acknowledgement.complete")
def acknowledged(payload: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    who = payload.get("email")
    items = require(payload, "policies")
    if not items:
        return passed(f"{who}: no policy requires acknowledgement")
    missing = [i for i in items if not _current(i)]
    if not missing:
        return passed(f"{who} acknowledged the current version of {len(items)} policies")
    start = payload.get("start_date")
    if start and datetime.now(UTC) - parse_time(start) <= timedelta(days=params["grace_days"]):
        return passed(
            f"{who} started on {start}: {len(missing)} acknowledgement(s) due within "
            f"{params['grace_days']} days"
        )
    text = "; ".join(_missing_text(i) for i in missing)
    return failed(f"{who} has not acknowledged the current version of: {text}")

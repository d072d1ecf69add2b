"""Approved exceptions as the store applies them: the rule and which one covers a finding.

Exceptions are recorded as decisions (:mod:`store.decisions`) and read back as
:class:`ExceptionRule`; the file format an operator writes them in is parsed outside
the store (:mod:`collector.exceptions_file`).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class ExceptionRule:
    """An approved, time-boxed exception: matching failures are ``excepted`` until expiry.

    ``resource`` is a shell-style glob on the resource id (``*``, ``?``, ``[..]``),
    matched case-sensitively. ``starts`` (optional, the approval date) bounds it on the
    other side so that a past instant is answered as it was then.

    ``recorded_at``/``revoked_at``: when Annexa recorded the decision and when it was
    withdrawn (see :mod:`store.decisions`). It applies only in between, whatever its
    ``starts`` says: a backdated approval never changes what an earlier answer was.
    """

    id: str
    check: str
    resource: str
    reason: str
    approved_by: str
    expires: datetime
    starts: datetime | None = None
    source: str | None = None
    scope: str | None = None
    recorded_at: datetime | None = None
    revoked_at: datetime | None = None

    @property
    def backdated(self) -> bool:
        """Approved (on paper) before the day Annexa first recorded it."""
        return (
            self.starts is not None
            and self.recorded_at is not None
            and self.starts.date() < self.recorded_at.date()
        )

    @property
    def effective_from(self) -> datetime | None:
        bounds = [t for t in (self.starts, self.recorded_at) if t is not None]
        return max(bounds) if bounds else None

    @property
    def effective_until(self) -> datetime:
        return self.expires if self.revoked_at is None else min(self.expires, self.revoked_at)

    def matches(self, f: Mapping[str, Any]) -> bool:
        return (
            f["check_id"] == self.check
            and (self.source is None or f["source"] == self.source)
            and (self.scope is None or f["scope"] == self.scope)
            and fnmatch.fnmatchcase(str(f["resource_id"]), self.resource)
        )

    def active(self, at: datetime) -> bool:
        start = self.effective_from
        return (start is None or start <= at) and at < self.effective_until

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "check": self.check,
            "resource": self.resource,
            "reason": self.reason,
            "approved_by": self.approved_by,
            "starts": self.starts.isoformat() if self.starts else None,
            "expires": self.expires.isoformat(),
            "source": self.source,
            "scope": self.scope,
            "recorded_at": self.recorded_at.isoformat() if self.recorded_at else None,
            "revoked_at": self.revoked_at.isoformat() if self.revoked_at else None,
            "backdated": self.backdated,
        }


def exception_for(
    rules: Iterable[ExceptionRule], f: Mapping[str, Any], at: datetime
) -> ExceptionRule | None:
    """The active exception covering failing finding ``f`` at ``at``, if any."""
    if f.get("status") != "fail":
        return None
    for r in rules:
        if r.active(at) and r.matches(f):
            return r
    return None

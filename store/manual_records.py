"""One manual evidence record as read back from the store.

Its own module so that the readers built on it (``store.queries`` and
``store.policy_documents``, which turns approved policies into such records) do not
import each other.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any


@dataclass(frozen=True)
class ManualRecord:
    """One manual evidence record (a version of ``manual.evidence`` for a control/file)."""

    key: str
    control: str
    filename: str
    file_sha256: str
    size: int
    note: str
    added_by: str
    recorded_at: datetime
    valid_from: datetime
    valid_until: datetime
    content_hash: str
    run_id: str

    def valid(self, at: datetime) -> bool:
        return self.valid_from <= at < self.valid_until

    def expired(self, at: datetime) -> bool:
        return self.valid_until <= at

    def within_review(self, interval: timedelta | None) -> ManualRecord:
        """This record, valid no longer than the control's review interval allows.

        A policy recorded "valid until 2030" still needs its yearly review: the
        documented part's ``review_interval_days`` caps every record of the control.
        """
        if interval is None or self.valid_until <= self.valid_from + interval:
            return self
        return replace(self, valid_until=self.valid_from + interval)

    def as_dict(self) -> dict[str, Any]:
        return {
            "control": self.control,
            "filename": self.filename,
            "file_sha256": self.file_sha256,
            "size": self.size,
            "note": self.note,
            "added_by": self.added_by,
            "recorded_at": self.recorded_at.isoformat(),
            "valid_from": self.valid_from.isoformat(),
            "valid_until": self.valid_until.isoformat(),
            "content_hash": self.content_hash,
            "run_id": self.run_id,
        }

"""Manual evidence: documents and records an auditor expects, stored like any evidence.

Why through the run writer and not a table of its own: a manual record then gets
everything automated evidence has, with no second mechanism to trust — content
addressing in ``blobs``, append-only history enforced by the database, a run digest
chained to the previous manual run (source ``@manual``; no connector name can start
with ``@``), ``annexa verify`` naming a tampered row, point-in-time reads and
retention. Each ``annexa evidence add`` is one run that writes two evidence items:

* ``manual.file`` — the file itself: ``resource_id`` is its SHA-256, the payload holds
  the bytes (base64), size and media type. The same file added twice is stored once.
* ``manual.evidence`` — the record: ``resource_id`` is ``<control>/<file name>``; the
  payload holds control, file name, file SHA-256, size, note, who added it, and the
  validity period. Adding a new version of ``policy.pdf`` for A.5.1 is a new version
  of the same item, so history shows which document was in force when.

A record counts toward its control while ``valid_from <= t < valid_until``; after
that the control is ``stale`` until a valid record replaces it.
"""

from __future__ import annotations

import base64
import getpass
import hashlib
import mimetypes
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from core.records import Evidence, utcnow
from core.signing import Signer
from store.views import MANUAL_SOURCE
from store.writer import record_run

MAX_FILE_BYTES = 64 * 1024 * 1024
FILE_TYPE = "manual.file"
RECORD_TYPE = "manual.evidence"


class ManualEvidenceError(ValueError):
    """Bad input for a manual evidence record (the CLI exits 2)."""


@dataclass(frozen=True)
class ManualAdded:
    run_id: str
    control: str
    filename: str
    file_sha256: str
    size: int
    added_by: str
    recorded_at: datetime
    valid_from: datetime
    valid_until: datetime
    digest: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def default_user() -> str:
    """Who is adding the evidence: the OS user, as the audit trail's default."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def add_manual_evidence(
    engine: Engine,
    *,
    control: str,
    file: Path,
    valid_until: datetime,
    note: str = "",
    added_by: str | None = None,
    valid_from: datetime | None = None,
    mapping_digest: str,
    config_digest: str,
    agent_version: str,
    catalog: set[str] | None = None,
    signer: Signer | None = None,
) -> ManualAdded:
    """Store ``file`` as evidence for ``control``, valid until ``valid_until``."""
    if catalog is not None and control not in catalog:
        raise ManualEvidenceError(
            f"--control: unknown control {control!r} (expected an Annex A control like A.5.1 "
            "or an ISMS clause like 9.2)"
        )
    if not file.is_file():
        raise ManualEvidenceError(f"--file: {file} is not a readable file")
    size = file.stat().st_size
    if size > MAX_FILE_BYTES:
        raise ManualEvidenceError(
            f"--file: {file} is {size} bytes; the limit is {MAX_FILE_BYTES} "
            "(store large exports elsewhere and record a summary document)"
        )
    data = file.read_bytes()
    now = utcnow()
    valid_from = valid_from or now
    if valid_until <= valid_from:
        raise ManualEvidenceError(
            f"--valid-until {_iso(valid_until)} is not after the start of validity "
            f"{_iso(valid_from)}"
        )
    sha = hashlib.sha256(data).hexdigest()
    who = added_by or default_user()
    media = mimetypes.guess_type(file.name)[0] or "application/octet-stream"
    file_ev = Evidence(
        scope="manual",
        region="global",
        resource_type=FILE_TYPE,
        resource_id=sha,
        payload={
            "sha256": sha,
            "size": size,
            "media_type": media,
            "content_base64": base64.b64encode(data).decode("ascii"),
        },
        collected_at=now,
    )
    record = Evidence(
        scope="manual",
        region="global",
        resource_type=RECORD_TYPE,
        resource_id=f"{control}/{file.name}",
        payload={
            "control": control,
            "filename": file.name,
            "file_sha256": sha,
            "size": size,
            "media_type": media,
            "note": note,
            "added_by": who,
            "added_at": _iso(now),
            "valid_from": _iso(valid_from),
            "valid_until": _iso(valid_until),
        },
        collected_at=now,
    )
    summary = record_run(
        engine, [file_ev, record], source=MANUAL_SOURCE, connector_type="manual", signer=signer,
        config_digest=config_digest, mapping_digest=mapping_digest, agent_version=agent_version,
        seal_failure=True,
    )
    return ManualAdded(
        run_id=summary.run_id,
        control=control,
        filename=file.name,
        file_sha256=sha,
        size=size,
        added_by=who,
        recorded_at=now,
        valid_from=valid_from,
        valid_until=valid_until,
        digest=summary.digest,
    )


def decode_file(payload: dict[str, Any]) -> bytes:
    """The bytes of a ``manual.file`` payload, checked against its SHA-256."""
    data = base64.b64decode(payload["content_base64"])
    if hashlib.sha256(data).hexdigest() != payload["sha256"]:
        raise ValueError(f"manual file {payload['sha256'][:12]}… does not match its hash")
    return data

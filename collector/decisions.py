"""From the decision files to recorded decisions, and back for the read commands.

``sync`` reads the exceptions and scope files named in ``[audit]``, validates them and
records what changed (:mod:`store.decisions`). Read commands never write: they use
what is recorded and, when a file differs from what was last recorded, say so
(``unrecorded``) — cheaply, by the file's SHA-256, which each sync records too.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Collection
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from collector.config import Settings
from mappings.loader import MappingError, MappingIndex
from store.decisions import (
    DECISIONS_SOURCE,
    SOURCE_FILE_TYPE,
    Decision,
    exception_decision,
    record_decisions,
    recorded_exceptions,
    recorded_scope,
    scope_decisions,
)
from store.writer import RunSummary

_POSITIONAL_ID = re.compile(r"^exception\[\d+\]$")


class DecisionFileError(ValueError):
    """An exceptions or scope file that does not validate (the CLI exits 2)."""


def _files(settings: Settings) -> dict[str, Path | None]:
    audit = settings.model.audit
    return {
        "exceptions": settings.resolve(audit.exceptions_file) if audit.exceptions_file else None,
        "soa": settings.resolve(audit.scope_file) if audit.scope_file else None,
        "risks": settings.resolve(audit.risks_file) if audit.risks_file else None,
    }


def _sha(path: Path | None) -> str | None:
    if path is None:
        return None
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return "unreadable"


def file_decisions(
    settings: Settings, index: MappingIndex, known_checks: Collection[str]
) -> list[Decision]:
    """Every decision the files state now, validated; raise DecisionFileError if not."""
    from collector.exceptions_file import ExceptionsError, load_exceptions
    from mappings.soa import load_scope

    files = _files(settings)
    out: list[Decision] = []
    if files["exceptions"] is not None:
        try:
            rules = load_exceptions(files["exceptions"], set(known_checks))
        except ExceptionsError as exc:
            raise DecisionFileError(f"invalid exceptions file: {exc}") from None
        for r in rules:
            out.append(exception_decision(r, explicit_id=not _POSITIONAL_ID.match(r.id)))
    if files["soa"] is not None:
        try:
            scope = load_scope(files["soa"], index.catalog)
        except MappingError as exc:
            raise DecisionFileError(f"invalid scope file: {exc}") from None
        out.extend(scope_decisions(scope))
    out.extend(risk_file_decisions(settings, files["risks"], index))
    # Without a file nothing is recorded (the default SoA, every control applicable, is
    # what answers then); a file whose setting is removed has its decisions revoked.
    for kind, path in files.items():
        if path is None:
            continue
        out.append(
            Decision(
                SOURCE_FILE_TYPE,
                kind,
                {"kind": kind, "file": str(path) if path else None, "sha256": _sha(path)},
            )
        )
    return out


def risk_policy(settings: Settings) -> Any:
    """The configured risk appetite and scales (``[audit.risk]``)."""
    from store.risk_input import RiskPolicy, Scales

    cfg = settings.model.audit.risk
    return RiskPolicy(cfg.appetite, Scales(tuple(cfg.likelihood), tuple(cfg.impact)))


def risk_file_decisions(
    settings: Settings, path: Path | None, index: MappingIndex
) -> list[Decision]:
    """The risks file's risks and the risk policy, as decisions (store/risks.py).

    The policy is recorded when a risks file or an appetite is configured: it is what
    the register's flags are judged against, so a changed appetite is a new decision.
    """
    from store.decisions import RISK_POLICY_TYPE, RISK_TYPE
    from store.risk_input import RiskFileError, load_risk_file

    policy = risk_policy(settings)
    out: list[Decision] = []
    if path is not None:
        try:
            risks = load_risk_file(path, policy.scales, index.catalog)
        except RiskFileError as exc:
            raise DecisionFileError(f"invalid risks file: {exc}") from None
        out.extend(Decision(RISK_TYPE, r.id, r.payload()) for r in risks)
    if path is not None or policy.appetite is not None:
        out.append(Decision(RISK_POLICY_TYPE, "policy", policy.payload()))
    return out


def sync(
    settings: Settings, engine: Engine, index: MappingIndex, decisions: list[Decision]
) -> RunSummary | None:
    """Record ``decisions`` (from :func:`file_decisions`); None when nothing changed."""
    from collector.runner import AGENT_VERSION

    return record_decisions(
        engine,
        decisions,
        services={"exceptions", "soa", "files", "risks"},
        signer=settings.signer(),
        config_digest=settings.digest(),
        mapping_digest=index.digest,
        agent_version=AGENT_VERSION,
    )


def unrecorded(settings: Settings, engine: Engine) -> list[str]:
    """Decision files that changed since they were last recorded (by content hash)."""
    from store.queries import evidence_at

    with engine.connect() as conn:
        recorded = {
            r["resource_id"]: (r["payload"] or {}).get("sha256")
            for r in evidence_at(conn, source=DECISIONS_SOURCE, resource_type=SOURCE_FILE_TYPE)
        }
    out = []
    for kind, path in _files(settings).items():
        now = _sha(path)
        if recorded.get(kind, None) != now and not (now is None and kind not in recorded):
            what = f"{kind} file {path}" if path else f"{kind} file setting (now removed)"
            out.append(
                f"the {what} changed since it was last recorded: until `annexa decisions "
                "sync` (or a collection) records it, answers use the recorded decisions"
            )
    return out


def decided(engine: Engine, index: MappingIndex, at: datetime | None) -> tuple[list[Any], Any]:
    """The exceptions (every recorded version) and the SoA as recorded at ``at``."""
    from core.records import utcnow
    from mappings.soa import default_scope

    with engine.connect() as conn:
        rules = recorded_exceptions(conn)
        scope = recorded_scope(conn, at or utcnow(), index.catalog)
    return rules, scope or default_scope(index.catalog)

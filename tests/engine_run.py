"""Run a configured connector through the product's run engine (``collector.runner.drive``)
into a list, so connector tests judge exactly what ``annexa collect`` would store:
checks evaluated by the engine with the configured parameters, unit errors expanded by
the engine, controls resolved from the shipped mappings. No store is involved.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import structlog

from collector.config import ConnectorConfig, LoadedConnector
from collector.runner import drive
from connectors.base import load_connector
from connectors.records import Coverage, Evidence, Finding
from mappings.loader import MappingIndex, load_mappings


@dataclass
class EngineRun:
    """What one engine run produced, in order."""

    status: str = ""
    evidence: list[Evidence] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    coverage: list[Coverage] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    # -- views

    def ids(self, status: str, check_prefix: str = "") -> set[tuple[str, str]]:
        """``(check id, resource id)`` of the findings with ``status``."""
        return {
            (f.check_id, f.resource_id)
            for f in self.findings
            if f.status == status and f.check_id.startswith(check_prefix)
        }

    def one(self, check_id: str, resource_id: str) -> Finding:
        found = [
            f for f in self.findings if f.check_id == check_id and f.resource_id == resource_id
        ]
        assert len(found) == 1, (check_id, resource_id, found)
        return found[0]

    def payload(self, resource_type: str, resource_id: str) -> dict[str, Any]:
        found = [
            e.payload
            for e in self.evidence
            if e.resource_type == resource_type and e.resource_id == resource_id
        ]
        assert len(found) == 1, (resource_type, resource_id)
        return dict(found[0])


class _Sink:
    def __init__(self, run: EngineRun) -> None:
        self.run = run

    def evidence(self, ev: Evidence) -> str:
        self.run.evidence.append(ev)
        return ev.content_hash()

    def finding(self, f: Finding) -> None:
        self.run.findings.append(f)

    def coverage(self, c: Coverage) -> None:
        self.run.coverage.append(c)

    def error(self, message: str) -> None:
        self.run.errors.append(message)


@cache
def _index() -> MappingIndex:
    return load_mappings()


def run_engine(
    connector_type: str,
    options: dict[str, Any],
    *,
    name: str = "under-test",
    checks: dict[str, dict[str, Any]] | None = None,
) -> EngineRun:
    """Validate ``options`` as the config loader does and drive one run into a list."""
    cfg = ConnectorConfig(type=connector_type, name=name, options=options, checks=checks or {})
    cls = load_connector(connector_type)
    loaded = LoadedConnector(cfg, cls, cls.Options.model_validate(cfg.options))
    run = EngineRun()
    result = drive(
        loaded,
        _index(),
        _Sink(run),
        run_id="test-run",
        rlog=structlog.get_logger("test"),
        cancel_event=threading.Event(),
    )
    run.status = result.status
    return run

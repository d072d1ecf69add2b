"""The one test harness for connectors: run a connector through the product's run engine
(``collector.runner.drive``) into a list, so a connector test judges exactly what
``annexa collect`` would store: checks evaluated by the engine with the configured
parameters, connector-yielded findings kept only for enabled checks, unit errors
expanded by the engine (ids ``<prefix>:<unit>``, service ``*`` = every check),
messages scrubbed, controls resolved from the shipped mappings. No store is involved.

Why one harness: ten test files used to carry a private ``findings()`` copy of the
engine; the copies drifted from the product (unit-error ids, messages, service ``*``,
connector-yielded findings), so their ``error`` assertions tested a copy nobody ships.

Two entry points:

* :func:`run_engine` — config-shaped: a connector type and its ``[connectors.options]``
  dict, validated as the config loader does.
* :func:`run_built` — an instance the test already built (e.g. with an injected test
  credential the options cannot express). The engine still validates nothing new: it
  evaluates the instance's records with the class's checks and the given parameters.
* :func:`run_built_units` — the same instance read unit by unit, as daemon replicas read
  it (``plan_units``, then ``drive(..., unit=...)`` per unit, the path
  ``collector.daemon.distribute`` takes), into one result.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import structlog

from collector.config import ConnectorConfig, LoadedConnector
from collector.runner import drive
from core.checks import REGISTRY, evaluate
from core.connector import CollectContext, Connector, load_connector
from core.records import Coverage, Evidence, Finding, Record
from mappings.loader import MappingIndex, load_mappings


@dataclass
class RunResult:
    """What one engine run produced, in order.

    ``records`` is the connector's side of the run: evidence and unit coverage in arrival
    order, less the clean ``*`` row scoped by the instance name (which the engine adds
    when a connector does not report it, so it says nothing about the connector);
    ``coverage`` keeps every row. ``findings`` are the engine's verdicts; ``errors`` the
    run-level error messages (a connector crash, a cancel).
    """

    status: str = ""
    records: list[Record] = field(default_factory=list)
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

    def assert_fails_exactly(self, expected: set[tuple[str, str]]) -> None:
        """The run succeeded, failed exactly ``expected`` ``(check id, resource id)`` pairs
        and erred on none: the verdict of a connector test over a planted estate."""
        assert self.status == "succeeded", (self.status, self.errors)
        failed = self.ids("fail")
        assert failed == expected, {"missing": expected - failed, "unexpected": failed - expected}
        assert self.ids("error") == set(), self.ids("error")

    def one(self, check_id: str, resource_id: str) -> Finding:
        """The single finding of ``check_id`` on ``resource_id`` (fails on none or many)."""
        found = [
            f for f in self.findings if f.check_id == check_id and f.resource_id == resource_id
        ]
        assert len(found) == 1, (check_id, resource_id, found)
        return found[0]

    def payload(self, resource_type: str, resource_id: str) -> dict[str, Any]:
        """The payload of the single evidence of that type and id."""
        found = [
            e.payload
            for e in self.evidence
            if e.resource_type == resource_type and e.resource_id == resource_id
        ]
        assert len(found) == 1, (resource_type, resource_id)
        return dict(found[0])


def stream(connector: Connector) -> list[Record]:
    """The records exactly as the connector yields them, outside the engine: for tests of
    the stream itself (payloads, coverage rows, request counts), never for verdicts."""
    return list(connector.collect(CollectContext(run_id="test")))


def coverage_by_service(records: Iterable[Record]) -> dict[str, Coverage]:
    """Coverage rows by service (the last one wins)."""
    return {r.service: r for r in records if isinstance(r, Coverage)}


def evidence_of(records: Iterable[Record], rtype: str | None = None) -> list[Evidence]:
    """The evidence among ``records``, in order; only of ``rtype`` when it is given."""
    return [
        r
        for r in records
        if isinstance(r, Evidence) and (rtype is None or r.resource_type == rtype)
    ]


def by_status(found: Iterable[Finding], status: str) -> set[tuple[str, str]]:
    """``(check id, resource id)`` of the findings with ``status``."""
    return {(f.check_id, f.resource_id) for f in found if f.status == status}


def judge_payload(
    scope: str, check_id: str, payload: dict[str, Any], resource_id: str = "r1", **params: Any
) -> Finding:
    """The finding of ``check_id`` (``params`` over its defaults) on ``payload``, judged as
    one evidence of the check's resource type in ``scope``."""
    spec = REGISTRY.get(check_id)
    ev = Evidence(scope, "global", spec.resource_type, resource_id, payload)
    return next(evaluate(ev, [spec], {check_id: spec.params_with(params)}))


def evidence_by_id(records: Iterable[Record], suffix: str = "") -> dict[str, Evidence]:
    """Evidence by resource id, of the resource types ending in ``suffix``."""
    return {
        r.resource_id: r
        for r in records
        if isinstance(r, Evidence) and r.resource_type.endswith(suffix)
    }


def by_check(found: Iterable[Finding], status: str = "fail") -> dict[str, set[str]]:
    """Resource ids with ``status``, by check id (checks without any are left out)."""
    out: dict[str, set[str]] = {}
    for f in found:
        if f.status == status:
            out.setdefault(f.check_id, set()).add(f.resource_id)
    return out


#: The name the harness used before it was made the only one (tests/engine_run.py, now this module).
EngineRun = RunResult


class _Sink:
    """A list-backed :class:`collector.runner.RecordSink`."""

    def __init__(self, run: RunResult, name: str) -> None:
        self.run = run
        self.name = name

    def evidence(self, ev: Evidence) -> str:
        self.run.evidence.append(ev)
        self.run.records.append(ev)
        return ev.content_hash()

    def finding(self, f: Finding) -> None:
        self.run.findings.append(f)

    def coverage(self, c: Coverage) -> None:
        self.run.coverage.append(c)
        if not (c.service == "*" and c.ok and c.scope == self.name):
            self.run.records.append(c)

    def error(self, message: str) -> None:
        self.run.errors.append(message)


class _Built(LoadedConnector):
    """A loaded connector whose instance the test made itself (an injected credential)."""

    def __init__(self, cfg: ConnectorConfig, instance: Connector) -> None:
        super().__init__(cfg, type(instance), instance.options)
        self.instance = instance

    def build(self) -> Connector:
        return self.instance


@cache
def _index(mapping_dirs: tuple[str, ...] = ()) -> MappingIndex:
    """The shipped mappings plus ``mapping_dirs`` (as ``[mappings] paths`` adds them)."""
    return load_mappings(mapping_dirs)


def _drive(
    loaded: LoadedConnector,
    mapping_dirs: Iterable[str | Path] = (),
    unit: tuple[str, str, str] | None = None,
    run: RunResult | None = None,
) -> RunResult:
    run = RunResult() if run is None else run
    result = drive(
        loaded,
        _index(tuple(str(d) for d in mapping_dirs)),
        _Sink(run, loaded.name),
        run_id="test-run",
        rlog=structlog.get_logger("test"),
        cancel_event=threading.Event(),
        unit=unit,
    )
    run.status = result.status
    return run


def run_engine(
    connector_type: str,
    options: dict[str, Any],
    *,
    name: str = "under-test",
    checks: dict[str, dict[str, Any]] | None = None,
    disabled_checks: Iterable[str] = (),
    mapping_dirs: Iterable[str | Path] = (),
) -> RunResult:
    """Validate ``options`` as the config loader does and drive one run into a list."""
    cfg = ConnectorConfig(
        type=connector_type,
        name=name,
        options=options,
        checks=checks or {},
        disabled_checks=list(disabled_checks),
    )
    cls = load_connector(connector_type)
    loaded = LoadedConnector(cfg, cls, cls.Options.model_validate(cfg.options))
    return _drive(loaded, mapping_dirs)


def run_built(
    connector: Connector,
    *,
    checks: dict[str, dict[str, Any]] | None = None,
    disabled_checks: Iterable[str] = (),
    mapping_dirs: Iterable[str | Path] = (),
) -> RunResult:
    """Drive an instance the test built through the engine, with per-check ``checks``
    parameter overrides as ``[connectors.checks]`` would give them, and the controls of
    the shipped mappings plus ``mapping_dirs``."""
    cfg = ConnectorConfig(
        type=connector.type,
        name=connector.name,
        options={},
        checks=checks or {},
        disabled_checks=list(disabled_checks),
    )
    return _drive(_Built(cfg, connector), mapping_dirs)


def run_built_units(
    connector: Connector, *, mapping_dirs: Iterable[str | Path] = ()
) -> tuple[list[tuple[str, str, str]], RunResult]:
    """The instance's plan, and every planned unit driven through the engine one at a
    time (``drive(..., unit=...)``, as a replica runs a unit) into one result. ``status``
    is ``succeeded`` only if every unit's run was. The plan must not be None."""
    plan = connector.plan_units(CollectContext(run_id="test-run"))
    assert plan is not None, f"{connector.type} planned no units"
    cfg = ConnectorConfig(type=connector.type, name=connector.name, options={})
    loaded = _Built(cfg, connector)
    run = RunResult()
    statuses = set()
    for unit in plan:
        statuses.add(_drive(loaded, mapping_dirs, unit=unit, run=run).status)
    run.status = "succeeded" if statuses <= {"succeeded"} else ",".join(sorted(statuses))
    return plan, run

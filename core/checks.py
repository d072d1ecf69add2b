"""Checks: pure functions from an evidence payload (+ parameters) to a verdict.

A check is declared next to the code that fetches what it inspects::

    @check(
        id="aws.iam.password_policy_min_length",
        title="Password policy requires a minimum length",
        severity="medium",
        resource_type="aws.iam.password_policy",
        rationale="Short passwords are guessed or cracked quickly.",
        remediation="Set MinimumPasswordLength to at least 14.",
        parameters={"min_length": 14},
    )
    def password_min_length(payload, params):
        ...
        return passed("...") / failed("...") / not_applicable("...")

The function must not do I/O; it is unit-testable on a payload. An exception raised
by a check becomes an ``error`` finding, never a ``pass`` or ``fail``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from core.records import SEVERITIES, Evidence, Finding, FindingStatus, Severity


@dataclass(frozen=True, slots=True)
class Verdict:
    status: FindingStatus
    message: str


def passed(message: str) -> Verdict:
    return Verdict("pass", message)


def failed(message: str) -> Verdict:
    return Verdict("fail", message)


def not_applicable(message: str) -> Verdict:
    return Verdict("not_applicable", message)


CheckFunc = Callable[[Mapping[str, Any], Mapping[str, Any]], Verdict]


@dataclass(frozen=True)
class CheckSpec:
    """A check and its metadata (what ``annexa checks`` prints)."""

    id: str
    title: str
    severity: Severity
    resource_type: str
    rationale: str
    remediation: str
    func: CheckFunc
    parameters: Mapping[str, Any] = field(default_factory=dict)

    def params_with(self, overrides: Mapping[str, Any] | None) -> dict[str, Any]:
        """Defaults merged with overrides; unknown or mistyped names raise ValueError."""
        merged = dict(self.parameters)
        for name, value in (overrides or {}).items():
            if name not in self.parameters:
                known = ", ".join(sorted(self.parameters)) or "none"
                raise ValueError(f"check {self.id} has no parameter {name!r} (parameters: {known})")
            default = self.parameters[name]
            if isinstance(default, bool) != isinstance(value, bool) or (
                isinstance(default, (int, float))
                and not isinstance(default, bool)
                and not isinstance(value, (int, float))
            ):
                raise ValueError(
                    f"check {self.id} parameter {name!r} must be "
                    f"{type(default).__name__}, got {value!r}"
                )
            merged[name] = value
        return merged


class CheckRegistry:
    """Checks by id and by the resource type they inspect."""

    def __init__(self) -> None:
        self._by_id: dict[str, CheckSpec] = {}
        self._by_type: dict[str, list[CheckSpec]] = {}

    def add(self, spec: CheckSpec) -> None:
        existing = self._by_id.get(spec.id)
        if existing is not None and existing.func is not spec.func:
            raise ValueError(f"check id {spec.id!r} is registered twice")
        if existing is not None:
            return
        if spec.severity not in SEVERITIES:
            raise ValueError(f"check {spec.id}: unknown severity {spec.severity!r}")
        self._by_id[spec.id] = spec
        self._by_type.setdefault(spec.resource_type, []).append(spec)

    def get(self, check_id: str) -> CheckSpec:
        return self._by_id[check_id]

    def __contains__(self, check_id: object) -> bool:
        return check_id in self._by_id

    def __iter__(self) -> Iterator[CheckSpec]:
        return iter(sorted(self._by_id.values(), key=lambda s: s.id))

    def __len__(self) -> int:
        return len(self._by_id)

    def for_type(self, resource_type: str) -> list[CheckSpec]:
        return self._by_type.get(resource_type, [])

    def with_prefix(self, prefix: str) -> list[CheckSpec]:
        """Checks whose id is ``{prefix}.*``: those of one connector or analyzer."""
        head = f"{prefix}."
        return [s for s in self if s.id.startswith(head)]

    def for_service(self, prefix: str, service: str) -> list[CheckSpec]:
        """Checks whose resource type is ``{prefix}.{service}.*``."""
        head = f"{prefix}.{service}."
        return [s for s in self if s.resource_type.startswith(head)]


#: Every check of every imported connector module registers here.
REGISTRY = CheckRegistry()


def check(
    *,
    id: str,  # noqa: A002 - mirrors the metadata field name
    title: str,
    severity: Severity,
    resource_type: str,
    rationale: str,
    remediation: str,
    parameters: Mapping[str, Any] | None = None,
    registry: CheckRegistry = REGISTRY,
) -> Callable[[CheckFunc], CheckFunc]:
    """Register ``func`` as a check with its metadata."""

    def decorate(func: CheckFunc) -> CheckFunc:
        registry.add(
            CheckSpec(
                id=id,
                title=title,
                severity=severity,
                resource_type=resource_type,
                rationale=rationale,
                remediation=remediation,
                func=func,
                parameters=dict(parameters or {}),
            )
        )
        return func

    return decorate


def evaluate(
    evidence: Evidence,
    specs: Iterable[CheckSpec],
    params: Mapping[str, Mapping[str, Any]],
    evidence_hash: str | None = None,
) -> Iterator[Finding]:
    """Run each spec on ``evidence``; a check that raises yields an ``error`` finding."""
    payload = evidence.payload
    ehash = evidence_hash or evidence.content_hash()
    for spec in specs:
        try:
            verdict = spec.func(payload, params.get(spec.id, spec.parameters))
            if not isinstance(verdict, Verdict):
                raise TypeError(f"check returned {type(verdict).__name__}, not Verdict")
            status, message = verdict.status, verdict.message
        except Exception as exc:  # noqa: BLE001 - a broken check must not stop the run
            status = "error"
            message = f"check could not be evaluated: {type(exc).__name__}: {exc}"
        yield Finding(
            check_id=spec.id,
            scope=evidence.scope,
            region=evidence.region,
            resource_type=evidence.resource_type,
            resource_id=evidence.resource_id,
            status=status,
            severity=spec.severity,
            message=message,
            evidence_hash=ehash,
            observed_at=evidence.collected_at,
        )

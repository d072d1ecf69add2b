"""Checks: pure functions from an evidence payload (+ parameters) to a verdict.

A check is declared next to the code that fetches what it inspects. Its metadata (what
``annexa checks`` prints and an auditor reads) lives in a TOML file beside its module,
``<module stem>.checks.toml``, one table per check id, so that the prose can be reviewed
and edited without touching Python (Prowler's ``.metadata.json`` sidecar, in TOML)::

    # connectors/aws/iam.py
    @check("aws.iam.password_policy_min_length")
    def password_min_length(payload, params):
        ...
        return passed("...") / failed("...") / not_applicable("...")

    # connectors/aws/iam.checks.toml
    ["aws.iam.password_policy_min_length"]
    title = "Password policy requires a minimum length"
    severity = "medium"
    resource_type = "aws.iam.password_policy"
    rationale = "Short passwords are guessed or cracked quickly."
    remediation = "Set MinimumPasswordLength to at least 14."

    ["aws.iam.password_policy_min_length".parameters]
    min_length = 14

The keyword form, ``@check(id=..., title=..., severity=..., resource_type=...,
rationale=..., remediation=..., parameters=...)``, declares the same metadata in Python;
it serves checks whose metadata is computed (one check registered per source or port) and
code with no file beside it. An entry of a metadata file that no check claims is reported
by :func:`verify_metadata`.

STYLE: the built-in connectors keep every decorated check's metadata in its module's
``.checks.toml`` (long prose as multi-line strings wrapped with line-ending backslashes);
the keyword form stays for computed metadata, analyzers and tests.

The function must not do I/O; it is unit-testable on a payload. An exception raised
by a check becomes an ``error`` finding, never a ``pass`` or ``fail``.
"""

from __future__ import annotations

import sys
import tomllib
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast, overload

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


#: Suffix of the metadata file beside a module: ``storage.py`` → ``storage.checks.toml``.
METADATA_SUFFIX = ".checks.toml"
_REQUIRED_FIELDS = ("title", "severity", "resource_type", "rationale", "remediation")
_FIELDS = (*_REQUIRED_FIELDS, "parameters")


class CheckMetadataError(ValueError):
    """A check's metadata file is missing, malformed, or out of step with its module."""


@dataclass
class _MetadataFile:
    """One parsed metadata file and the ids of the checks that have read their entry."""

    path: Path
    entries: dict[str, Any]
    claimed: set[str] = field(default_factory=set)


#: Every metadata file read so far, by path: each is parsed once per process.
_FILES: dict[Path, _MetadataFile] = {}


def metadata_path(module: str) -> Path:
    """The metadata file of the checks of ``module`` (imported, or being imported)."""
    file = getattr(sys.modules.get(module), "__file__", None)
    if file is None:
        raise CheckMetadataError(
            f"module {module} has no file beside which to read check metadata; "
            "declare its checks with the keyword form of @check(id=..., title=..., ...)"
        )
    source = Path(file)
    return source.with_name(source.name.split(".")[0] + METADATA_SUFFIX)


def _metadata_file(path: Path, reader: str) -> _MetadataFile:
    """The parsed file at ``path``, read on first use; ``reader`` names who wants it."""
    path = path.resolve()
    cached = _FILES.get(path)
    if cached is not None:
        return cached
    try:
        with path.open("rb") as fh:
            entries = tomllib.load(fh)
    except FileNotFoundError:
        raise CheckMetadataError(
            f"{path}: no such file, where {reader} reads its metadata; create it with a "
            'table per check of the module (["<check id>"] with '
            + ", ".join(_REQUIRED_FIELDS)
            + ")"
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise CheckMetadataError(f"{path} (read by {reader}): not valid TOML: {exc}") from None
    loaded = _FILES[path] = _MetadataFile(path, entries)
    return loaded


def _entry(file: _MetadataFile, check_id: str) -> Mapping[str, Any]:
    """The validated table of ``check_id`` in ``file``."""
    where = f"{file.path}: check {check_id}"
    entry = file.entries.get(check_id)
    if entry is None:
        # An unquoted [a.b.c] header nests tables instead of naming the check.
        hint = (
            " (quote the id in the table header)"
            if isinstance(file.entries.get(check_id.split(".")[0]), dict)
            else ""
        )
        raise CheckMetadataError(
            f'{where}: no table ["{check_id}"]{hint}; add one with ' + ", ".join(_REQUIRED_FIELDS)
        )
    if not isinstance(entry, dict):
        raise CheckMetadataError(f'{where}: ["{check_id}"] must be a table')
    unknown = sorted(set(entry) - set(_FIELDS))
    if unknown:
        raise CheckMetadataError(
            f"{where}: unknown key {', '.join(unknown)} (allowed: {', '.join(_FIELDS)})"
        )
    missing = [name for name in _REQUIRED_FIELDS if name not in entry]
    if missing:
        raise CheckMetadataError(f"{where}: missing key {', '.join(missing)}")
    for name in _REQUIRED_FIELDS:
        if not isinstance(entry[name], str) or not entry[name].strip():
            raise CheckMetadataError(f"{where}: {name} must be a non-empty string")
    if entry["severity"] not in SEVERITIES:
        raise CheckMetadataError(
            f"{where}: unknown severity {entry['severity']!r} (one of {', '.join(SEVERITIES)})"
        )
    if not isinstance(entry.get("parameters", {}), dict):
        raise CheckMetadataError(f'{where}: parameters must be a table (["{check_id}".parameters])')
    return entry


def _spec_from_file(check_id: str, func: CheckFunc) -> CheckSpec:
    """``func``'s spec with the metadata of ``check_id`` in its module's file."""
    file = _metadata_file(metadata_path(func.__module__), f"check {check_id}")
    entry = _entry(file, check_id)
    file.claimed.add(check_id)
    return CheckSpec(
        id=check_id,
        title=entry["title"],
        severity=cast(Severity, entry["severity"]),
        resource_type=entry["resource_type"],
        rationale=entry["rationale"],
        remediation=entry["remediation"],
        func=func,
        parameters=dict(entry.get("parameters", {})),
    )


def unclaimed_metadata(paths: Iterable[Path] | None = None) -> list[str]:
    """Entries no check has claimed, as ``<file>: ["<id>"]``: in the metadata files read so
    far, or in ``paths`` (reading those not read yet).

    Meaningful once every module whose checks read these files is imported.
    """
    files = (
        list(_FILES.values())
        if paths is None
        else [_metadata_file(p, "verify_metadata") for p in paths]
    )
    return [
        f'{file.path}: ["{check_id}"]'
        for file in files
        for check_id in file.entries
        if check_id not in file.claimed
    ]


def verify_metadata(paths: Iterable[Path] | None = None) -> None:
    """Raise :class:`CheckMetadataError` naming every entry no check claims (a check
    renamed or deleted in Python but not in its file); see :func:`unclaimed_metadata`."""
    orphans = unclaimed_metadata(paths)
    if orphans:
        raise CheckMetadataError(
            "metadata of no registered check (rename the table to the check's id, or "
            "delete it):\n  " + "\n  ".join(orphans)
        )


@overload
def check(
    check_id: str, /, *, registry: CheckRegistry = REGISTRY
) -> Callable[[CheckFunc], CheckFunc]: ...


@overload
def check(
    *,
    id: str,
    title: str,
    severity: Severity,
    resource_type: str,
    rationale: str,
    remediation: str,
    parameters: Mapping[str, Any] | None = None,
    registry: CheckRegistry = REGISTRY,
) -> Callable[[CheckFunc], CheckFunc]: ...


def check(
    check_id: str | None = None,
    /,
    *,
    id: str | None = None,  # noqa: A002 - mirrors the metadata field name
    title: str | None = None,
    severity: Severity | None = None,
    resource_type: str | None = None,
    rationale: str | None = None,
    remediation: str | None = None,
    parameters: Mapping[str, Any] | None = None,
    registry: CheckRegistry = REGISTRY,
) -> Callable[[CheckFunc], CheckFunc]:
    """Register ``func`` as a check: ``@check("<id>")`` reads its metadata from the
    module's ``.checks.toml``; ``@check(id=..., title=..., ...)`` gives it inline."""
    keywords = {
        "id": id,
        "title": title,
        "severity": severity,
        "resource_type": resource_type,
        "rationale": rationale,
        "remediation": remediation,
    }
    if check_id is not None:
        given = [name for name, value in keywords.items() if value is not None]
        if given or parameters is not None:
            raise TypeError(
                f"check {check_id}: give the id alone (metadata from the module's "
                f"{METADATA_SUFFIX}) or every field as keywords, not both "
                f"(got {', '.join(given or ['parameters'])})"
            )
    else:
        missing = [name for name, value in keywords.items() if value is None]
        if missing:
            raise TypeError(f"check {id or '?'}: missing {', '.join(missing)}")

    def decorate(func: CheckFunc) -> CheckFunc:
        if check_id is not None:
            registry.add(_spec_from_file(check_id, func))
            return func
        registry.add(
            CheckSpec(
                id=cast(str, id),
                title=cast(str, title),
                severity=cast(Severity, severity),
                resource_type=cast(str, resource_type),
                rationale=cast(str, rationale),
                remediation=cast(str, remediation),
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

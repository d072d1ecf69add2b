"""Configuration: one TOML file, validated strictly before anything runs.

Every error names the file, the key path and what is wrong (``ConfigError``; the CLI
exits 2 and writes nothing). Secrets are never written in the file: options typed
``SecretRef`` take ``{ env = "NAME" }`` or ``{ file = "/path" }``, and any other option
whose name looks like a secret is refused when given inline.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tomllib
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from collector.plugins import load_plugin
from core.connector import (
    Connector,
    SecretRef,
    SecretUnavailableError,
    UnknownConnectorError,
)
from core.records import REDACTED
from core.signing import PublicKey, Signer, SigningKeyError, load_public_keys
from store.risk_input import DEFAULT_IMPACT, DEFAULT_LIKELIHOOD

_T = TypeVar("_T")

DEFAULT_CONFIG_FILE = "annexa.toml"
ENV_DATABASE_URL = "ANNEXA_DATABASE_URL"
ENV_CONFIG = "ANNEXA_CONFIG"
ENV_SPOOL_DIR = "ANNEXA_SPOOL_DIR"
_DURATION = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
_SECRETISH = re.compile(r"(secret|password|token|api_?key|private_?key|credential)", re.I)


class ConfigError(ValueError):
    """A configuration problem: ``file: key: reason`` for each problem found."""

    def __init__(self, file: str, problems: list[tuple[str, str]]) -> None:
        self.file = file
        self.problems = problems
        super().__init__("\n".join(f"{file}: {key}: {reason}" for key, reason in problems))


def parse_duration(text: str) -> timedelta:
    """``"90s"``, ``"15m"``, ``"6h"``, ``"7d"``, ``"2w"`` → timedelta."""
    m = _DURATION.match(text)
    if not m:
        raise ValueError(f"{text!r} is not a duration like 30s, 15m, 6h, 7d or 2w")
    return timedelta(**{_UNITS[m.group(2)]: int(m.group(1))})


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DatabaseConfig(_Strict):
    url: str = "sqlite:///annexa.db"


class MappingsConfig(_Strict):
    #: Extra directories of mapping TOML files, relative to the config file.
    paths: list[Path] = Field(default_factory=list)


class LogConfig(_Strict):
    format: Literal["auto", "json", "console"] = "auto"
    level: Literal["debug", "info", "warning", "error"] = "info"


class CollectionConfig(_Strict):
    #: A pass older than this (since its unit was last read cleanly) counts as stale.
    freshness: str = "7d"
    #: A run whose heartbeat (every 15 s while it runs) is older than this is taken for
    #: dead: the next Annexa process that writes for its source seals it ``aborted``.
    stale_after: str = "2m"
    #: Journal every ``annexa collect`` run locally, so that a run that loses the
    #: database (or is killed) is written, under its own id, by the next command.
    spool: bool = True
    #: Where (relative to the config file). Default: ``$ANNEXA_SPOOL_DIR``, else
    #: ``$XDG_STATE_HOME/annexa/spool`` (``~/.local/state/annexa/spool``).
    spool_dir: Path | None = None
    #: A run still reading after this long is stopped: what it had not read is an
    #: ``error`` for every check of the connector instance, naming this bound. "0": none.
    run_deadline: str = "6h"

    @field_validator("freshness", "stale_after", "run_deadline")
    @classmethod
    def _duration(cls, v: str) -> str:
        if v not in ("0", "0s"):
            parse_duration(v)
        return v

    @property
    def run_deadline_seconds(self) -> float | None:
        if self.run_deadline in ("0", "0s"):
            return None
        return parse_duration(self.run_deadline).total_seconds()

    @property
    def freshness_delta(self) -> timedelta:
        return parse_duration(self.freshness)

    @property
    def stale_after_delta(self) -> timedelta:
        return parse_duration(self.stale_after)


class SigningConfig(_Strict):
    """Signatures over sealed runs, retention entries, decisions and packages."""

    #: The collector's Ed25519 private key (PEM) by reference: ``{ file = "…" }`` or
    #: ``{ env = "…" }``. Create one with ``annexa keys generate``. Without it, runs are
    #: sealed unsigned and ``verify`` says so.
    key: SecretRef | None = None
    #: Public keys ``verify`` and ``verify-package`` trust when ``--trusted-keys`` is not
    #: given (relative to the config file). Keep a copy where database writers cannot.
    trusted_keys: Path | None = None
    #: RFC 3161 time-stamping authority: each sealed run's digest is countersigned.
    #: Nothing is sent anywhere unless this is set.
    tsa_url: str | None = None
    #: PEM file with the TSA's root certificate(s), to verify tokens offline.
    tsa_roots: Path | None = None
    #: Seconds to wait for the TSA; a failure leaves the run sealed, stamped later.
    tsa_timeout: float = Field(default=10.0, gt=0)

    @field_validator("tsa_url")
    @classmethod
    def _tsa(cls, v: str | None) -> str | None:
        return None if v is None else _loopback_or_https(v)


class RetentionConfig(_Strict):
    #: How long evidence bodies are kept at least: ``annexa retention`` refuses a
    #: shorter ``--keep`` and ``verify`` flags any removal that kept less.
    keep: str | None = None

    @field_validator("keep")
    @classmethod
    def _duration(cls, v: str | None) -> str | None:
        if v is not None:
            parse_duration(v)
        return v


class RiskConfig(_Strict):
    """The risk register's scales and the risk appetite (``[audit.risk]``).

    A risk's score is likelihood x impact, each a level from 1 to the length of its
    scale (given as the number or as the level's label). Recorded as a decision with the
    risks (store/risks.py), so that a changed appetite never rewrites past answers.
    """

    #: Likelihood levels, lowest first.
    likelihood: list[str] = Field(
        default_factory=lambda: list(DEFAULT_LIKELIHOOD),
        min_length=2,
        max_length=10,
    )
    #: Impact levels, lowest first.
    impact: list[str] = Field(
        default_factory=lambda: list(DEFAULT_IMPACT),
        min_length=2,
        max_length=10,
    )
    #: Highest residual score tolerated without the risk owner's recorded acceptance.
    #: Unset: every risk above the lowest score needs an acceptance.
    appetite: int | None = Field(None, ge=0)

    @field_validator("likelihood", "impact")
    @classmethod
    def _labels(cls, v: list[str]) -> list[str]:
        folded = [s.strip().casefold() for s in v]
        if any(not s for s in folded) or len(set(folded)) != len(folded):
            raise ValueError("levels must be distinct, non-empty labels")
        if any(s.isdigit() for s in folded):
            raise ValueError("a level label cannot be a number (numbers are levels)")
        return v


class AuditConfig(_Strict):
    """Inputs of the auditor features; relative paths are relative to the config file."""

    #: Statement of Applicability scope file (see docs/scope.example.toml).
    scope_file: Path | None = None
    #: Approved exceptions (see docs/exceptions.example.toml).
    exceptions_file: Path | None = None
    #: Risk register, TOML or CSV (see docs/risks.example.toml); risks are also read from
    #: Jira / ServiceNow processes of kind "risk".
    risks_file: Path | None = None
    risk: RiskConfig = Field(default_factory=RiskConfig)


class ConnectorConfig(_Strict):
    type: str
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
    enabled: bool = True
    #: Used by the daemon: ``"every 6h"`` or a five-field cron expression.
    schedule: str | None = None
    options: dict[str, Any] = Field(default_factory=dict)
    #: Parameter overrides per check id.
    checks: dict[str, dict[str, Any]] = Field(default_factory=dict)
    disabled_checks: list[str] = Field(default_factory=list)


def _seconds(value: str | float) -> float:
    """A duration given as ``"90s"``/``"15m"``/… or as a number of seconds."""
    if isinstance(value, bool):
        raise ValueError("a duration must be like 30s, 15m, 6h or a number of seconds")
    if isinstance(value, (int, float)):
        if value < 0:
            raise ValueError("a duration cannot be negative")
        return float(value)
    return parse_duration(value).total_seconds()


_Duration = str | float
_ControlStatus = Literal["fail", "error", "stale", "pass", "not_applicable", "no_evidence"]


def _loopback_or_https(url: str) -> str:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return url
    if parts.scheme == "http" and parts.hostname in ("127.0.0.1", "localhost", "::1"):
        return url
    raise ValueError("must be an https:// URL (plain http:// only for loopback hosts)")


class WebhookConfig(_Strict):
    """A Slack-compatible incoming webhook (``POST {"text": ...}``).

    A Slack webhook URL is itself a credential: prefer ``url = { env = "VAR" }``.
    """

    url: str | SecretRef
    #: Control statuses whose *arrival* is announced; ``pass`` means a recovery.
    on: list[_ControlStatus] = Field(
        default_factory=lambda: ["fail", "error", "stale", "no_evidence", "pass"]
    )

    @field_validator("url")
    @classmethod
    def _url(cls, v: str | SecretRef) -> str | SecretRef:
        return _loopback_or_https(v) if isinstance(v, str) else v


class JiraNotifyConfig(_Strict):
    """Open a Jira issue (``POST /rest/api/2/issue``) when a control degrades."""

    url: str
    project: str
    issue_type: str = "Task"
    #: With ``user``: basic auth (Jira Cloud: e-mail + API token). Without: bearer PAT.
    user: str | None = None
    token: SecretRef
    labels: list[str] = Field(default_factory=lambda: ["annexa", "iso27001"])
    on: list[_ControlStatus] = Field(
        default_factory=lambda: ["fail", "error", "stale", "no_evidence"]
    )
    #: When the control passes again, the issue is commented and moved through the
    #: transition of this name (or to the status of this name); on a relapse it is
    #: reopened through ``reopen_transition`` and commented.
    done_transition: str = "Done"
    reopen_transition: str = "Reopen"

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        return _loopback_or_https(v)


class NotificationsConfig(_Strict):
    webhooks: list[WebhookConfig] = Field(default_factory=list)
    jira: JiraNotifyConfig | None = None
    #: Per-request timeout and delivery attempts (exponential backoff between them).
    timeout: _Duration = "10s"
    max_attempts: int = Field(default=6, ge=1, le=50)
    #: Control statuses are also re-evaluated on this period (a pass turns stale with time).
    evaluate_every: _Duration = "5m"
    #: A replica delivering an outbox row holds it this long; a replica that dies while
    #: delivering leaves it to another (or its restart) after this. At-least-once.
    delivery_lease: _Duration = "5m"

    @field_validator("timeout", "evaluate_every", "delivery_lease")
    @classmethod
    def _duration(cls, v: str | float) -> str | float:
        _seconds(v)
        return v


class DaemonConfig(_Strict):
    """``annexa daemon``: schedules, replicas, health/metrics endpoint, notifications.

    Durations are ``"30s"``, ``"15m"``, ``"6h"``… or a number of seconds.
    """

    #: Address and port of the /healthz, /readyz and /metrics endpoint.
    host: str = "0.0.0.0"  # noqa: S104 - a container exposes its health port
    port: int = Field(default=9464, ge=0, le=65535)
    #: Schedule of a connector that sets none: "every 6h" or a five-field cron (UTC).
    default_schedule: str | None = "every 6h"
    #: Each replica fires its attempt up to this much after the due time (≤ 1/4 period).
    jitter: _Duration = "5s"
    #: On SIGTERM/SIGINT, how long a running collection may continue before it is
    #: cancelled (it then ends "aborted"); the process exits at most ~5 s later.
    grace_period: _Duration = "60s"
    #: A replica's claim on a schedule; renewed every ``heartbeat``. When a replica dies,
    #: another takes over once the lease has expired.
    lease: _Duration = "2m"
    heartbeat: _Duration = "15s"
    #: A run still "running" whose heartbeat is older than this many heartbeats (and
    #: whose schedule lease has expired) is sealed as "aborted".
    stale_heartbeats: int = Field(default=4, ge=2)
    #: Journal each run to ``spool_dir`` so that records produced while the database is
    #: unreachable are written when it returns (needs local disk in proportion to the
    #: largest run; each replica needs its own directory). False: such a run is lost.
    spool: bool = True
    #: Relative paths are relative to the working directory (/data in the image).
    spool_dir: Path = Path("annexa-spool")
    batch_size: int = Field(default=1000, ge=1)
    #: When several due times of a schedule passed unserved (no replica up, or a run
    #: outlasted its period): "latest" runs the latest of them at once, "none" waits for
    #: the next due time. Either way each one not run is recorded in schedule_missed.
    catch_up: Literal["latest", "none"] = "latest"
    #: PostgreSQL only: spread the units (scope x region x service) of each run over
    #: the replicas through a procrastinate queue in the same database, instead of
    #: reading a whole connector instance in the replica that claimed it. See
    #: docs/replicas.md.
    distribute: bool = False
    #: With ``distribute``: units this replica executes at once.
    unit_workers: int = Field(default=2, ge=1, le=64)
    #: With ``distribute``: attempts at a unit (a crash, or its replica dying) before
    #: it is recorded as an error of every check of its service.
    unit_attempts: int = Field(default=3, ge=1, le=20)
    #: With ``distribute``: a unit not finished this long after the run was dispatched
    #: is recorded as timed out (an error of every check of its service).
    unit_timeout: _Duration = "1h"
    #: With ``distribute``: which units may run at the same time anywhere in the
    #: cluster. "scope" (default): one unit per source scope (an AWS account, an Okta
    #: org, a GitHub org) at a time across all replicas, so adding replicas never
    #: multiplies the request rate an account sees; "scope_region": one per scope and
    #: region (AWS throttles per account and region); "none": no bound.
    unit_lock: Literal["scope", "scope_region", "none"] = "scope"
    notifications: NotificationsConfig = Field(default_factory=NotificationsConfig)

    @field_validator("jitter", "grace_period", "lease", "heartbeat", "unit_timeout")
    @classmethod
    def _duration(cls, v: str | float) -> str | float:
        _seconds(v)
        return v

    def seconds(self, name: str) -> float:
        return _seconds(getattr(self, name))


class AnnexaConfig(_Strict):
    database: DatabaseConfig = Field(default_factory=DatabaseConfig)
    mappings: MappingsConfig = Field(default_factory=MappingsConfig)
    log: LogConfig = Field(default_factory=LogConfig)
    collection: CollectionConfig = Field(default_factory=CollectionConfig)
    connectors: list[ConnectorConfig] = Field(default_factory=list)
    daemon: DaemonConfig = Field(default_factory=DaemonConfig)
    audit: AuditConfig = Field(default_factory=AuditConfig)
    signing: SigningConfig = Field(default_factory=SigningConfig)
    retention: RetentionConfig = Field(default_factory=RetentionConfig)


class LoadedConnector:
    """A validated connector instance config with its class and typed options."""

    def __init__(self, cfg: ConnectorConfig, cls: type[Connector], options: Any) -> None:
        self.cfg = cfg
        self.cls = cls
        self.options = options
        specs = {s.id: s for s in cls.checks()}
        self.enabled_checks = {cid: s for cid, s in specs.items() if cid not in cfg.disabled_checks}
        self.params = {
            cid: s.params_with(cfg.checks.get(cid)) for cid, s in self.enabled_checks.items()
        }

    @property
    def name(self) -> str:
        return self.cfg.name

    def build(self) -> Connector:
        return self.cls(self.cfg.name, self.options)


class Settings:
    """The validated configuration plus where it came from."""

    def __init__(self, model: AnnexaConfig, path: Path | None) -> None:
        self.model = model
        self.path = path
        self.connectors: list[LoadedConnector] = []
        self._signer: Signer | None = None

    def resolve(self, p: Path) -> Path:
        """``p`` relative to the config file's directory (the working one without a file)."""
        base = self.path.parent if self.path else Path.cwd()
        return p if p.is_absolute() else base / p

    def signer(self) -> Signer | None:
        """The collector's signing key, loaded once; None when none is configured.

        Raises :class:`ConfigError` when a key is configured but unusable: a process
        that should sign must not quietly seal unsigned runs.
        """
        ref = self.model.signing.key
        if ref is None:
            return None
        if self._signer is None:
            file = str(self.path) if self.path else "<config>"
            try:
                pem = ref.get()
                self._signer = Signer.from_pem(pem.encode("utf-8"), source=repr(ref))
            except (SecretUnavailableError, SigningKeyError) as exc:
                raise ConfigError(file, [("signing.key", str(exc))]) from None
        return self._signer

    def trusted_keys(self, override: Path | None = None) -> dict[str, PublicKey] | None:
        """Keys named by ``override`` or ``[signing] trusted_keys``; None if neither."""
        return self._signing_file(
            override, self.model.signing.trusted_keys, load_public_keys, SigningKeyError
        )

    def _signing_file(
        self,
        override: Path | None,
        configured: Path | None,
        load: Callable[[Path], _T],
        errors: type[Exception],
    ) -> _T | None:
        """``load`` of the file ``override`` names (as given), else of the configured
        one (relative to the config's folder); None if neither. ``errors`` raised by
        ``load`` are a configuration error naming the file."""
        path = override or configured
        if path is None:
            return None
        where = path if override else self.resolve(path)
        try:
            return load(where)
        except errors as exc:
            raise ConfigError(str(where), [("<file>", str(exc))]) from None

    @property
    def spool_dir(self) -> Path | None:
        """The journal directory of CLI runs; None when spooling is off."""
        c = self.model.collection
        if not c.spool:
            return None
        if c.spool_dir is not None:
            return self.resolve(c.spool_dir)
        if os.environ.get(ENV_SPOOL_DIR):
            return Path(os.environ[ENV_SPOOL_DIR])
        state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
        return Path(state) / "annexa" / "spool"

    def tsa_roots(self, override: Path | None = None) -> list[Any] | None:
        """The TSA root certificates named by ``override`` or ``[signing] tsa_roots``."""
        from core.timestamping import TimestampError, load_roots

        roots = self.model.signing.tsa_roots
        return self._signing_file(override, roots, load_roots, TimestampError)

    @property
    def stale_after(self) -> timedelta:
        return self.model.collection.stale_after_delta

    @property
    def retention_keep(self) -> timedelta | None:
        keep = self.model.retention.keep
        return parse_duration(keep) if keep else None

    @property
    def database_url(self) -> str:
        return os.environ.get(ENV_DATABASE_URL) or self.model.database.url

    @property
    def mapping_dirs(self) -> list[Path]:
        base = self.path.parent if self.path else Path.cwd()
        return [p if p.is_absolute() else base / p for p in self.model.mappings.paths]

    @property
    def freshness(self) -> timedelta:
        return self.model.collection.freshness_delta

    def digest(self) -> str:
        """A digest of the effective configuration (secret references, never values)."""
        data = self.model.model_dump(mode="json")
        data["database"]["url"] = _redact_url(self.database_url)
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


def _redact_url(url: str) -> str:
    return re.sub(r"://([^:/@]+):[^@]*@", r"://\1:" + REDACTED + "@", url)


def _loc(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "<root>"


def _inline_secrets(options: dict[str, Any], prefix: str) -> list[tuple[str, str]]:
    problems = []
    for key, value in options.items():
        if _SECRETISH.search(key) and isinstance(value, str):
            problems.append(
                (
                    f"{prefix}.{key}",
                    'secrets may not be written inline; use { env = "VAR" } or '
                    '{ file = "/path/to/secret" }',
                )
            )
        elif isinstance(value, dict):
            problems.extend(_inline_secrets(value, f"{prefix}.{key}"))
    return problems


def _validate_connectors(
    model: AnnexaConfig,
) -> tuple[list[LoadedConnector], list[tuple[str, str]]]:
    problems: list[tuple[str, str]] = []
    loaded: list[LoadedConnector] = []
    seen: dict[str, int] = {}
    for i, c in enumerate(model.connectors):
        where = f"connectors[{i}]"
        if c.name in seen:
            problems.append(
                (
                    f"{where}.name",
                    f"duplicate connector name {c.name!r} (also connectors[{seen[c.name]}])",
                )
            )
            continue
        seen[c.name] = i
        try:
            cls = load_plugin(c.type)
        except UnknownConnectorError as exc:
            problems.append((f"{where}.type", str(exc)))
            continue
        secret_problems = _inline_secrets(c.options, f"{where}.options")
        if secret_problems:
            problems.extend(secret_problems)
            continue
        try:
            options = cls.Options.model_validate(c.options)
        except ValidationError as exc:
            for err in exc.errors():
                problems.append((f"{where}.options.{_loc(err['loc'])}", err["msg"]))
            continue
        known = {s.id for s in cls.checks()}
        bad = False
        for cid in [*c.checks, *c.disabled_checks]:
            if cid not in known:
                problems.append(
                    (f"{where}.checks.{cid}", f"connector type {c.type!r} has no check {cid!r}")
                )
                bad = True
        if bad:
            continue
        try:
            loaded.append(LoadedConnector(c, cls, options))
        except ValueError as exc:
            problems.append((f"{where}.checks", str(exc)))
    return loaded, problems


def load_settings(path: str | Path | None = None) -> Settings:
    """Load and validate ``path`` (or ``$ANNEXA_CONFIG``, or ``./annexa.toml`` if present).

    With no file at all, defaults apply (no connectors). Raises ``ConfigError``.
    """
    explicit = path is not None or ENV_CONFIG in os.environ
    if path is None:
        path = os.environ.get(ENV_CONFIG, DEFAULT_CONFIG_FILE)
    p = Path(path)
    if not p.exists():
        if explicit:
            raise ConfigError(str(p), [("<file>", "no such file")])
        return Settings(AnnexaConfig(), None)
    try:
        raw = tomllib.loads(p.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError(str(p), [("<file>", f"not UTF-8 text: {exc}")]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(p), [("<file>", f"invalid TOML: {exc}")]) from None
    except OSError as exc:
        raise ConfigError(str(p), [("<file>", f"cannot be read: {exc.strerror}")]) from None
    try:
        model = AnnexaConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(str(p), [(_loc(e["loc"]), e["msg"]) for e in exc.errors()]) from None
    settings = Settings(model, p)
    settings.connectors, problems = _validate_connectors(model)
    for i, d in enumerate(settings.mapping_dirs):
        if not d.is_dir():
            problems.append((f"mappings.paths[{i}]", f"{d} is not a directory"))
    if problems:
        raise ConfigError(str(p), problems)
    return settings

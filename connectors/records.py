"""The records a connector streams: evidence, findings and coverage.

These are plain, immutable value objects with no I/O. The collector consumes them;
the store persists them. Keeping them here (rather than in ``store``) means a
connector never imports database code.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

FindingStatus = Literal["pass", "fail", "error", "not_applicable"]
FINDING_STATUSES: tuple[str, ...] = ("pass", "fail", "error", "not_applicable")
Severity = Literal["info", "low", "medium", "high", "critical"]
SEVERITIES: tuple[str, ...] = ("info", "low", "medium", "high", "critical")

# Keys whose values change on every read and would defeat change-only storage.
VOLATILE_KEYS = frozenset(
    {"ResponseMetadata", "RequestId", "requestId", "x-amz-request-id", "ETag", "etag"}
)
# Keys that must never be stored: the value is replaced by a marker.
_SECRET_KEY = re.compile(
    r"(secret|password|passwd|token|private_?key|credential|api_?key|session_?key)",
    re.IGNORECASE,
)
# Key names matching the pattern above that carry metadata, not secrets.
_NOT_SECRET = frozenset(
    {
        "PasswordPolicy",
        "password_enabled",
        "password_last_used",
        "password_last_changed",
        "password_next_rotation",
        "PasswordLastUsed",
        "PasswordReusePrevention",
        "MinimumPasswordLength",
        "RequireSymbols",
        "RequireNumbers",
        "RequireUppercaseCharacters",
        "RequireLowercaseCharacters",
        "AllowUsersToChangePassword",
        "ExpirePasswords",
        "MaxPasswordAge",
        "HardExpiry",
        "PasswordLastChanged",
        "token_type",
        "HttpTokens",  # EC2 IMDS setting ("required"/"optional"), not a token
    }
)
REDACTED = "[REDACTED]"


def utcnow() -> datetime:
    return datetime.now(UTC)


@functools.lru_cache(maxsize=8192)
def _is_secret_key(key: str) -> bool:
    # Cached: payload key names repeat across millions of items, and this runs per key.
    if key in _NOT_SECRET:
        return False
    lowered = key.lower()
    # Booleans and timestamps about a secret ("password_enabled") are not secrets.
    if lowered.endswith(
        ("_enabled", "_active", "_last_used", "_last_rotated", "_date", "lastused")
    ):
        return False
    return bool(_SECRET_KEY.search(key))


_PLAIN = (str, bool, int, float, type(None))


def normalise(value: Any) -> Any:
    """Return ``value`` made JSON-safe and stable.

    Volatile keys are dropped, secret-looking keys are redacted, datetimes become
    UTC ISO-8601 strings, bytes become a hex digest. Dict key order does not matter
    because canonical JSON sorts keys.

    This is the hottest function of a collection (every evidence item goes through it
    before hashing), so plain JSON types are tested by exact type first and handled
    inline; anything else takes the general path in ``_normalise_other``.
    """
    t = type(value)
    if t is dict:
        return _normalise_dict(value)
    if t is list or t is tuple:
        return [v if type(v) in _PLAIN else normalise(v) for v in value]
    if t in _PLAIN:
        return value
    return _normalise_other(value)


def _normalise_dict(value: dict[Any, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in value.items():
        key = k if type(k) is str else str(k)
        if key in VOLATILE_KEYS:
            continue
        if isinstance(v, (str, bytes)) and v and _is_secret_key(key):
            out[key] = REDACTED
        elif type(v) in _PLAIN:
            out[key] = v
        else:
            out[key] = normalise(v)
    return out


def _normalise_other(value: Any) -> Any:
    if isinstance(value, dict):
        return _normalise_dict(dict(value))
    if isinstance(value, (list, tuple)):
        return [normalise(v) for v in value]
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, (bytes, bytearray)):
        return {"sha256": hashlib.sha256(bytes(value)).hexdigest()}
    if isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def canonical_json(value: Any) -> str:
    """Canonical JSON: sorted keys, no whitespace, UTF-8 kept as is."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def service_of(resource_type: str) -> str:
    """The service segment of a dotted type or check id: ``aws.s3.bucket`` → ``s3``."""
    parts = resource_type.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


@dataclass(frozen=True, slots=True)
class Evidence:
    """A snapshot of one resource as the source returned it (normalised)."""

    scope: str
    region: str
    resource_type: str
    resource_id: str
    payload: dict[str, Any]
    collected_at: datetime = field(default_factory=utcnow)

    @property
    def key(self) -> str:
        return f"{self.resource_type}|{self.scope}|{self.region}|{self.resource_id}"

    @property
    def service(self) -> str:
        return service_of(self.resource_type)

    def body(self) -> str:
        return canonical_json(normalise(self.payload))

    def content_hash(self) -> str:
        return sha256_hex(self.body())


@dataclass(frozen=True, slots=True)
class Finding:
    """One check evaluated on one resource at one time."""

    check_id: str
    scope: str
    region: str
    resource_type: str
    resource_id: str
    status: FindingStatus
    severity: Severity
    message: str
    evidence_hash: str | None = None
    observed_at: datetime = field(default_factory=utcnow)
    controls: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        return f"{self.check_id}|{self.scope}|{self.region}|{self.resource_id}"

    @property
    def service(self) -> str:
        return service_of(self.resource_type)


@dataclass(frozen=True, slots=True)
class Coverage:
    """The outcome of reading one unit of a source: ``scope``/``region``/``service``.

    A connector yields one ``Coverage`` per unit it attempted. ``ok=False`` turns every
    check of that service into an ``error`` finding for the unit, and keeps the unit's
    previously stored resources open (they are not closed by absence).

    ``service="*"`` names the whole scope: yield it with ``ok=False`` when the scope
    cannot be opened at all (authentication, an unreachable endpoint) — every check
    becomes an ``error`` there — and with ``ok=True`` once it opens, which closes those
    errors again.
    """

    scope: str
    region: str
    service: str
    ok: bool
    error: str | None = None

    @property
    def unit(self) -> str:
        return f"{self.scope}/{self.region}/{self.service}"


Record = Evidence | Finding | Coverage

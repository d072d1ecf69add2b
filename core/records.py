"""The records a connector streams: evidence, findings and coverage.

These are plain, immutable value objects with no I/O. The collector consumes them;
the store persists them. Keeping them here (rather than in ``store``) means a
connector never imports database code.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import orjson

from core.redaction import REDACTED, is_secret_key

FindingStatus = Literal["pass", "fail", "error", "not_applicable"]
FINDING_STATUSES: tuple[str, ...] = ("pass", "fail", "error", "not_applicable")
Severity = Literal["info", "low", "medium", "high", "critical"]
SEVERITIES: tuple[str, ...] = ("info", "low", "medium", "high", "critical")

# Keys whose values change on every read and would defeat change-only storage.
VOLATILE_KEYS = frozenset(
    {"ResponseMetadata", "RequestId", "requestId", "x-amz-request-id", "ETag", "etag"}
)


def utcnow() -> datetime:
    return datetime.now(UTC)


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
        if isinstance(v, (str, bytes)) and v and is_secret_key(key):
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


# -- the canonical body, fast ------------------------------------------------------------
#
# ``canonical_body(p)`` is byte for byte ``canonical_json(normalise(p))`` encoded as
# UTF-8: stored bodies and their content hashes must not depend on which path made them.
# The fast path walks the payload once without copying what needs no change (most of
# it), then lets orjson serialise; orjson's output equals ``json.dumps``'s for every
# value the walk lets through. Anything else — floats ``json`` writes with an exponent,
# integers beyond 64 bits, unfamiliar types orjson refuses, lone surrogates — takes
# the reference path. tests/test_records.py compares both paths on random payloads.

_ORJSON_OPTIONS = orjson.OPT_SORT_KEYS | orjson.OPT_UTC_Z | orjson.OPT_NAIVE_UTC
_SCALARS = frozenset({str, int, bool, type(None)})
_ZERO = timedelta(0)
# Key names already seen to be neither volatile nor secret-looking: a dict whose keys
# are all here needs no per-key test. Bounded, so hostile payloads cannot grow it.
_plain_keys: set[str] = set()
_PLAIN_KEYS_MAX = 65_536


class _ReferencePath(Exception):
    """The payload holds a value whose orjson form differs from ``json.dumps``'s."""


def canonical_body(payload: Any) -> bytes:
    """The canonical JSON of ``normalise(payload)``, as UTF-8 bytes (what is stored)."""
    try:
        return orjson.dumps(_prepare(payload), option=_ORJSON_OPTIONS)
    except (_ReferencePath, TypeError):  # orjson.JSONEncodeError is a TypeError
        return _reference_body(payload)


def _reference_body(payload: Any) -> bytes:
    normalised = normalise(payload)
    try:
        return canonical_json(normalised).encode("utf-8")
    except UnicodeEncodeError:
        # A lone surrogate (hostile or broken input) cannot be stored as UTF-8: escape
        # every non-ASCII character of this body instead, which is still canonical.
        return json.dumps(normalised, sort_keys=True, separators=(",", ":")).encode("ascii")


def _prepare(value: Any) -> Any:
    """``value`` ready for orjson: itself if nothing in it changes, else a changed copy."""
    t = type(value)
    if t is dict:
        return _prepare_dict(value)
    if t is list or t is tuple:
        return _prepare_seq(value)
    if t in _SCALARS:
        return value
    return _prepare_other(value, t)


def _prepare_dict(d: dict[Any, Any]) -> dict[Any, Any]:
    copy: dict[Any, Any] | None = None
    if not d.keys() <= _plain_keys:
        copy = _apply_key_rules(d)
        if copy is None:
            pass
        elif copy is _PER_KEY:
            # A key that is not a str: with every key made one, the usual rules apply
            # (as in ``_normalise_dict``, a later key that becomes the same str wins).
            keyed = {k if type(k) is str else str(k): v for k, v in d.items()}
            if any(type(k) is not str for k in keyed):
                raise _ReferencePath  # a key whose str() is still no plain str: rare
            return _prepare_dict(keyed)
        else:
            d = copy
    for k, v in d.items():
        t = type(v)
        if t in _SCALARS:
            continue
        if t is dict:
            nv: Any = _prepare_dict(v)
        elif t is list or t is tuple:
            nv = _prepare_seq(v)
        else:
            nv = _prepare_other(v, t)
        if nv is not v:
            if copy is None:
                copy = dict(d)
            copy[k] = nv
    return d if copy is None else copy


_PER_KEY: dict[Any, Any] = {}  # sentinel: "a key is not a str"


def _apply_key_rules(d: dict[Any, Any]) -> dict[Any, Any] | None:
    """A copy of ``d`` without its volatile keys and with its secrets redacted, or None
    if neither applies. Only the keys not yet known plain are looked at (C-level set
    difference): typically one ``ResponseMetadata`` among a dozen familiar keys."""
    copy: dict[Any, Any] | None = None
    for k in d.keys() - _plain_keys:
        if type(k) is not str:
            return _PER_KEY  # the key itself changes (to str(k)): the general path
        if k in VOLATILE_KEYS:
            if copy is None:
                copy = dict(d)
            del copy[k]
        elif is_secret_key(k):
            v = d[k]
            if isinstance(v, (str, bytes)) and v:
                if copy is None:
                    copy = dict(d)
                copy[k] = REDACTED
        elif len(_plain_keys) < _PLAIN_KEYS_MAX:
            _plain_keys.add(k)
    return copy


def _prepare_seq(seq: list[Any] | tuple[Any, ...]) -> list[Any] | tuple[Any, ...]:
    # The same walk as _prepare_dict's, written out again: a shared helper costs a call
    # per container, measured at +5% on canonical_body.
    copy: list[Any] | None = None
    for i, v in enumerate(seq):
        t = type(v)
        if t in _SCALARS:
            continue
        if t is dict:
            nv: Any = _prepare_dict(v)
        elif t is list or t is tuple:
            nv = _prepare_seq(v)
        else:
            nv = _prepare_other(v, t)
        if nv is not v:
            if copy is None:
                copy = list(seq)
            copy[i] = nv
    return seq if copy is None else copy


def _prepare_other(v: Any, t: type) -> Any:
    if t is float:
        # json.dumps writes these with an exponent ("1e-05"), orjson without ("0.00001").
        if v == 0.0 or 1e-4 <= abs(v) < 1e16:
            return v
        raise _ReferencePath
    if t is datetime:
        # orjson writes UTC (and naive, taken as UTC) exactly as normalise does.
        if v.tzinfo is None or v.tzinfo is UTC or v.utcoffset() == _ZERO:
            return v
        return _normalise_other(v)
    # Everything else (bytes, subclasses, arbitrary objects) by the reference rules. Their
    # result is final: walking it again would apply the key rules twice (a timestamp
    # under a secret-looking key would then be redacted), so containers other than a
    # bytes digest go to the reference path, which is rare: SDKs return plain types.
    nv = normalise(v)
    nt = type(nv)
    if nt is float:
        return _prepare_other(nv, float)
    if nt is dict or nt is list:
        if isinstance(v, (bytes, bytearray)):
            return nv
        raise _ReferencePath
    return nv


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
    #: For evidence read from a provider's bulk inventory rather than the resource's own
    #: API: the time up to which the provider vouches for the record — its snapshot
    #: time (Cloud Asset Inventory: the listing's ``readTime``), *not* the time of the
    #: resource's last change (``updateTime``): an unchanged resource is still described
    #: truly. ``None`` for a direct read (true as of ``collected_at``). Not part of the
    #: payload (the content hash and the checks are the same either way); stored in
    #: ``evidence.source_updated_at``, sealed, and counted toward ``stale``
    #: (docs/concepts.md, "Stale").
    source_updated_at: datetime | None = None

    @property
    def key(self) -> str:
        return f"{self.resource_type}|{self.scope}|{self.region}|{self.resource_id}"

    @property
    def service(self) -> str:
        return service_of(self.resource_type)

    def body(self) -> str:
        return canonical_body(self.payload).decode("utf-8")

    def content_hash(self) -> str:
        return hashlib.sha256(canonical_body(self.payload)).hexdigest()


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

"""The canonical evidence body: the fast path must equal the reference path byte for byte.

Stored bodies and content hashes from earlier versions (and from the daemon's journal)
must keep matching, so ``canonical_body`` is compared with ``canonical_json(normalise())``
on random payloads holding every kind of value a source can hand over.
"""

from __future__ import annotations

import decimal
import enum
import hashlib
import json
import random
import uuid
from datetime import UTC, date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from dateutil import tz as dateutil_tz

from core import records
from core.records import (
    REDACTED,
    Evidence,
    canonical_body,
    canonical_json,
    normalise,
)

pytestmark = pytest.mark.clock


def reference(payload: object) -> bytes:
    return canonical_json(normalise(payload)).encode("utf-8")


class Colour(enum.Enum):
    RED = 1.5e-7


class Level(enum.IntEnum):
    HIGH = 3


class Mode(enum.StrEnum):
    STRICT = "strict"


class Name(str):
    pass


class Mapping(dict):  # a dict subclass, as some SDKs return
    pass


KEYS = [
    "Name", "Arn", "Tags", "Key", "Value", "CreateDate", "password_enabled",
    "PasswordLastUsed", "ClientSecret", "api_key", "SessionToken", "ResponseMetadata",
    "RequestId", "ETag", "token_type", "HttpTokens", "é", "日本", "\U0001f600", "",
    "a\"b", "back\\slash", "tab\tkey", "Password", "private_key_id",
]
TIMEZONES = [
    UTC, None, timezone(timedelta(hours=2)), timezone(timedelta(0)), ZoneInfo("UTC"),
    ZoneInfo("Europe/Paris"), dateutil_tz.tzutc(), timezone(timedelta(hours=-5, minutes=-30)),
]
FLOATS = [
    0.0, -0.0, 1.0, -2.5, 0.1, 1e-4, 9.99e-5, 1e-5, 1e15, 9999999999999998.0, 1e16, 1e17,
    1.5e300, 5e-324, float("nan"), float("inf"), float("-inf"), 123456.789,
]
INTS = [0, 1, -1, 2**53, 2**63 - 1, 2**63, 2**64 - 1, 2**64, -(2**63), -(2**63) - 1, 10**30]
STRINGS = [
    "", "plain", "ünïcödé", "日本語", "\U0001f600", "quote\"d", "back\\slash", "line\nbreak",
    "\x00\x01\x1f\x7f", "\u2028\u2029", "\ufeff", "a" * 300, "</script>",
]


def scalar(rng: random.Random) -> object:
    pick = rng.randrange(14)
    if pick == 0:
        return rng.choice(FLOATS)
    if pick == 1:
        return rng.uniform(-1, 1) * 10 ** rng.uniform(-30, 30)
    if pick == 2:
        return rng.choice(INTS)
    if pick == 3:
        return rng.choice(STRINGS)
    if pick == 4:
        return rng.choice([True, False, None])
    if pick == 5:
        moment = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(
            seconds=rng.randrange(10**8), microseconds=rng.choice([0, 1, 120000, 999999])
        )
        zone = rng.choice(TIMEZONES)
        return moment.replace(tzinfo=None) if zone is None else moment.astimezone(zone)
    if pick == 6:
        return rng.choice([b"", b"secret-bytes", bytearray(b"abc")])
    if pick == 7:
        return rng.choice([Colour.RED, Level.HIGH, Mode.STRICT, Name("sub"), date(2026, 5, 1)])
    if pick == 8:
        return rng.choice([decimal.Decimal("1.10"), uuid.UUID(int=7), frozenset({1})])
    return rng.choice([*STRINGS[:4], rng.randrange(1000), rng.random()])


def payload(rng: random.Random, depth: int = 0) -> object:
    if depth >= 4 or rng.random() < 0.3:
        return scalar(rng)
    kind = rng.randrange(6)
    if kind < 3:
        out: dict[object, object] = {}
        for _ in range(rng.randrange(6)):
            key: object = rng.choice([*KEYS, f"k{rng.randrange(50)}"])
            if rng.random() < 0.05:
                key = rng.choice([1, 2.5, None, True])  # non-string keys become strings
            out[key] = payload(rng, depth + 1)
        return Mapping(out) if kind == 2 and rng.random() < 0.3 else out
    if kind < 5:
        return [payload(rng, depth + 1) for _ in range(rng.randrange(5))]
    return tuple(payload(rng, depth + 1) for _ in range(rng.randrange(4)))


def test_fast_body_equals_reference_on_random_payloads() -> None:
    rng = random.Random(20261127)
    fast_path = 0
    for i in range(20_000):
        p = {"id": i, "body": payload(rng)}
        try:
            expected = reference(p)
        except UnicodeEncodeError:  # pragma: no cover - the generator has no surrogates
            raise
        assert canonical_body(p) == expected, p
        try:
            records.orjson.dumps(records._prepare(p), option=records._ORJSON_OPTIONS)
            fast_path += 1
        except (records._ReferencePath, TypeError):
            pass
    # The comparison is only worth something if most payloads took the fast path.
    assert fast_path > 10_000


@pytest.mark.parametrize("value", FLOATS + INTS + STRINGS, ids=repr)
def test_every_edge_value_matches(value: object) -> None:
    p = {"v": value, "nested": [{"v": value}], "t": (value,)}
    assert canonical_body(p) == reference(p)


class _SelfStr(str):
    """A str subclass whose str() is itself, not a plain str."""

    def __str__(self) -> str:
        return self


def test_keys_that_are_not_plain_str_match_the_reference() -> None:
    # Non-str keys are made str (a later one that becomes an existing key wins); a key
    # whose str() is still no plain str takes the reference path.
    p = {2: {"Password": "x", 3.5: [None], "3.5": "y"}, "2": "z", 1: {1: [{None: 1}]}}
    assert canonical_body(p) == reference(p)
    odd = {_SelfStr("a key no other test uses"): 1, 2: 3}
    assert canonical_body(odd) == reference(odd)


@pytest.mark.parametrize("zone", TIMEZONES, ids=repr)
def test_datetimes_in_any_zone_are_stored_as_utc(zone: object) -> None:
    moment = datetime(2026, 3, 1, 12, 0, 0, 5, tzinfo=UTC)
    value = moment.replace(tzinfo=None) if zone is None else moment.astimezone(zone)  # type: ignore[arg-type]
    body = canonical_body({"at": value})
    assert body == b'{"at":"2026-03-01T12:00:00.000005Z"}'
    assert body == reference({"at": value})


def test_volatile_keys_are_dropped_and_secrets_redacted_at_any_depth() -> None:
    p = {
        "ResponseMetadata": {"RequestId": "r-1"},
        "User": {"Name": "a", "ClientSecret": "hunter2", "ETag": "x", "HttpTokens": "required"},
        "Keys": [{"api_key": b"raw", "api_key_enabled": True, "token": ""}],
    }
    body = json.loads(canonical_body(p))
    assert body == {
        "User": {"Name": "a", "ClientSecret": REDACTED, "HttpTokens": "required"},
        "Keys": [{"api_key": REDACTED, "api_key_enabled": True, "token": ""}],
    }
    assert canonical_body(p) == reference(p)
    # The input is never modified, even where the fast path shares unchanged parts.
    assert p["User"]["ClientSecret"] == "hunter2"
    assert "ResponseMetadata" in p


def test_a_key_known_plain_is_still_redacted_where_it_is_secret() -> None:
    # "Name" becomes a known-plain key; a later dict mixing it with a secret key must
    # still be redacted: the plain-key cache only ever skips keys that are not secret.
    assert canonical_body({"Name": "a"}) == b'{"Name":"a"}'
    assert json.loads(canonical_body({"Name": "a", "Password": "p"}))["Password"] == REDACTED


def test_a_lone_surrogate_is_stored_escaped_instead_of_failing() -> None:
    p = {"name": "bad\ud800name", "ok": "é"}
    body = canonical_body(p)
    assert body == b'{"name":"bad\\ud800name","ok":"\\u00e9"}'
    ev = Evidence("s", "r", "aws.iam.user", "u", p)
    assert ev.content_hash() == hashlib.sha256(body).hexdigest()
    assert ev.body() == body.decode()


def test_evidence_hash_is_the_sha256_of_the_stored_body() -> None:
    ev = Evidence("s", "r", "aws.s3.bucket", "b", {"CreationDate": datetime(2026, 1, 1)})
    assert ev.body() == '{"CreationDate":"2026-01-01T00:00:00Z"}'
    assert ev.content_hash() == hashlib.sha256(ev.body().encode()).hexdigest()


FINDING_FIELDS = (
    "check_id", "key", "status", "severity", "message", "evidence_hash", "controls",
    "resource_type", "resource_id",
)


def test_finding_hash_is_unchanged_by_the_fast_path() -> None:
    """Stored finding hashes predate orjson: both paths must agree for any text."""
    from store.integrity import finding_hash

    def reference_hash(row: dict[str, object]) -> str:
        fields = {k: row[k] for k in FINDING_FIELDS}
        text = json.dumps(fields, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()

    values = [None, "", "a", "é", "\x7f", "\x00", "tab\t", 'q"', "\\", "日本", "\ud800",
              "\U0001f600", '["A.5.17","A.8.5"]', "x" * 200]
    rng = random.Random(7)
    for _ in range(5_000):
        row = {k: rng.choice(values) for k in FINDING_FIELDS}
        assert finding_hash(row) == reference_hash(row), row

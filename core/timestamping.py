"""RFC 3161 time stamps: a third party's signed word that a digest existed at a time.

A signing key proves who sealed a run, not when: whoever holds the key can sign a
back-dated run today. A time-stamping authority (TSA) countersigns the run's digest
with its own clock and key; the token is stored beside the run and verified offline
against the TSA's root certificate. Nothing is sent anywhere unless a TSA is
configured (``[signing] tsa_url``), and what is sent is a hash: ``SHA-256`` of the
run's digest line, never evidence.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from core.signing import RUN_DOMAIN

CONTENT_TYPE = "application/timestamp-query"
MAX_RESPONSE = 256 * 1024


class TimestampError(RuntimeError):
    """The TSA did not answer with a granted token for our request."""


def run_message(digest: str) -> bytes:
    """What a run's token covers (the same line its signature covers)."""
    return f"{RUN_DOMAIN}\n{digest}".encode()


@dataclass(frozen=True)
class Token:
    der: bytes
    gen_time: datetime

    @property
    def b64(self) -> str:
        return base64.b64encode(self.der).decode("ascii")


def request_token(url: str, message: bytes, *, timeout: float = 10.0) -> Token:
    """Ask the TSA at ``url`` for a token over ``message`` (with a nonce and its cert)."""
    import httpx
    import rfc3161_client as tsp

    req = (
        tsp.TimestampRequestBuilder()
        .data(message)
        .hash_algorithm(tsp.HashAlgorithm.SHA256)
        .nonce(nonce=True)
        .cert_request(cert_request=True)
        .build()
    )
    try:
        resp = httpx.post(
            url,
            content=req.as_bytes(),
            headers={"Content-Type": CONTENT_TYPE, "Accept": "application/timestamp-reply"},
            timeout=timeout,
        )
    except httpx.HTTPError as exc:
        raise TimestampError(f"{url}: {type(exc).__name__}: {exc}") from None
    if resp.status_code != 200:
        raise TimestampError(f"{url}: HTTP {resp.status_code}")
    if len(resp.content) > MAX_RESPONSE:
        raise TimestampError(f"{url}: response larger than {MAX_RESPONSE} bytes")
    try:
        parsed = tsp.decode_timestamp_response(resp.content)
    except ValueError as exc:
        raise TimestampError(f"{url}: not a time-stamp response ({exc})") from None
    if parsed.status not in (0, 1):  # granted, granted with modifications
        raise TimestampError(f"{url}: request not granted (status {parsed.status})")
    if parsed.tst_info.nonce != req.nonce:
        raise TimestampError(f"{url}: the answer's nonce is not ours (a replayed token?)")
    # Check the token now as it will be checked later, minus the chain (the root may
    # be configured only where verification happens).
    if parsed.tst_info.message_imprint.message != _sha256(message):
        raise TimestampError(f"{url}: the token covers another message")
    return Token(resp.content, parsed.tst_info.gen_time.astimezone(UTC))


def _sha256(data: bytes) -> bytes:
    import hashlib

    return hashlib.sha256(data).digest()


def load_roots(path: Path) -> list[object]:
    """The TSA root certificate(s) of a PEM file (to verify tokens offline)."""
    from cryptography import x509

    try:
        return list(x509.load_pem_x509_certificates(path.read_bytes()))
    except (OSError, ValueError) as exc:
        raise TimestampError(f"{path}: not a PEM file of certificates ({exc})") from None


def verify_token(token_b64: str, message: bytes, roots: list[object]) -> datetime:
    """The time a stored token vouches for ``message``; TimestampError if it does not."""
    import rfc3161_client as tsp

    try:
        parsed = tsp.decode_timestamp_response(base64.b64decode(token_b64, validate=True))
        builder = tsp.VerifierBuilder()
        for root in roots:
            builder = builder.add_root_certificate(root)  # type: ignore[arg-type]
        builder.build().verify_message(parsed, message)
    except (ValueError, tsp.VerificationError) as exc:
        raise TimestampError(str(exc) or type(exc).__name__) from None
    return parsed.tst_info.gen_time.astimezone(UTC)

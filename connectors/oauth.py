"""Short-lived access tokens obtained by the connectors themselves (OAuth 2.0, GitHub Apps).

A long-lived API token is the credential auditors like least; service apps exchange a
private key or client secret for an access token that expires within the hour. This
module holds the two pieces every such flow needs:

* :class:`CachedToken` — a thread-safe cache around a *fetch* function returning
  ``(token, expires_in_seconds)``: the token is fetched on first use and again when less
  than ``margin`` seconds of its life remain, so a long run (or a worker pool sharing one
  :class:`~connectors.http.HttpClient`) never sends an expired token. Every token is
  registered with the log redactor the moment it is received.
* :func:`bearer` — the :data:`~connectors.http.AuthHeaders` callable sending it.
* :func:`sign_jwt_rs256` — a signed JWT (Okta ``private_key_jwt`` client assertions,
  GitHub App JWTs), via PyJWT.
* :func:`post_token_form` — the token request itself, through the shared HTTP layer
  (retries, timeouts, loopback-only ``http://``), parsing ``access_token``/``expires_in``.

Token requests fail with a :class:`~connectors.http.SourceError` whose message never
holds the token, the client secret or the assertion.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import jwt

from connectors.http import AuthHeaders, HttpClient, MalformedResponseError, SourceError
from core.redaction import register_secret

__all__ = [
    "DEFAULT_MARGIN",
    "CachedToken",
    "InvalidPrivateKeyError",
    "bearer",
    "post_token_form",
    "sign_jwt_rs256",
]

#: Seconds of remaining life below which a cached token is replaced.
DEFAULT_MARGIN = 60.0

#: Fetches a fresh token: ``(token, seconds until it expires)``.
TokenFetch = Callable[[], tuple[str, float]]


class InvalidPrivateKeyError(SourceError):
    """The configured private key is not a usable PEM RSA key (the key is never shown)."""


class CachedToken:
    """A token fetched on demand and refreshed shortly before it expires.

    :param fetch: obtains a new token; may raise :class:`~connectors.http.SourceError`.
    :param margin: refresh when fewer seconds than this remain.
    :param clock: monotonic seconds (tests inject a fake clock).

    Thread-safe: one fetch at a time; concurrent callers wait for it and share the result.
    """

    def __init__(
        self,
        fetch: TokenFetch,
        *,
        margin: float = DEFAULT_MARGIN,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._fetch = fetch
        self._margin = margin
        self._clock = clock
        self._lock = threading.Lock()
        self._token: str | None = None
        self._expires_at = 0.0
        self.fetches = 0

    def get(self) -> str:
        """The current token, fetching a new one when absent or about to expire."""
        with self._lock:
            if self._token is None or self._clock() >= self._expires_at - self._margin:
                started = self._clock()
                token, expires_in = self._fetch()
                if not token:
                    raise SourceError("the token endpoint returned an empty token")
                register_secret(token)
                self._token = token
                self._expires_at = started + max(0.0, float(expires_in))
                self.fetches += 1
            return self._token

    def invalidate(self) -> None:
        """Forget the cached token (the next :meth:`get` fetches a new one)."""
        with self._lock:
            self._token = None


def bearer(source: CachedToken) -> AuthHeaders:
    """``Authorization: Bearer <token>`` from ``source``, refreshed as needed."""

    def headers() -> Mapping[str, str]:
        return {"Authorization": f"Bearer {source.get()}"}

    return headers


def bearer_signed_in(fetch: TokenFetch) -> AuthHeaders:
    """:func:`bearer` auth from the tokens ``fetch`` issues, the first fetched now: a
    refused client fails the run once, up front, instead of every unit with the same
    error."""
    source = CachedToken(fetch)
    source.get()
    return bearer(source)


def sign_jwt_rs256(claims: Mapping[str, Any], private_key_pem: str, kid: str | None = None) -> str:
    """``claims`` signed with RS256 by ``private_key_pem`` (``kid`` in the header if given).

    Raises :class:`InvalidPrivateKeyError` (without the key's text) when the key cannot be
    used. The signed JWT is itself a short-lived credential: it is registered with the
    redactor.
    """
    headers = {"kid": kid} if kid else None
    try:
        token = jwt.encode(dict(claims), private_key_pem, algorithm="RS256", headers=headers)
    except (ValueError, TypeError, jwt.exceptions.PyJWTError) as exc:
        raise InvalidPrivateKeyError(
            f"the private key cannot sign an RS256 JWT ({type(exc).__name__}); "
            "give an RSA private key in PEM format"
        ) from None
    register_secret(token)
    return token


def post_token_form(
    http: HttpClient,
    url: str,
    form: Mapping[str, str],
    *,
    headers: Mapping[str, str] | None = None,
) -> tuple[str, float]:
    """POST ``form`` to a token endpoint; ``(access_token, expires_in)`` of the answer.

    A missing ``expires_in`` is taken as 3600 s (RFC 6749 makes it optional).
    """
    resp = http.request(
        "POST",
        url,
        data=form,
        headers={"Accept": "application/json", **dict(headers or {})},
    )
    body = resp.json()
    token = body.get("access_token") if isinstance(body, Mapping) else None
    if not isinstance(token, str) or not token:
        raise MalformedResponseError(
            "the token endpoint's answer has no access_token",
            url=str(resp.url),
            status=resp.status_code,
        )
    register_secret(token)
    expires_in = body.get("expires_in", 3600)
    try:
        seconds = float(expires_in)
    except (TypeError, ValueError):
        raise MalformedResponseError(
            "the token endpoint's expires_in is not a number",
            url=str(resp.url),
            status=resp.status_code,
        ) from None
    return token, seconds

"""Azure Resource Manager over the shared HTTP layer, authenticated by azure-identity.

Why not the ``azure-mgmt-*`` SDKs: one package per resource provider (and their module
layout moves between majors), whereas every read Annexa needs is a ``GET`` of a
documented ARM path with an ``api-version``. :class:`connectors.http.HttpClient` brings
retries (429/5xx with ``Retry-After``), ``nextLink`` paging with loop guards, size
limits, timeouts and the https/loopback rule; the credential only supplies the bearer
token.

Credentials are built from the options by :func:`build_credential` (azure-identity:
default chain, client secret, certificate, managed identity, workload identity); any
object with ``get_token(*scopes) -> AccessToken`` is accepted, so tests can hand in
their own.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from connectors.http import AuthHeaders, HttpClient, SourceError
from core.records import Evidence, utcnow
from core.redaction import register_secret

from .common import location_of


class AccessTokenLike(Protocol):
    token: str
    expires_on: int


class TokenCredential(Protocol):
    """What azure-identity credentials offer (and all the connector needs)."""

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessTokenLike: ...


class CredentialError(SourceError):
    """The credential could not produce a token (wrong secret, no identity, unreachable
    authority). Raised from inside a request, so the unit (or the discovery) fails."""


#: A token is refreshed this many seconds before it expires.
REFRESH_MARGIN = 300


def bearer_auth(credential: TokenCredential, scope: str) -> AuthHeaders:
    """Auth callable for :class:`HttpClient`: ``Authorization: Bearer <token>``.

    The token is cached until shortly before it expires (azure-identity caches too, but
    asking it on every request costs a lock and a cache search per call) and registered
    with the log redactor. Failures become :class:`CredentialError` with a short reason.
    """
    lock = threading.Lock()
    state: dict[str, Any] = {"token": None, "expires_on": 0.0}

    def headers() -> Mapping[str, str]:
        with lock:
            if state["token"] is None or state["expires_on"] - time.time() < REFRESH_MARGIN:
                try:
                    access = credential.get_token(scope)
                except Exception as exc:  # noqa: BLE001 - azure-identity raises many types
                    raise CredentialError(f"no token for {scope}: {_describe(exc)}") from None
                register_secret(access.token)
                state["token"] = access.token
                state["expires_on"] = float(access.expires_on)
            return {"Authorization": f"Bearer {state['token']}"}

    return headers


def _describe(exc: BaseException) -> str:
    """First line of the credential's message: azure-identity's are long and chained."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text[:300]}" if text else type(exc).__name__


@dataclass(frozen=True)
class Arm:
    """ARM reads for one connector run (thread-safe: shares one :class:`HttpClient`)."""

    http: HttpClient

    def list(
        self, path: str, api_version: str, params: Mapping[str, str] | None = None
    ) -> Iterator[dict[str, Any]]:
        """Every item of an ARM list (``value`` + ``nextLink``)."""
        query = {"api-version": api_version, **dict(params or {})}
        yield from self.http.paginate_next_url(
            path, params=query, items_key="value", next_key="nextLink"
        )

    def get(self, path: str, api_version: str, *, missing_ok: bool = False) -> Any:
        """One ARM document; with ``missing_ok`` a 404 gives None ("not configured")."""
        allow = (404,) if missing_ok else ()
        resp = self.http.get(path, params={"api-version": api_version}, allow_status=allow)
        if resp.status_code == 404:
            return None
        return resp.json()


def evidence(
    subscription: str, resource_type: str, resource: Mapping[str, Any], payload: dict[str, Any]
) -> Evidence:
    """Evidence of one ARM resource: id = its ARM id (lower-cased: ARM ids are
    case-insensitive and the same resource comes back in several casings), region =
    its location."""
    rid = str(resource.get("id") or resource.get("name"))
    return Evidence(
        scope=subscription,
        region=location_of(resource),
        resource_type=resource_type,
        resource_id=rid.lower(),
        payload=payload,
        collected_at=utcnow(),
    )


def arm_resource(resource: Mapping[str, Any], *, drop: tuple[str, ...] = ()) -> dict[str, Any]:
    """The ARM resource as returned, without ``properties`` keys listed in ``drop``."""
    out = dict(resource)
    if drop and isinstance(out.get("properties"), Mapping):
        out["properties"] = {k: v for k, v in out["properties"].items() if k not in drop}
    return out

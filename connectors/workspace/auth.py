"""Service-account credentials with domain-wide delegation for the Admin SDK.

Google's Directory API only answers an administrator: the service account signs a JWT
assertion that names the admin (``sub``) and the read-only scope, the OAuth token
endpoint exchanges it for an access token, and the Directory API sees the admin's
(read-only, delegated) rights. This is google-auth's
``service_account.Credentials.from_service_account_info(...).with_subject(admin)``.

The key JSON comes from a ``SecretRef`` and is never stored; its ``token_uri`` can be
overridden (a private Google endpoint, a test fake). Refreshes are serialised by a lock
and bounded by a timeout; a refresh failure (unauthorised client, bad key, unreachable
endpoint) is a :class:`~connectors.http.SourceError` like any other source failure.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from typing import Any

from connectors.http import AuthHeaders, SourceError
from core.redaction import register_secret, scrub_text

#: The one scope the connector needs (users, including admin flags and 2SV state).
DIRECTORY_USER_READONLY = "https://www.googleapis.com/auth/admin.directory.user.readonly"


class GoogleCredentialError(SourceError):
    """No access token could be obtained for the delegated admin."""


def load_key(text: str, origin: str) -> dict[str, Any]:
    """The service-account key JSON, checked enough to name what is wrong."""
    try:
        info = json.loads(text)
    except ValueError:
        raise GoogleCredentialError(
            f"{origin} is not JSON (expected a service account key)"
        ) from None
    if not isinstance(info, dict):
        raise GoogleCredentialError(f"{origin} is not a JSON object")
    if info.get("type") not in (None, "service_account"):
        raise GoogleCredentialError(
            f"{origin} is a {info.get('type')!r} credential, not a service account key"
        )
    missing = [k for k in ("client_email", "private_key", "token_uri") if not info.get(k)]
    if missing:
        raise GoogleCredentialError(f"{origin} has no {', '.join(missing)}")
    register_secret(str(info["private_key"]))
    return info


def _reason(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return scrub_text(f"{type(exc).__name__}: {text}"[:300])


class DelegatedCredentials:
    """Access tokens for ``subject`` from a service-account key (thread-safe)."""

    def __init__(
        self,
        info: Mapping[str, Any],
        subject: str,
        *,
        scopes: tuple[str, ...] = (DIRECTORY_USER_READONLY,),
        token_uri: str | None = None,
        timeout: float = 30.0,
        ca_bundle: str | None = None,
    ) -> None:
        import google.auth.transport.requests
        import requests
        from google.oauth2 import service_account

        try:
            creds = service_account.Credentials.from_service_account_info(
                dict(info), scopes=list(scopes)
            )
        except (ValueError, KeyError) as exc:
            raise GoogleCredentialError(f"service account key rejected: {_reason(exc)}") from None
        creds = creds.with_subject(subject)
        if token_uri:
            creds = creds.with_token_uri(token_uri)
        self._creds = creds
        self._lock = threading.Lock()
        self.refreshes = 0
        session = requests.Session()
        if ca_bundle:
            session.verify = ca_bundle
        base = google.auth.transport.requests.Request(session=session)

        def request(*args: Any, **kwargs: Any) -> Any:
            kwargs["timeout"] = timeout
            return base(*args, **kwargs)

        self._request = request
        self._session = session

    def token(self) -> str:
        with self._lock:
            if not self._creds.valid:
                try:
                    self._creds.refresh(self._request)
                except Exception as exc:  # noqa: BLE001 - any refresh failure is a source failure
                    raise GoogleCredentialError(
                        f"token request for the delegated admin failed: {_reason(exc)}"
                    ) from None
                self.refreshes += 1
            value = self._creds.token
        if not value:
            raise GoogleCredentialError("the token endpoint returned no access token")
        register_secret(value)
        return value

    def auth(self) -> AuthHeaders:
        def headers() -> Mapping[str, str]:
            return {"Authorization": f"Bearer {self.token()}"}

        return headers

    def close(self) -> None:
        self._session.close()

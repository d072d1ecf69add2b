"""google-auth credentials from the connector options, and bearer headers for httpx.

Two sources: a service-account key given by :class:`SecretRef` (the JSON document; never
a path in the config, so it can come from a secret store), or Application Default
Credentials (``GOOGLE_APPLICATION_CREDENTIALS``, workload identity federation, the
metadata server of GCE/GKE/Cloud Run). ``oauth_url`` overrides the OAuth token
endpoint (``token_uri``) of a key (private service connect, sovereign clouds, tests).

Google's own client libraries (Resource Manager) refresh these credentials themselves;
for the APIs called over :class:`connectors.http.HttpClient`, :func:`bearer_auth`
refreshes them when they are about to expire and sends ``Authorization: Bearer``.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from typing import Any, Literal, Protocol

from connectors.http import AuthHeaders, SourceError
from core.connector import SecretRef
from core.redaction import register_secret

CredentialKind = Literal["adc", "service_account_key"]


class CredentialOptions(Protocol):
    """The fields of ``GcpOptions`` this module reads, declared here so that the
    connector imports its auth and not the other way round (no import cycle; see
    tests/test_architecture.py)."""

    @property
    def auth(self) -> CredentialKind: ...
    @property
    def service_account_key(self) -> SecretRef | None: ...
    @property
    def oauth_url(self) -> str | None: ...

#: Read-only access to every API used is granted by IAM roles; the OAuth scope must be
#: the broad one because Security Command Center management accepts no narrower scope.
SCOPES = ("https://www.googleapis.com/auth/cloud-platform",)


class CredentialError(SourceError):
    """The credentials could not produce an access token."""


def build_credentials(o: CredentialOptions) -> Any:
    """google-auth credentials as the options describe.

    Raises :class:`~core.connector.SecretUnavailableError` when the key cannot be read,
    ``ValueError`` when it is not a service-account key, and
    ``google.auth.exceptions.DefaultCredentialsError`` when ADC finds nothing.
    """
    if o.auth == "service_account_key":
        from google.oauth2 import service_account

        assert o.service_account_key is not None
        raw = o.service_account_key.get()
        try:
            info = json.loads(raw)
        except ValueError:
            raise ValueError("service_account_key is not a JSON key document") from None
        if not isinstance(info, dict) or info.get("type") != "service_account":
            raise ValueError('service_account_key is not a key of "type": "service_account"')
        if o.oauth_url:
            info["token_uri"] = o.oauth_url
        if info.get("private_key"):
            register_secret(str(info["private_key"]))
        return service_account.Credentials.from_service_account_info(info, scopes=SCOPES)
    import google.auth
    from google.auth.credentials import CredentialsWithTokenUri

    creds, _ = google.auth.default(scopes=list(SCOPES))
    if o.oauth_url and isinstance(creds, CredentialsWithTokenUri):
        creds = creds.with_token_uri(o.oauth_url)
    return creds


def bearer_auth(credentials: Any) -> AuthHeaders:
    """Auth callable for :class:`HttpClient` using google-auth ``credentials``.

    Refreshes (under a lock: the pool shares one credential) when the token is missing
    or about to expire; credentials without a token (anonymous) send no header.
    """
    import google.auth.exceptions
    import google.auth.transport.requests

    lock = threading.Lock()
    request = google.auth.transport.requests.Request()

    def headers() -> Mapping[str, str]:
        with lock:
            if not credentials.valid:
                try:
                    credentials.refresh(request)
                except google.auth.exceptions.GoogleAuthError as exc:
                    first = exc.args[0] if exc.args and isinstance(exc.args[0], str) else exc
                    text = str(first).splitlines()[0][:300] if str(first) else ""
                    raise CredentialError(
                        f"no access token: {type(exc).__name__}: {text}"
                    ) from None
            token = credentials.token
        if not token:
            return {}
        register_secret(str(token))
        return {"Authorization": f"Bearer {token}"}

    return headers

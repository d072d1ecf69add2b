"""Credentials for Microsoft Graph: an azure-identity credential chosen by the options.

The connector only needs *something with* ``get_token(*scopes) -> AccessToken``: every
azure-identity credential qualifies, and tests may pass any such object. Which
credential is built is an explicit choice (``auth``), never a guess:

=====================  ==================================================================
``client_secret``      app registration + client secret (``client_secret`` SecretRef)
``certificate``        app registration + certificate (``certificate_path``, PEM or PFX;
                       optional ``certificate_password`` SecretRef)
``managed_identity``   the VM / App Service / container's managed identity (system- or
                       user-assigned with ``managed_identity_client_id``)
``workload_identity``  Kubernetes workload identity federation (AZURE_FEDERATED_TOKEN_FILE
                       set by the AKS webhook)
``default``            azure-identity's ``DefaultAzureCredential`` chain (environment,
                       workload identity, managed identity, Azure CLI…)
=====================  ==================================================================

The authority (``login.microsoftonline.us``, ``login.chinacloudapi.cn``, a test fake) is
configurable for sovereign clouds. Tokens are cached by the credential, so a run asks
the token endpoint once per scope; the token value is registered with the log redactor
and never stored.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any, Protocol

from connectors.http import AuthHeaders, SourceError
from core.redaction import register_secret, scrub_text


class TokenCredential(Protocol):
    """What the connector needs of a credential (azure-core's ``TokenCredential``)."""

    def get_token(self, *scopes: str, **kwargs: Any) -> Any: ...


class CredentialError(SourceError):
    """No token could be obtained (bad secret, unknown app, unreachable authority…)."""


def _reason(exc: BaseException) -> str:
    """The first meaningful line of an azure-identity error, scrubbed.

    MSAL errors carry trace and correlation ids over many lines; the first line
    (``AADSTS7000215: Invalid client secret provided…``) is what an operator needs.
    """
    text = str(exc).strip()
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    first = lines[0] if lines else ""
    for ln in lines:
        if "AADSTS" in ln:
            first = ln
            break
    return scrub_text(f"{type(exc).__name__}: {first}"[:300])


def token_value(credential: TokenCredential, scope: str) -> str:
    """A bearer token for ``scope``; :class:`CredentialError` if none can be had."""
    try:
        token = credential.get_token(scope)
    except Exception as exc:  # noqa: BLE001 - any credential failure is a source failure
        raise CredentialError(f"token request for {scope} failed: {_reason(exc)}") from None
    value = getattr(token, "token", None)
    if not isinstance(value, str) or not value:
        raise CredentialError(f"the credential returned no access token for {scope}")
    register_secret(value)
    return value


def bearer_auth(credential: TokenCredential, scope: str) -> AuthHeaders:
    """Auth callable for :class:`~connectors.http.HttpClient`: a fresh (cached) token per
    attempt, so a token that expires during a long run is renewed transparently."""
    lock = threading.Lock()

    def headers() -> Mapping[str, str]:
        with lock:
            value = token_value(credential, scope)
        return {"Authorization": f"Bearer {value}"}

    return headers


def build_credential(options: Any) -> TokenCredential:
    """The azure-identity credential the options select (see the module docstring).

    Secrets are resolved here, at run time; ``SecretUnavailableError`` propagates so the
    connector can report the missing secret by name.
    """
    from azure.identity import (
        CertificateCredential,
        ClientSecretCredential,
        DefaultAzureCredential,
        ManagedIdentityCredential,
        WorkloadIdentityCredential,
    )

    common: dict[str, Any] = {
        "authority": options.authority,
        "disable_instance_discovery": options.disable_instance_discovery,
    }
    if options.authority_ca_bundle:
        common["connection_verify"] = options.authority_ca_bundle
    kind = options.auth
    if kind == "client_secret":
        return ClientSecretCredential(
            options.tenant_id, options.client_id, options.client_secret.get(), **common
        )
    if kind == "certificate":
        password = options.certificate_password.get() if options.certificate_password else None
        return CertificateCredential(
            options.tenant_id,
            options.client_id,
            certificate_path=options.certificate_path,
            password=password,
            **common,
        )
    if kind == "managed_identity":
        extra: dict[str, Any] = {}
        if options.authority_ca_bundle:
            extra["connection_verify"] = options.authority_ca_bundle
        return ManagedIdentityCredential(client_id=options.managed_identity_client_id, **extra)
    if kind == "workload_identity":
        return WorkloadIdentityCredential(
            tenant_id=options.tenant_id, client_id=options.client_id, **common
        )
    return DefaultAzureCredential(
        managed_identity_client_id=options.managed_identity_client_id,
        workload_identity_client_id=options.client_id,
        workload_identity_tenant_id=options.tenant_id,
        **common,
    )

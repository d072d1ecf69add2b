"""azure-identity credentials from the connector options.

``auth`` selects the kind (the same option names as the Entra ID connector's); secrets
come only from :class:`SecretRef`, read when the run starts. The login (authority) host
is configurable for sovereign clouds (``login.microsoftonline.us``,
``login.chinacloudapi.cn``) and private authorities.
``authority_ca_bundle`` (default: ``http.ca_bundle``, which ARM calls use) verifies the
login host, so a TLS-inspecting proxy or a private authority with its own CA works.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Literal, Protocol

from connectors.http import HttpOptions
from core.connector import SecretRef

if TYPE_CHECKING:
    from .arm import TokenCredential

CredentialKind = Literal[
    "default", "client_secret", "certificate", "managed_identity", "workload_identity"
]


class CredentialOptions(Protocol):
    """What a credential is built from: the fields of ``AzureOptions`` (and any options
    model with the same names) that this module reads.

    Declared here rather than importing ``AzureOptions`` so that the connector imports
    its credentials and not the other way round (no import cycle; see
    tests/test_architecture.py).
    """

    @property
    def auth(self) -> CredentialKind: ...
    @property
    def tenant_id(self) -> str | None: ...
    @property
    def client_id(self) -> str | None: ...
    @property
    def client_secret(self) -> SecretRef | None: ...
    @property
    def certificate_path(self) -> str | None: ...
    @property
    def certificate_password(self) -> SecretRef | None: ...
    @property
    def managed_identity_client_id(self) -> str | None: ...
    @property
    def workload_identity_file(self) -> str | None: ...
    @property
    def authority(self) -> str: ...
    @property
    def disable_instance_discovery(self) -> bool: ...
    @property
    def authority_ca_bundle(self) -> str | None: ...
    @property
    def http(self) -> HttpOptions: ...

#: What each kind needs from the options (checked when the config is validated).
REQUIRED: dict[str, tuple[str, ...]] = {
    "default": (),
    "client_secret": ("tenant_id", "client_id", "client_secret"),
    "certificate": ("tenant_id", "client_id", "certificate_path"),
    "managed_identity": (),
    "workload_identity": (),
}


def _secret(ref: SecretRef | None) -> str | None:
    return ref.get() if ref is not None else None


def build_credential(o: CredentialOptions) -> TokenCredential:
    """The azure-identity credential the options describe.

    Raises :class:`~core.connector.SecretUnavailableError` when a secret reference
    cannot be read, ``ValueError``/``OSError`` when a certificate cannot be loaded.
    """
    from azure import identity

    ca_bundle = o.authority_ca_bundle or o.http.ca_bundle
    common: dict[str, Any] = {"authority": o.authority}
    if o.disable_instance_discovery:
        common["disable_instance_discovery"] = True
    if ca_bundle:
        common["connection_verify"] = ca_bundle
    if o.auth == "client_secret":
        assert o.tenant_id and o.client_id
        return identity.ClientSecretCredential(
            o.tenant_id, o.client_id, _secret(o.client_secret) or "", **common
        )
    if o.auth == "certificate":
        assert o.tenant_id and o.client_id and o.certificate_path
        return identity.CertificateCredential(
            o.tenant_id,
            o.client_id,
            certificate_path=o.certificate_path,
            password=_secret(o.certificate_password),
            **common,
        )
    if o.auth == "managed_identity":
        kwargs: dict[str, Any] = {}
        if o.managed_identity_client_id:
            kwargs["client_id"] = o.managed_identity_client_id
        if ca_bundle:
            kwargs["connection_verify"] = ca_bundle
        return identity.ManagedIdentityCredential(**kwargs)
    if o.auth == "workload_identity":
        token_file = o.workload_identity_file or os.environ.get("AZURE_FEDERATED_TOKEN_FILE")
        return identity.WorkloadIdentityCredential(
            tenant_id=o.tenant_id or os.environ.get("AZURE_TENANT_ID"),
            client_id=o.client_id or os.environ.get("AZURE_CLIENT_ID"),
            token_file_path=token_file,
            **common,
        )
    # The default chain: environment, workload identity, managed identity, Azure CLI…
    # Interactive browser sign-in stays excluded (the agent is unattended).
    default: dict[str, Any] = {"authority": o.authority}
    if o.tenant_id:
        default["tenant_id"] = o.tenant_id
    if o.managed_identity_client_id:
        default["managed_identity_client_id"] = o.managed_identity_client_id
    if o.client_id:
        default["workload_identity_client_id"] = o.client_id
    if ca_bundle:
        default["connection_verify"] = ca_bundle
    return identity.DefaultAzureCredential(**default)

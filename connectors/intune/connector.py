"""The Microsoft Intune connector: the managed devices of one tenant, read from Microsoft
Graph with the Entra connector's credentials.

Intune is part of the same tenant and the same Graph as Entra ID, so this connector *is*
an Entra connector with other units: the same options (tenant, ``auth``, secrets by
reference, sovereign-cloud authority and Graph URL — see
:mod:`connectors.entra.connector`), the same azure-identity credential
(:mod:`connectors.entra.auth`) and HTTP client; one app registration can serve both
when it is granted both sets of read permissions.

Configuration (``[[connectors]] type = "intune"``)::

    [connectors.options]
    tenant_id = "00000000-0000-0000-0000-000000000000"
    client_id = "11111111-1111-1111-1111-111111111111"
    client_secret = { env = "ANNEXA_ENTRA_CLIENT_SECRET" }
    read_protection_state = true     # Defender state of Windows devices
    max_workers = 8                  # parallel windowsProtectionState reads

Units, scope = the tenant id: ``device`` (``intune.device.managed``) and ``tenant``
(``intune.tenant.compliance_policies``: the passcode settings of the compliance
policies, judged for the platforms the device unit found).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar

from pydantic import Field

from connectors.entra.auth import build_credential, token_value
from connectors.entra.connector import EntraConnector, EntraOptions, _close
from connectors.http import SourceError
from connectors.intune import devices, policies
from connectors.kit import GLOBAL, Pseudonymiser, run_unit
from core.connector import CollectContext, ConnectorOptions, SecretUnavailableError
from core.records import Coverage, Record


class IntuneOptions(EntraOptions):
    page_size: int = Field(999, ge=1, le=999, description="devices per page ($top)")
    read_protection_state: bool = Field(
        True, description="read Defender state (windowsProtectionState) of Windows devices"
    )
    max_workers: int = Field(8, ge=1, le=16, description="parallel Defender state reads")


class IntuneConnector(EntraConnector):
    type = "intune"
    prefix = "intune"
    Options: ClassVar[type[ConnectorOptions]] = IntuneOptions

    options: IntuneOptions

    def collect(self, ctx: CollectContext) -> Iterator[Record]:
        opts = self.options
        scope = opts.tenant_id
        owned: Any = None
        try:
            pseudo = Pseudonymiser(opts.pseudonymise_key.get() if opts.pseudonymise_key else None)
            credential = self._credential
            if credential is None:
                credential = owned = build_credential(opts)
            token_value(credential, opts.scope)
            http = self._client(ctx, credential)
        except (SecretUnavailableError, SourceError, ValueError, OSError) as exc:
            yield Coverage(scope, GLOBAL, "*", ok=False, error=str(exc))
            _close(owned)
            return
        opened = False
        try:
            with http:
                counted: dict[str, int] = {}
                devices_ok: list[bool] = []
                units = (
                    (
                        "device",
                        lambda: devices.read_devices(
                            http,
                            scope,
                            pseudo,
                            page_size=opts.page_size,
                            max_workers=opts.max_workers,
                            read_protection=opts.read_protection_state,
                            cancelled=ctx.cancelled,
                            platforms=counted,
                        ),
                    ),
                    (
                        "tenant",
                        lambda: policies.read_policies(
                            http,
                            scope,
                            counted if devices_ok == [True] else None,
                            "the device unit was not read cleanly",
                        ),
                    ),
                )
                for service, read in units:
                    if ctx.cancelled():
                        return
                    for rec in run_unit(scope, service, read, ctx.cancelled, source="intune"):
                        if isinstance(rec, Coverage):
                            opened = opened or rec.ok
                            if service == "device":
                                devices_ok.append(rec.ok)
                        yield rec
            if opened and not ctx.cancelled():
                yield Coverage(scope, GLOBAL, "*", ok=True)
        finally:
            _close(owned)

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
from typing import ClassVar

from pydantic import Field

from connectors.entra.connector import EntraConnector, EntraOptions
from connectors.http import HttpClient
from connectors.intune import devices, policies
from connectors.kit import Pseudonymiser, run_unit
from core.connector import CollectContext, ConnectorOptions
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

    def _read(
        self, ctx: CollectContext, http: HttpClient, scope: str, pseudo: Pseudonymiser
    ) -> Iterator[Record]:
        """Devices, then the tenant's policies (judged against the device platforms seen
        only when the device unit was read cleanly)."""
        opts = self.options
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
            for rec in run_unit(scope, service, read, ctx.cancelled, source=self.type):
                if isinstance(rec, Coverage) and service == "device":
                    devices_ok.append(rec.ok)
                yield rec

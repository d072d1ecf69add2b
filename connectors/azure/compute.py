"""Virtual machines and managed disks: encryption of the disks at rest.

One unit per subscription (service ``compute``): ``GET .../Microsoft.Compute/
virtualMachines`` and ``GET .../Microsoft.Compute/disks``; both are listings (a
failure fails the unit).

Resource types (id = ARM id):

* ``azure.compute.virtual_machine``: the ARM resource without ``osProfile`` (admin user
  name, provisioning settings: not needed to judge encryption) — ``storageProfile``
  (OS and data disks: managed or unmanaged VHD, Azure Disk Encryption settings) and
  ``securityProfile`` (encryption at host) are kept;
* ``azure.compute.disk``: the managed disk resource (``encryption.type``,
  ``encryptionSettingsCollection`` for Azure Disk Encryption, ``diskState``).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from core.checks import Verdict, check, failed, passed
from core.records import Evidence

from .arm import Arm, arm_resource, evidence
from .common import props

SERVICE = "compute"
VM = "azure.compute.virtual_machine"
DISK = "azure.compute.disk"
VM_API = "2024-03-01"
DISK_API = "2023-04-02"

ACTIONS = (
    "Microsoft.Compute/virtualMachines/read",
    "Microsoft.Compute/disks/read",
)

CUSTOMER_KEY_TYPES = frozenset(
    {"encryptionatrestwithcustomerkey", "encryptionatrestwithplatformandcustomerkeys"}
)
KNOWN_TYPES = CUSTOMER_KEY_TYPES | {"encryptionatrestwithplatformkey"}


def read(arm: Arm, subscription: str, **_: Any) -> Iterator[Evidence]:
    base = f"/subscriptions/{subscription}/providers/Microsoft.Compute"
    for vm in arm.list(f"{base}/virtualMachines", VM_API):
        yield evidence(subscription, VM, vm, arm_resource(vm, drop=("osProfile",)))
    for disk in arm.list(f"{base}/disks", DISK_API):
        yield evidence(subscription, DISK, disk, arm_resource(disk))


def vm_disks(payload: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    storage = props(payload).get("storageProfile") or {}
    disks: list[tuple[str, Mapping[str, Any]]] = []
    if storage.get("osDisk"):
        disks.append(("OS disk", storage["osDisk"]))
    for d in storage.get("dataDisks") or []:
        disks.append((f"data disk {d.get('name') or d.get('lun')}", d))
    return disks


@check("azure.compute.vm_disk_encryption")
def vm_disk_encryption(payload: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    disks = vm_disks(payload)
    if not disks:
        return failed("The VM's storage profile lists no disks")
    plain = [
        label for label, d in disks
        if not d.get("managedDisk") and not (d.get("encryptionSettings") or {}).get("enabled")
    ]
    if plain:
        return failed("Unmanaged disks without disk encryption: " + ", ".join(plain))
    at_host = (props(payload).get("securityProfile") or {}).get("encryptionAtHost") is True
    if params["require_encryption_at_host"] and not at_host:
        return failed("Encryption at host is not enabled")
    extra = " and encryption at host" if at_host else ""
    return passed(f"All {len(disks)} disks are managed (encrypted at rest){extra}")


@check("azure.compute.volume_encrypted")
def volume_encrypted(payload: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    p = props(payload)
    kind = str((p.get("encryption") or {}).get("type") or "")
    ade = (p.get("encryptionSettingsCollection") or {}).get("enabled") is True
    if kind.lower() not in KNOWN_TYPES and not ade:
        return failed(f"Unknown or missing disk encryption type {kind or '(none)'}")
    if params["require_customer_managed_key"] and kind.lower() not in CUSTOMER_KEY_TYPES:
        return failed(f"Disk is encrypted with {kind or 'Azure Disk Encryption'}, but a "
                      "customer-managed key is required")
    return passed(f"Disk is encrypted at rest ({kind or 'Azure Disk Encryption'})")

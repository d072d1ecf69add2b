"""Intune managed devices: compliance, encryption, OS version, jailbreak, last sync,
Defender state.

API calls (Microsoft Graph v1.0, ``DeviceManagementManagedDevices.Read.All``):

* ``GET /deviceManagement/managedDevices?$select=…&$top=…`` — every enrolled device,
  ``@odata.nextLink`` paging;
* ``GET /deviceManagement/managedDevices/{id}/windowsProtectionState`` — Microsoft
  Defender state of a **Windows** device (the ``windowsProtectionState`` navigation
  property of ``managedDevice``; Graph reports it for no other platform). Read for the
  Windows devices of each page on a small bounded pool, so the request count is the
  minimum: one per page plus one per Windows device.

A device whose Defender state cannot be read keeps its other facts; only its
anti-malware finding becomes ``error``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from connectors.devices import (
    SeenIds,
    device_payload,
    email_of,
    platform_of,
    register_device_checks,
)
from connectors.http import HttpClient, MalformedResponseError, SourceError
from connectors.kit import ERRORS_KEY, GLOBAL, Pseudonymiser, batches
from core.records import Evidence
from core.times import activity_time, full_time

DEVICE_TYPE = "intune.device.managed"
DEVICES_PATH = "/deviceManagement/managedDevices"
SELECT = (
    "id,deviceName,operatingSystem,osVersion,complianceState,isEncrypted,jailBroken,"
    "lastSyncDateTime,enrolledDateTime,userPrincipalName,emailAddress,"
    "managedDeviceOwnerType,managementState"
)

_COMPLIANT = {"compliant": True, "noncompliant": False, "conflict": False, "error": False}
_COMPLIANT["inGracePeriod"] = False  # non-compliant, within the policy's grace period
_JAILBROKEN = {"true": True, "false": False}
#: managementState values of a device that is leaving management (wipe / retire).
_LEAVING = frozenset({"retirePending", "retireFailed", "wipePending", "wipeFailed", "wipeIssued"})

CHECK_IDS = register_device_checks(
    DEVICE_TYPE,
    (
        "disk_encrypted",
        "screen_lock",
        "os_supported",
        "os_patched",
        "anti_malware",
        "checked_in",
        "not_jailbroken",
    ),
    overrides={
        "screen_lock": {
            "title": "Device meets its Intune compliance policy (passcode, screen lock)",
            "rationale": (
                "Intune compliance policies carry the passcode, inactivity-lock and "
                "encryption rules of each platform; a non-compliant device breaks at "
                "least one of them, and an unattended device without a passcode and "
                "screen lock is open to whoever picks it up."
            ),
            "remediation": (
                "Open the device's compliance details in Intune, fix the failing settings "
                "(passcode, lock after ≤ 15 minutes of inactivity), and block "
                "non-compliant devices with Conditional Access."
            ),
        },
        "anti_malware": {
            "title": "Windows device has Microsoft Defender on with current signatures",
        },
    },
)


def _protection(state: Mapping[str, Any]) -> dict[str, Any]:
    problems = []
    if state.get("malwareProtectionEnabled") is not True:
        problems.append("anti-malware disabled")
    if state.get("realTimeProtectionEnabled") is not True:
        problems.append("real-time protection off")
    if state.get("signatureUpdateOverdue") is True:
        problems.append("signatures overdue")
    health = state.get("deviceState")
    if isinstance(health, str) and "critical" in health:
        problems.append("device health critical")
    return {
        "enabled": state.get("malwareProtectionEnabled") is True,
        "problems": problems,
        "summary": (
            f"Defender {state.get('antiMalwareVersion') or '?'}, signatures "
            f"{state.get('signatureVersion') or '?'}, real-time "
            f"{'on' if state.get('realTimeProtectionEnabled') else 'off'}"
        ),
        "tamper_protection": state.get("tamperProtectionEnabled"),
    }


def device_payload_of(
    d: Mapping[str, Any],
    protection: Mapping[str, Any] | None,
    protection_error: str | None,
    pseudo: Pseudonymiser,
) -> dict[str, Any]:
    """One Intune managed device in the shared device model."""
    platform = platform_of(d.get("operatingSystem"))
    errors: dict[str, str] = {}
    compliance = d.get("complianceState")
    enforced = _COMPLIANT.get(str(compliance))
    if enforced is None:
        errors["screen_lock"] = f"Intune has not evaluated compliance (state {compliance})"
    anti: dict[str, Any] | None
    if platform != "windows":
        anti = {
            "applicable": False,
            "summary": "Intune reports Defender state for Windows devices only",
        }
    elif protection is not None:
        anti = _protection(protection)
    else:
        anti = None
        errors["anti_malware"] = protection_error or "Defender state was not read"
    state = d.get("managementState")
    upn = d.get("userPrincipalName")
    return device_payload(
        id=str(d["id"]),
        name=d.get("deviceName"),
        platform=platform,
        os_version=d.get("osVersion"),
        ownership=d.get("managedDeviceOwnerType"),
        user_email=pseudo(email_of(d.get("emailAddress")) or email_of(upn)),
        user_name=pseudo(upn or None),
        managed=None if state is None else state not in _LEAVING,
        encrypted=d.get("isEncrypted") if isinstance(d.get("isEncrypted"), bool) else None,
        encryption_detail=None,
        compliance_state=compliance,
        screen_lock=(
            None
            if enforced is None
            else {"enforced": enforced, "detail": f"complianceState {compliance}"}
        ),
        jailbroken=_JAILBROKEN.get(str(d.get("jailBroken")).lower()),
        anti_malware=anti,
        firewall_enabled=None,
        last_check_in=activity_time(d.get("lastSyncDateTime")),
        enrolled=full_time(d.get("enrolledDateTime")),
        **({ERRORS_KEY: errors} if errors else {}),
    )


def _read_protection(http: HttpClient, device_id: str) -> tuple[Any, str | None]:
    try:
        resp = http.get(f"{DEVICES_PATH}/{device_id}/windowsProtectionState", allow_status={404})
    except SourceError as exc:
        return None, str(exc)
    if resp.status_code == 404:
        return None, "Intune has no Defender state for this device"
    body = resp.json()
    if not isinstance(body, Mapping):
        return None, "windowsProtectionState is not a JSON object"
    return body, None


def read_devices(
    http: HttpClient,
    scope: str,
    pseudo: Pseudonymiser,
    *,
    page_size: int,
    max_workers: int,
    read_protection: bool,
    cancelled: Callable[[], bool],
    platforms: dict[str, int] | None = None,
) -> Iterator[Evidence]:
    """Every managed device, streamed in batches of one page (memory stays flat).

    ``platforms`` (if given) counts the devices per platform, for the policy check."""
    listing = http.paginate_next_url(
        DEVICES_PATH, params={"$select": SELECT, "$top": min(page_size, 999)}
    )
    seen = SeenIds()
    with ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="annexa-intune") as pool:
        for batch in batches(listing, page_size):
            if cancelled():
                return
            rows = []
            for d in batch:
                if not isinstance(d, Mapping) or not d.get("id"):
                    raise MalformedResponseError("a managed device without an id")
                if not seen.add(str(d["id"])):
                    continue
                if platforms is not None:
                    key = platform_of(d.get("operatingSystem")) or "unknown"
                    platforms[key] = platforms.get(key, 0) + 1
                rows.append(d)
            windows = [
                str(d["id"])
                for d in rows
                if read_protection and platform_of(d.get("operatingSystem")) == "windows"
            ]
            states = dict(
                zip(windows, pool.map(lambda i: _read_protection(http, i), windows), strict=True)
            )
            for d in rows:
                prot, err = states.get(str(d["id"]), (None, None))
                if not read_protection:
                    err = "reading Defender state is switched off (read_protection_state)"
                yield Evidence(
                    scope,
                    GLOBAL,
                    DEVICE_TYPE,
                    str(d["id"]),
                    device_payload_of(d, prot, err, pseudo),
                )

"""Jamf Pro computers: FileVault, firewall, Gatekeeper, SIP, OS version, last contact.

API (Jamf Pro API, ``GET /api/v1/computers-inventory``): one call per page with the
sections the checks need — ``GENERAL`` (name, managed, last contact, enrolment),
``DISK_ENCRYPTION`` (FileVault 2 state of the boot partition), ``SECURITY`` (firewall,
Gatekeeper, SIP, XProtect, automatic login), ``OPERATING_SYSTEM`` (version) and
``USER_AND_LOCATION`` (the user's e-mail, the join key to people). Pages are numbered
from 0 (``page``/``page-size``), sorted by id so that pages are stable; the body is
``{"totalCount": n, "results": [...]}``.

Each computer becomes one ``jamf.computer.inventory`` evidence in the shared device
model (:func:`connectors.devices.device_payload`), judged by the shared device checks.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

from connectors.devices import (
    SeenIds,
    device_payload,
    email_of,
    platform_of,
    register_device_checks,
)
from connectors.http import HttpClient, MalformedResponseError
from connectors.kit import ERRORS_KEY, GLOBAL, Pseudonymiser
from core.records import Evidence
from core.times import activity_time, full_time

COMPUTER_TYPE = "jamf.computer.inventory"
SECTIONS = ("GENERAL", "DISK_ENCRYPTION", "SECURITY", "OPERATING_SYSTEM", "USER_AND_LOCATION")
INVENTORY_PATH = "/api/v1/computers-inventory"

#: FileVault 2 states of ``diskEncryption.bootPartitionEncryptionDetails``: only a
#: finished encryption protects the disk (``ENCRYPTING`` is not yet protected).
_FV_ENCRYPTED = frozenset({"ENCRYPTED"})
_FV_UNKNOWN = frozenset({"UNKNOWN", "", None})

CHECK_IDS = register_device_checks(
    COMPUTER_TYPE,
    (
        "disk_encrypted",
        "screen_lock",
        "os_supported",
        "os_patched",
        "anti_malware",
        "firewall_enabled",
        "checked_in",
    ),
    overrides={
        "screen_lock": {
            "title": "Mac asks for its user's password at start-up (automatic login off)",
            "rationale": (
                "With automatic login on, whoever switches the Mac on is logged in as its "
                "user: no screen lock or passcode protects it. Jamf's inventory reports "
                "this setting; the screensaver lock itself is enforced by a "
                "configuration profile whose deployment Jamf reports separately."
            ),
            "remediation": (
                "Deploy a Login Window profile that disables automatic login, and a "
                "screensaver profile requiring the password after at most 15 minutes."
            ),
        },
        "anti_malware": {
            "title": "Mac has its built-in malware protection on (Gatekeeper, SIP, XProtect)",
        },
    },
)


def _section(c: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = c.get(key)
    return value if isinstance(value, Mapping) else {}


def _encryption(c: Mapping[str, Any]) -> tuple[bool | None, str | None]:
    boot = _section(_section(c, "diskEncryption"), "bootPartitionEncryptionDetails")
    state = boot.get("partitionFileVault2State")
    if state in _FV_UNKNOWN:
        return None, None
    return state in _FV_ENCRYPTED, f"FileVault {state}"


def _anti_malware(sec: Mapping[str, Any]) -> dict[str, Any] | None:
    gatekeeper, sip, xprotect = (
        sec.get("gatekeeperStatus"),
        sec.get("sipStatus"),
        sec.get("xprotectVersion"),
    )
    if gatekeeper in (None, "NOT_COLLECTED") or sip in (None, "NOT_COLLECTED"):
        return None
    problems = []
    if gatekeeper == "DISABLED":
        problems.append("Gatekeeper disabled")
    if sip != "ENABLED":
        problems.append(f"System Integrity Protection {sip}")
    if not xprotect:
        problems.append("no XProtect version reported")
    return {
        "enabled": not problems,
        "problems": problems,
        "summary": f"Gatekeeper {gatekeeper}, SIP {sip}, XProtect {xprotect or 'none'}",
    }


def computer_payload(c: Mapping[str, Any], pseudo: Pseudonymiser) -> dict[str, Any]:
    """One Jamf computer in the shared device model."""
    general = _section(c, "general")
    sec = _section(c, "security")
    osys = _section(c, "operatingSystem")
    user = _section(c, "userAndLocation")
    errors: dict[str, str] = {}
    encrypted, detail = _encryption(c)
    if encrypted is None:
        errors["encrypted"] = "Jamf reports no FileVault state for the boot partition"
    anti = _anti_malware(sec)
    if anti is None:
        errors["anti_malware"] = "Gatekeeper / SIP status not collected by Jamf"
    auto_login_off = sec.get("autoLoginDisabled")
    remote = _section(general, "remoteManagement")
    build = osys.get("build")
    return device_payload(
        id=str(c.get("id")),
        name=general.get("name"),
        platform=platform_of(general.get("platform")) or "macos",
        os_version=osys.get("version"),
        ownership=None,
        user_email=pseudo(email_of(user.get("email"))),
        user_name=pseudo(user.get("username") or None),
        managed=remote.get("managed") if isinstance(remote.get("managed"), bool) else None,
        encrypted=encrypted,
        encryption_detail=detail,
        compliance_state=None,
        screen_lock=(
            None
            if auto_login_off is None
            else {
                "enforced": auto_login_off is True,
                "detail": "automatic login disabled"
                if auto_login_off
                else "automatic login enabled",
            }
        ),
        jailbroken=None,
        anti_malware=anti,
        firewall_enabled=sec.get("firewallEnabled"),
        last_check_in=activity_time(general.get("lastContactTime")),
        enrolled=full_time(general.get("lastEnrolledDate")),
        **({ERRORS_KEY: errors} if errors else {}),
    ) | ({"os_build": build} if build else {})


def read_computers(
    http: HttpClient,
    scope: str,
    pseudo: Pseudonymiser,
    *,
    page_size: int,
    cancelled: Callable[[], bool],
) -> Iterator[Evidence]:
    """Every computer, streamed page by page (memory stays flat)."""
    params = [("section", s) for s in SECTIONS] + [("sort", "id:asc")]
    seen = SeenIds()
    pages = http.paginate_pages(
        INVENTORY_PATH,
        params=params,
        items_key="results",
        size_param="page-size",
        first_page=0,
        total_key="totalCount",
        page_size=page_size,
    )
    for c in pages:
        if cancelled():
            return
        if not isinstance(c, Mapping) or not c.get("id"):
            raise MalformedResponseError("a computer without an id in computers-inventory")
        cid = str(c["id"])
        if not seen.add(cid):
            continue
        yield Evidence(scope, GLOBAL, COMPUTER_TYPE, cid, computer_payload(c, pseudo))

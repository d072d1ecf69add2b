"""The shared device model and the endpoint checks of every device-management source.

Intune (``connectors/intune``) and Jamf Pro (``connectors/jamf``) describe the same
thing — a laptop or phone, who it belongs to, whether its disk is encrypted, whether its
OS is current, when it last checked in — in different words. Each connector reduces its
source's record to one :func:`device_payload` (the *device model*), and the checks here
judge that model, so a FileVault Mac and a BitLocker laptop are held to one standard and
the cross-source ownership checks (``analyzers/devices.py``) read one shape.

Checks are registered once per source resource type by :func:`register_device_checks`
(``intune.device.disk_encrypted``, ``jamf.computer.disk_encrypted``…), because a check
inspects one resource type and mappings name each source's checks; the logic and the
metadata exist once, here. A source registers only the checks it has evidence for (Jamf
reports no jailbreak for Macs, Intune no host firewall state).

A value the source did not report is ``None`` and the check raises (``error``), never a
guessed pass: an unknown encryption state is not an encrypted disk.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from connectors.kit import ERRORS_KEY, EvidenceMissing
from core.checks import Verdict, check, failed, not_applicable, passed
from core.times import day_precision, days_since, parse_time

#: Keys of every device payload (the device model), in the order an auditor reads them.
MODEL_KEYS: tuple[str, ...] = (
    "id",
    "name",
    "platform",
    "os_version",
    "ownership",
    "user_email",
    "user_name",
    "managed",
    "encrypted",
    "encryption_detail",
    "compliance_state",
    "screen_lock",
    "jailbroken",
    "anti_malware",
    "firewall_enabled",
    "last_check_in",
    "enrolled",
)

#: Lowest OS version still supported by its vendor (overridable per check in config).
DEFAULT_MIN_VERSIONS: dict[str, str] = {
    "windows": "10.0.26100",  # Windows 11 24H2
    "macos": "15.0",
    "ios": "18.0",
    "ipados": "18.0",
    "android": "14",
}

_PLATFORMS = {
    "windows": "windows",
    "macos": "macos",
    "mac": "macos",
    "mac os x": "macos",
    "os x": "macos",
    "ios": "ios",
    "ipados": "ipados",
    "android": "android",
    "androidenterprise": "android",
    "androidforwork": "android",
    "linux": "linux",
    "chromeos": "chromeos",
}


def platform_of(value: Any) -> str | None:
    """``windows`` / ``macos`` / ``ios`` / ``ipados`` / ``android`` / ``linux`` or the
    source's own word lower-cased (never guessed into another platform)."""
    if not isinstance(value, str) or not value.strip():
        return None
    key = value.strip().lower()
    return _PLATFORMS.get(key, _PLATFORMS.get(key.replace(" ", ""), key))


def email_of(value: Any) -> str | None:
    """A join key: an e-mail-like value (or a pseudonym), trimmed and lower-cased."""
    if isinstance(value, str) and ("@" in value or value.startswith("pseud:")):
        return value.strip().lower()
    return None


def device_payload(**fields: Any) -> dict[str, Any]:
    """One device in the shared model: every key of :data:`MODEL_KEYS` present (``None``
    when the source did not say), plus ``_errors`` when a part could not be read."""
    unknown = set(fields) - {*MODEL_KEYS, ERRORS_KEY}
    if unknown:
        raise TypeError(f"not part of the device model: {', '.join(sorted(unknown))}")
    payload = {k: fields.get(k) for k in MODEL_KEYS}
    if fields.get(ERRORS_KEY):
        payload[ERRORS_KEY] = dict(fields[ERRORS_KEY])
    return payload


def version_key(version: Any) -> tuple[int, ...]:
    """``"14.6.1"`` → ``(14, 6, 1)``; ``"10.0.22631.4460"`` → ``(10, 0, 22631, 4460)``."""
    parts = re.findall(r"\d+", str(version or ""))
    if not parts:
        raise ValueError(f"not a version: {version!r}")
    return tuple(int(p) for p in parts)


def _at_least(version: str, minimum: str) -> bool:
    have, need = version_key(version), version_key(minimum)
    width = max(len(have), len(need))
    return have + (0,) * (width - len(have)) >= need + (0,) * (width - len(need))


class SeenIds:
    """Ids already yielded in this run, kept as 64-bit digests (about half the memory
    of the id strings), so a listing that repeats an item across pages yields it once
    while memory stays nearly flat for fleets of 100,000 devices. A collision (p ≈ 3e-10
    at 100,000 ids) would drop one device from one run; the store then keeps its last
    state, it never invents one."""

    def __init__(self) -> None:
        self._seen: set[int] = set()

    def add(self, item_id: str) -> bool:
        """True when ``item_id`` is new (and remember it)."""
        key = int.from_bytes(hashlib.blake2b(item_id.encode(), digest_size=8).digest(), "big")
        if key in self._seen:
            return False
        self._seen.add(key)
        return True


# --------------------------------------------------------------------------- check logic


def _who(p: Mapping[str, Any]) -> str:
    owner = p.get("user_email") or p.get("user_name") or "no user"
    return f"device {p.get('name') or p.get('id')} ({p.get('platform') or 'unknown OS'}, {owner})"


def _need(p: Mapping[str, Any], key: str, what: str) -> Any:
    """``p[key]`` when the source reported it; otherwise :class:`EvidenceMissing`."""
    value = p.get(key)
    if value is None:
        reason = (p.get(ERRORS_KEY) or {}).get(key)
        raise EvidenceMissing(
            f"{what} of {_who(p)} "
            + (f"could not be read: {reason}" if reason else "was not reported by the source")
        )
    return value


def _unmanaged(p: Mapping[str, Any]) -> Verdict | None:
    if p.get("managed") is False:
        return not_applicable(f"{_who(p)} is not under management (no settings enforced)")
    return None


def disk_encrypted(p: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    if (na := _unmanaged(p)) is not None:
        return na
    enc = _need(p, "encrypted", "the encryption state")
    detail = f" ({p['encryption_detail']})" if p.get("encryption_detail") else ""
    if enc is True:
        return passed(f"{_who(p)} has its disk encrypted{detail}")
    return failed(f"{_who(p)} does not have its disk encrypted{detail}")


def screen_lock(p: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    if (na := _unmanaged(p)) is not None:
        return na
    lock = _need(p, "screen_lock", "the screen-lock / passcode state")
    if isinstance(lock, Mapping):
        ok, why = lock.get("enforced"), lock.get("detail") or ""
    else:
        ok, why = lock, ""
    if ok is True:
        return passed(f"{_who(p)} enforces a passcode and screen lock{f' ({why})' if why else ''}")
    return failed(f"{_who(p)} does not enforce its passcode / screen-lock policy ({why or ok})")


def _version_for(params: Mapping[str, Any], key: str, platform: str, what: str) -> Any:
    table = params[key]
    if platform not in table:
        known = ", ".join(sorted(table)) or "none"
        raise EvidenceMissing(
            f"no {what} configured for platform {platform!r} (configured: {known}); "
            f"set the check parameter {key}"
        )
    return table[platform]


def os_supported(p: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    if (na := _unmanaged(p)) is not None:
        return na
    platform = _need(p, "platform", "the platform")
    version = str(_need(p, "os_version", "the OS version"))
    minimum = str(_version_for(params, "min_versions", platform, "minimum supported version"))
    if _at_least(version, minimum):
        return passed(f"{_who(p)} runs {platform} {version} (supported from {minimum})")
    return failed(
        f"{_who(p)} runs {platform} {version}, below the lowest supported version {minimum}"
    )


def os_patched(p: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    """The newest release published more than ``patch_days`` ago must be installed.

    ``releases`` maps a platform to ``[version, release date]`` pairs (the vendor's
    security-release list, kept in config); a device is late when it runs an older
    version than the newest release whose grace period has ended.
    """
    if (na := _unmanaged(p)) is not None:
        return na
    platform = _need(p, "platform", "the platform")
    version = str(_need(p, "os_version", "the OS version"))
    releases = _version_for(params, "releases", platform, "release list")
    limit = params["patch_days"]
    due = [
        (version_key(v), str(v), str(d))
        for v, d in releases
        if days_since(parse_time(str(d))) > limit
    ]
    if not due:
        return passed(f"{_who(p)} runs {version}; no release is older than {limit} days")
    # Only releases of the device's own line count (14.x for a 14.y Mac): vendors patch
    # several supported major versions in parallel; os_supported judges the line itself.
    line = version_key(version)[0]
    same_line = [r for r in due if r[0][0] == line] or due
    _, newest, released = max(same_line)
    if _at_least(version, newest):
        return passed(f"{_who(p)} runs {version} (≥ {newest}, released {released})")
    return failed(
        f"{_who(p)} runs {version}; {newest} was released on {released}, more than {limit} days ago"
    )


def anti_malware(p: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    if (na := _unmanaged(p)) is not None:
        return na
    state = _need(p, "anti_malware", "the anti-malware state")
    if state.get("applicable") is False:
        # The source has no anti-malware report for this platform (Intune reports
        # Defender state for Windows only): say so rather than guess.
        return not_applicable(f"{_who(p)}: {state.get('summary') or 'not reported'}")
    problems = [str(x) for x in state.get("problems") or []]
    summary = state.get("summary") or ""
    if state.get("enabled") is True and not problems:
        return passed(f"{_who(p)} has anti-malware on ({summary})")
    return failed(f"{_who(p)}: anti-malware is not fully on: {', '.join(problems) or summary}")


def firewall_enabled(p: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    if (na := _unmanaged(p)) is not None:
        return na
    if _need(p, "firewall_enabled", "the firewall state") is True:
        return passed(f"{_who(p)} has its host firewall on")
    return failed(f"{_who(p)} has its host firewall off")


def checked_in(p: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    last = _need(p, "last_check_in", "the last check-in time")
    limit = params["max_days"]
    age = days_since(last)
    if age > limit:
        return failed(
            f"{_who(p)} last checked in on {day_precision(last)} ({int(age)} days ago, "
            f"limit {limit}): its state is unknown and it may be lost or retired"
        )
    return passed(f"{_who(p)} last checked in on {day_precision(last)}")


MOBILE_PLATFORMS = frozenset({"ios", "ipados", "android"})


def not_jailbroken(p: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    if p.get("platform") not in MOBILE_PLATFORMS:
        return not_applicable(f"{_who(p)}: jailbreak detection applies to iOS/Android only")
    jb = _need(p, "jailbroken", "the jailbreak / root state")
    if jb is True:
        return failed(f"{_who(p)} is jailbroken or rooted")
    return passed(f"{_who(p)} is not jailbroken")


# --------------------------------------------------------------------------- registration


_Meta = dict[str, Any]
_CHECKS: dict[str, tuple[Callable[..., Verdict], _Meta]] = {
    "disk_encrypted": (
        disk_encrypted,
        {
            "title": "Device disk is encrypted (BitLocker / FileVault / device encryption)",
            "severity": "high",
            "rationale": (
                "A lost or stolen laptop or phone whose storage is not encrypted gives "
                "its finder every file, cached credential and token on it."
            ),
            "remediation": (
                "Enforce BitLocker / FileVault / device encryption with a configuration "
                "profile, escrow the recovery key to the MDM, and verify the device reports "
                "encrypted at its next check-in."
            ),
        },
    ),
    "screen_lock": (
        screen_lock,
        {
            "title": "Device enforces a passcode and automatic screen lock",
            "severity": "medium",
            "rationale": (
                "An unattended device without a passcode and inactivity lock is open to "
                "anyone who picks it up; the screen lock is the technical half of a clear "
                "screen policy."
            ),
            "remediation": (
                "Assign a compliance policy / configuration profile requiring a passcode "
                "and a screen lock after at most 15 minutes of inactivity; fix or block "
                "devices that do not meet it."
            ),
        },
    ),
    "os_supported": (
        os_supported,
        {
            "title": "Device runs an operating system version its vendor still supports",
            "severity": "high",
            "rationale": (
                "An OS out of vendor support receives no security fixes: every "
                "vulnerability found after its end of support stays open for good."
            ),
            "remediation": "Upgrade the device to a supported release, or retire it.",
            "parameters": {"min_versions": dict(DEFAULT_MIN_VERSIONS)},
        },
    ),
    "os_patched": (
        os_patched,
        {
            "title": "Device installed the latest OS security release within N days",
            "severity": "medium",
            "rationale": (
                "Attackers exploit published OS vulnerabilities within days; a device "
                "that lags behind its vendor's security releases stays exposed."
            ),
            "remediation": (
                "Enforce OS update deadlines through the MDM (Windows Update rings, "
                "declarative software-update enforcement); keep the release list in the "
                "check parameters current."
            ),
            "parameters": {"patch_days": 30, "releases": {}},
        },
    ),
    "anti_malware": (
        anti_malware,
        {
            "title": "Device has anti-malware protection on and up to date",
            "severity": "high",
            "rationale": (
                "Endpoint protection switched off, without real-time scanning or with "
                "stale signatures does not stop known malware."
            ),
            "remediation": (
                "Re-enable the endpoint protection (Defender real-time protection, "
                "Gatekeeper and SIP on macOS), update its signatures, and enable tamper "
                "protection so users cannot turn it off."
            ),
        },
    ),
    "firewall_enabled": (
        firewall_enabled,
        {
            "title": "Device has its host firewall on",
            "severity": "medium",
            "rationale": (
                "Laptops join hotel and home networks; without a host firewall every "
                "listening service on them is reachable by anyone on that network."
            ),
            "remediation": "Enable the application firewall through a configuration profile.",
        },
    ),
    "checked_in": (
        checked_in,
        {
            "title": "Device checked in with device management within N days",
            "severity": "medium",
            "rationale": (
                "A device that stopped checking in reports a state that is no longer "
                "true: it may be lost, stolen, wiped or kept by a leaver, and no policy "
                "reaches it."
            ),
            "remediation": (
                "Find the device and its user; have it reconnect, or lock/wipe and retire "
                "it in the MDM."
            ),
            "parameters": {"max_days": 30},
        },
    ),
    "not_jailbroken": (
        not_jailbroken,
        {
            "title": "Device is not jailbroken or rooted",
            "severity": "high",
            "rationale": (
                "A jailbroken or rooted device has its OS security model removed: any "
                "app can read other apps' data and the MDM's settings cannot be trusted."
            ),
            "remediation": (
                "Block the device from company data (compliance policy + Conditional "
                "Access), have it restored to a stock OS, then re-enrol it."
            ),
        },
    ),
}

#: Check names every device source can register (``<prefix>.<service>.<name>``).
CHECK_NAMES: tuple[str, ...] = tuple(_CHECKS)


def register_device_checks(
    resource_type: str,
    names: Iterable[str],
    *,
    overrides: Mapping[str, _Meta] | None = None,
) -> list[str]:
    """Register the named shared checks for ``resource_type`` (``<prefix>.<service>.x``)
    under ids ``<prefix>.<service>.<name>``; returns the ids.

    ``overrides`` replaces metadata per check name where a source judges differently
    (e.g. Intune's screen lock is read from its compliance policy).
    """
    prefix, service = resource_type.split(".")[:2]
    ids = []
    for name in names:
        func, meta = _CHECKS[name]
        meta = {**meta, **(overrides or {}).get(name, {})}

        def bound(payload: Mapping[str, Any], params: Mapping[str, Any], _f: Any = func) -> Verdict:
            return _f(payload, params)

        bound.__doc__ = func.__doc__
        cid = f"{prefix}.{service}.{name}"
        check(id=cid, resource_type=resource_type, **meta)(bound)
        ids.append(cid)
    return ids

"""Storage accounts: transport security, public access, TLS, shared keys, network default.

One unit per subscription (service ``storage``): ``GET .../Microsoft.Storage/
storageAccounts`` returns every account with its properties (the listing; a failure
fails the unit), then per account ``GET <account id>/managementPolicies/default`` (its
lifecycle rules; 404 = none; partial, recorded under ``_errors.managementPolicy``). The
keys are never listed: ``listKeys`` is an action, not a read, and Reader cannot call it.

Resource type ``azure.storage.account`` (id = ARM id): the ARM resource as returned,
with ``managementPolicy``: null (no lifecycle policy) or ``{"rules": [{"name",
"enabled", "prefixes", "blobTypes", "deleteAfterDays"}]}`` (``deleteAfterDays``: the
base-blob delete action's days, null when the rule does not delete).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from connectors import classification, exposure
from connectors.kit import read_partial, require, with_errors
from core.checks import Verdict, check, failed, passed
from core.records import Evidence

from .arm import Arm, arm_resource, evidence
from .common import props

SERVICE = "storage"
ACCOUNT = "azure.storage.account"
API_VERSION = "2023-05-01"

ACTIONS = (
    "Microsoft.Storage/storageAccounts/read",
    "Microsoft.Storage/storageAccounts/managementPolicies/read",
)

_DELETE_KEYS = ("daysAfterModificationGreaterThan", "daysAfterCreationGreaterThan",
                "daysAfterLastAccessTimeGreaterThan")

#: TLS versions in order, as ARM names them.
TLS_ORDER = ("TLS1_0", "TLS1_1", "TLS1_2", "TLS1_3")


def lifecycle_rules(policy: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The lifecycle policy's rules, compact (None: the account has no policy)."""
    if policy is None:
        return None
    rules = []
    for rule in ((policy.get("properties") or {}).get("policy") or {}).get("rules") or []:
        definition = rule.get("definition") or {}
        filters = definition.get("filters") or {}
        delete = ((definition.get("actions") or {}).get("baseBlob") or {}).get("delete") or {}
        days = [int(delete[k]) for k in _DELETE_KEYS if isinstance(delete.get(k), (int, float))]
        rules.append({"name": rule.get("name"), "enabled": rule.get("enabled", True) is not False,
                      "prefixes": list(filters.get("prefixMatch") or []),
                      "blobTypes": list(filters.get("blobTypes") or []),
                      "deleteAfterDays": min(days) if days else None})
    return {"rules": sorted(rules, key=lambda r: str(r["name"]))}


def read(arm: Arm, subscription: str, **_: Any) -> Iterator[Evidence]:
    path = f"/subscriptions/{subscription}/providers/Microsoft.Storage/storageAccounts"
    for account in arm.list(path, API_VERSION):
        yield account_evidence(arm, subscription, account)


def account_evidence(arm: Arm, subscription: str, account: Mapping[str, Any]) -> Evidence:
    """One account's evidence from its ARM body (listed here, or a Resource Graph row
    shaped as one by :mod:`.resourcegraph`), with its lifecycle policy read from ARM."""
    payload = arm_resource(account)
    errors: dict[str, str] = {}
    policy = read_partial(errors, "managementPolicy", lambda: arm.get(
        f"{account['id']}/managementPolicies/default", API_VERSION, missing_ok=True) or {})
    if policy is not None:
        payload["managementPolicy"] = lifecycle_rules(policy or None)
    return evidence(subscription, ACCOUNT, account, with_errors(payload, errors))


# --- checks --------------------------------------------------------------------------


@check("azure.storage.account_tls_only")
def account_tls_only(payload: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    value = props(payload).get("supportsHttpsTrafficOnly")
    if value is True:
        return passed("Secure transfer (HTTPS only) is required")
    if value is None:
        # The storage API documents "the default value is true since API version
        # 2019-04-01"; the account is read with a later version, which reports the
        # effective value, so an absent property is the documented default.
        return passed("Secure transfer is not reported; the documented default (API "
                      "2019-04-01 and later) is required")
    return failed("Secure transfer is not required: plain HTTP is accepted")


@check("azure.storage.account_public_access_block")
def account_public_access_block(payload: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    value = props(payload).get("allowBlobPublicAccess")
    if value is True:
        return failed("Anonymous public access to blobs is allowed on the account")
    if value is False:
        return passed("Anonymous public access to blobs is disallowed on the account")
    # Unset: newer API versions document the default as false, older ones as true, and
    # accounts created before the setting existed allow public containers. Only an
    # explicit false is evidence (Azure Policy's built-in definition judges the same).
    return failed("Anonymous blob access is not explicitly disallowed (allowBlobPublicAccess "
                  "is unset)")


@check("azure.storage.minimum_tls_version")
def minimum_tls_version(payload: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    wanted = str(params["min_version"]).upper()
    if wanted not in TLS_ORDER:
        raise ValueError(f"min_version must be one of {', '.join(TLS_ORDER)}")
    # Accounts created before the property existed report nothing and accept TLS 1.0.
    actual = str(props(payload).get("minimumTlsVersion") or "TLS1_0").upper()
    if actual not in TLS_ORDER:
        return failed(f"Unknown minimum TLS version {actual!r}")
    if TLS_ORDER.index(actual) >= TLS_ORDER.index(wanted):
        return passed(f"Minimum TLS version is {actual}")
    return failed(f"Minimum TLS version is {actual}, below {wanted}")


@check("azure.storage.shared_key_access_disabled")
def shared_key_access_disabled(payload: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    # null/absent means allowed (the ARM default).
    if props(payload).get("allowSharedKeyAccess") is False:
        return passed("Shared-key authorisation is disabled")
    return failed("Shared-key (account key and SAS) authorisation is allowed")


@check("azure.storage.default_network_access_deny")
def default_network_access_deny(payload: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    p = props(payload)
    if str(p.get("publicNetworkAccess") or "").lower() == "disabled":
        return passed("Public network access is disabled")
    acls = p.get("networkAcls") or {}
    action = acls.get("defaultAction")
    if str(action).lower() != "deny":
        return failed(f"The network default action is {action or 'Allow'}: any network may "
                      "connect")
    rules = [r for r in acls.get("ipRules") or []
             if str(r.get("action") or "Allow").lower() == "allow"]
    try:
        admitted = exposure.parse_sources(str(r.get("value", "")) for r in rules)
    except ValueError as exc:
        raise ValueError(f"IP rules: {exc}") from None
    if exposure.wide_from(params).holds(admitted):
        values = ", ".join(str(r.get("value")) for r in rules)
        return failed(f"The default action is Deny, but the IP rules admit the internet "
                      f"({values})")
    return passed("The network default action is Deny")


@check("azure.storage.lifecycle_delete_rule")
def lifecycle_delete_rule(payload: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    policy = require(payload, "managementPolicy")
    if policy is None:
        return failed("No lifecycle management policy: blobs are kept until deleted by hand")
    deleting = [r for r in policy["rules"] if r["enabled"] and r["deleteAfterDays"] is not None]
    if not deleting:
        return failed("No enabled lifecycle rule deletes base blobs")
    limit = int(params["max_delete_after_days"])
    if limit and min(r["deleteAfterDays"] for r in deleting) > limit:
        return failed(f"Lifecycle rules delete blobs only after more than {limit} days")
    return passed("Lifecycle rules delete blobs: " + ", ".join(
        f"{r['name']} after {r['deleteAfterDays']} days"
        + (f" ({', '.join(r['prefixes'])})" if r["prefixes"] else "") for r in deleting))


@check("azure.storage.account_classified")
def account_classified(payload: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    return classification.classification_verdict(
        payload.get("tags"), params, f"Storage account {payload.get('name')}")

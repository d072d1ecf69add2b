"""Azure SQL: server auditing, network exposure, TLS, and database encryption (TDE).

One unit per subscription (service ``sql``): ``GET .../Microsoft.Sql/servers`` (the
listing; a failure fails the unit), then per server (partial reads, recorded under
``_errors``): ``auditingSettings/default`` and ``firewallRules``; then the server's
``databases`` (a listing: its failure fails the unit, so unlisted databases are never
taken as deleted) and per user database ``transparentDataEncryption/current`` and the
dynamic data masking policy with its rules.

Resource types (id = ARM id):

* ``azure.sql.server``: the ARM resource plus ``auditing`` (the auditing settings'
  properties; the write-only storage key is never returned) and ``firewallRules``
  (``[{"name", "startIpAddress", "endIpAddress"}]``);
* ``azure.sql.database``: the ARM resource (``master`` is skipped: it is a system
  database TDE does not apply to) plus ``transparentDataEncryption`` (``{"state"}``)
  and ``dataMasking`` (``{"dataMaskingState", "exemptPrincipals", "rules": [{"schemaName",
  "tableName", "columnName", "maskingFunction", "ruleState"}]}``) from
  ``dataMaskingPolicies/Default`` and its ``rules`` (partial, ``_errors.dataMasking``;
  shapes of the DataMaskingPolicyGet / DataMaskingRuleListByDatabase examples).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from connectors import exposure
from connectors.kit import read_partial, require, with_errors
from core.checks import Verdict, check, failed, not_applicable, passed
from core.records import Evidence

from .arm import Arm, arm_resource, evidence
from .common import props

SERVICE = "sql"
SERVER = "azure.sql.server"
DATABASE = "azure.sql.database"
API_VERSION = "2021-11-01"

ACTIONS = (
    "Microsoft.Sql/servers/read",
    "Microsoft.Sql/servers/auditingSettings/read",
    "Microsoft.Sql/servers/firewallRules/read",
    "Microsoft.Sql/servers/databases/read",
    "Microsoft.Sql/servers/databases/transparentDataEncryption/read",
    "Microsoft.Sql/servers/databases/dataMaskingPolicies/read",
    "Microsoft.Sql/servers/databases/dataMaskingPolicies/rules/read",
)

_DB_KEPT = ("status", "collation", "maxSizeBytes", "zoneRedundant", "readScale",
            "requestedBackupStorageRedundancy", "currentBackupStorageRedundancy",
            "isLedgerOn", "creationDate")


def _auditing(arm: Arm, server_id: str) -> dict[str, Any]:
    doc = arm.get(f"{server_id}/auditingSettings/default", API_VERSION)
    return dict(doc.get("properties") or {})


def _firewall(arm: Arm, server_id: str) -> list[dict[str, Any]]:
    rules = []
    for rule in arm.list(f"{server_id}/firewallRules", API_VERSION):
        p = rule.get("properties") or {}
        rules.append({"name": rule.get("name"), "startIpAddress": p.get("startIpAddress"),
                      "endIpAddress": p.get("endIpAddress")})
    return sorted(rules, key=lambda r: str(r["name"]))


def database_payload(arm: Arm, db: Mapping[str, Any]) -> dict[str, Any]:
    p = db.get("properties") or {}
    payload: dict[str, Any] = {k: db[k] for k in ("id", "name", "type", "location", "sku",
                                                 "kind", "tags") if k in db}
    payload["properties"] = {k: p[k] for k in _DB_KEPT if k in p}
    errors: dict[str, str] = {}
    tde = read_partial(
        errors, "transparentDataEncryption",
        lambda: arm.get(f"{db['id']}/transparentDataEncryption/current", API_VERSION),
    )
    if tde is not None:
        payload["transparentDataEncryption"] = {"state": (tde.get("properties") or {})
                                                .get("state")}
    masking = read_partial(errors, "dataMasking", lambda: _masking(arm, str(db["id"])))
    if masking is not None:
        payload["dataMasking"] = masking
    return with_errors(payload, errors)


def _masking(arm: Arm, db_id: str) -> dict[str, Any]:
    """Dynamic data masking of one database: the ``Default`` policy's state and exempt
    principals, and its rules (schema, table, column, function, state). Every database
    has the policy; a database that never configured masking answers ``Disabled``."""
    base = f"{db_id}/dataMaskingPolicies/Default"
    policy = (arm.get(base, API_VERSION) or {}).get("properties") or {}
    rules = []
    for rule in arm.list(f"{base}/rules", API_VERSION):
        r = rule.get("properties") or {}
        rules.append({k: r.get(k) for k in ("schemaName", "tableName", "columnName",
                                            "maskingFunction", "ruleState")})
    return {"dataMaskingState": policy.get("dataMaskingState"),
            "exemptPrincipals": policy.get("exemptPrincipals"),
            "rules": sorted(rules, key=lambda r: tuple(str(r[k]) for k in (
                "schemaName", "tableName", "columnName")))}


def read(arm: Arm, subscription: str, **_: Any) -> Iterator[Evidence]:
    path = f"/subscriptions/{subscription}/providers/Microsoft.Sql/servers"
    for server in arm.list(path, API_VERSION):
        sid = server["id"]
        errors: dict[str, str] = {}
        payload = arm_resource(server)
        auditing = read_partial(errors, "auditing", lambda sid=sid: _auditing(arm, sid))
        if auditing is not None:
            payload["auditing"] = auditing
        rules = read_partial(errors, "firewallRules", lambda sid=sid: _firewall(arm, sid))
        if rules is not None:
            payload["firewallRules"] = rules
        yield evidence(subscription, SERVER, server, with_errors(payload, errors))
        # A listing, not a detail: if it fails the unit fails, so databases that were
        # not listed are not taken as deleted.
        for db in arm.list(f"{sid}/databases", API_VERSION):
            if str(db.get("name", "")).lower() == "master":
                continue
            yield evidence(subscription, DATABASE, db, database_payload(arm, db))


# --- checks --------------------------------------------------------------------------


@check("azure.sql.auditing_enabled")
def auditing_enabled(payload: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    auditing = require(payload, "auditing")
    if str(auditing.get("state", "")).lower() != "enabled":
        return failed("Server auditing is disabled")
    days = auditing.get("retentionDays") or 0  # 0 = keep forever
    minimum = int(params["min_retention_days"])
    if auditing.get("storageEndpoint") and 0 < days < minimum:
        return failed(f"Auditing to storage keeps logs only {days} days (< {minimum})")
    return passed("Server auditing is enabled")


@check("azure.sql.not_publicly_accessible")
def not_publicly_accessible(
    payload: Mapping[str, Any], params: Mapping[str, Any]
) -> Verdict:
    state = props(payload).get("publicNetworkAccess") or "Enabled"  # ARM's default
    if str(state).lower() == "disabled":
        return passed("Public network access is disabled")
    return failed(f"Public network access is {state}")


_TLS = ("1.0", "1.1", "1.2", "1.3")


@check("azure.sql.minimum_tls_version")
def minimum_tls_version(payload: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    wanted = str(params["min_version"])
    if wanted not in _TLS:
        raise ValueError(f"min_version must be one of {', '.join(_TLS)}")
    actual = str(props(payload).get("minimalTlsVersion") or "None")
    if actual not in _TLS:
        return failed(f"Minimal TLS version is {actual}: every TLS version is accepted")
    if _TLS.index(actual) >= _TLS.index(wanted):
        return passed(f"Minimal TLS version is {actual}")
    return failed(f"Minimal TLS version is {actual}, below {wanted}")


#: The rule "Allow Azure services and resources to access this server" (ARM writes it
#: as 0.0.0.0-0.0.0.0, named AllowAllWindowsAzureIps): it admits every Azure
#: datacenter address, which any Azure customer's resources use.
AZURE_SERVICES = ("0.0.0.0", "0.0.0.0")  # noqa: S104 - data


def _span(rule: Mapping[str, Any]) -> tuple[str, str]:
    return str(rule.get("startIpAddress")), str(rule.get("endIpAddress"))


@check("azure.sql.firewall_open_to_internet")
def firewall_open_to_internet(payload: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    state = str(props(payload).get("publicNetworkAccess") or "Enabled").lower()
    if state == "disabled":
        return not_applicable("Public network access is disabled; firewall rules do not apply")
    rules = require(payload, "firewallRules")
    limit = int(params["max_addresses"])
    azure = [r for r in rules if _span(r) == AZURE_SERVICES]
    admitted = exposure.NOWHERE
    for r in rules:
        if _span(r) != AZURE_SERVICES:
            admitted = admitted | exposure.address_range(*_span(r))
    count = admitted.public().v4.size()
    if count > limit:
        names = ", ".join(f"{r['name']} ({r['startIpAddress']}-{r['endIpAddress']})"
                          for r in rules if _span(r) != AZURE_SERVICES)
        return failed(f"Firewall rules admit {count} public addresses (more than {limit}): "
                      f"{names}")
    if azure and not params["allow_azure_services"]:
        return failed(f"Rule {azure[0].get('name')} (0.0.0.0) admits every Azure "
                      "datacenter address, including other customers' resources")
    return passed(f"Firewall rules admit {count} public addresses (limit {limit})")


@check("azure.sql.storage_encrypted")
def storage_encrypted(payload: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    state = require(payload, "transparentDataEncryption").get("state")
    if str(state).lower() == "enabled":
        return passed("Transparent data encryption is enabled")
    return failed(f"Transparent data encryption is {state or 'not enabled'}")


@check("azure.sql.database_data_masking")
def database_data_masking(payload: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    key = str(params["tag_key"]).lower()
    level = next((str(v) for k, v in (payload.get("tags") or {}).items()
                  if str(k).lower() == key and str(v).strip()), None)
    needing = {str(c).lower() for c in params["require_for_classifications"]}
    if level is None and not params["require_when_unclassified"]:
        return not_applicable("Not classified, and unclassified databases are not required "
                              "to mask (require_when_unclassified = false)")
    if level is not None and level.lower() not in needing:
        return not_applicable(f"Classified {level}: masking is required only for "
                              f"{', '.join(sorted(needing))}")
    why = f"classified {level}" if level else "not classified"
    masking = require(payload, "dataMasking")
    state = str(masking.get("dataMaskingState") or "")
    rules = [r for r in masking.get("rules") or []
             if str(r.get("ruleState") or "Enabled").lower() == "enabled"]
    if state.lower() != "enabled":
        return failed(f"Database {payload.get('name')} ({why}) has dynamic data masking "
                      f"{state or 'not configured'}")
    if not rules:
        return failed(f"Database {payload.get('name')} ({why}): masking is enabled but no "
                      "column has an enabled masking rule")
    columns = ", ".join(f"{r.get('tableName')}.{r.get('columnName')}" for r in rules)
    return passed(f"Database {payload.get('name')} ({why}) masks {columns}")

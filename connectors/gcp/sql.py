"""Cloud SQL instances: backups, public IP, authorised networks, SSL.

One unit per project (service ``sql``): ``GET sqladmin.googleapis.com/v1/projects/<id>/
instances`` (the listing; a failure fails the unit).

Resource type ``gcp.sql.instance`` (id = instance name, region = its region)::

    {"name", "connectionName", "databaseVersion", "region", "state", "instanceType",
     "backendType", "ipAddresses": [{"type", "ipAddress"}],
     "settings": {"backupConfiguration", "ipConfiguration", "availabilityType",
                  "databaseFlags", "deletionProtectionEnabled"}}

The server CA certificate, ``etag`` and ``settingsVersion`` are left out (the version
moves on every settings write, the rest is not judged).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from connectors import exposure
from connectors.kit import require
from core.checks import Verdict, check, failed, not_applicable, passed
from core.records import Evidence

from .context import GcpContext, Project, evidence

SERVICE = "sql"
INSTANCE = "gcp.sql.instance"

PERMISSIONS = ("cloudsql.instances.list",)

_KEPT = ("name", "connectionName", "databaseVersion", "region", "gceZone", "state",
         "instanceType", "backendType", "masterInstanceName")
_SETTINGS = ("backupConfiguration", "ipConfiguration", "availabilityType", "databaseFlags",
             "deletionProtectionEnabled", "tier", "edition")
#: SSL modes that refuse unencrypted connections.
SECURE_SSL_MODES = frozenset({"ENCRYPTED_ONLY", "TRUSTED_CLIENT_CERTIFICATE_REQUIRED"})


def transform(instance: Mapping[str, Any]) -> dict[str, Any]:
    payload = {k: instance[k] for k in _KEPT if k in instance}
    payload["ipAddresses"] = [
        {"type": a.get("type"), "ipAddress": a.get("ipAddress")}
        for a in instance.get("ipAddresses") or []
    ]
    settings = instance.get("settings") or {}
    payload["settings"] = {k: settings[k] for k in _SETTINGS if k in settings}
    return payload


def read(ctx: GcpContext, project: Project) -> Iterator[Evidence]:
    for inst in ctx.items("sqladmin", f"/v1/projects/{project.id}/instances", "items"):
        yield evidence(project.id, INSTANCE, str(inst["name"]), transform(inst),
                       inst.get("region"))


def _settings(payload: Mapping[str, Any]) -> Mapping[str, Any]:
    return require(payload, "settings")


def _is_replica(payload: Mapping[str, Any]) -> bool:
    return str(payload.get("instanceType", "")) == "READ_REPLICA_INSTANCE"


@check(
    id="gcp.sql.backups_enabled",
    title="Cloud SQL instances take automated backups",
    severity="high",
    resource_type=INSTANCE,
    rationale="Automated backups (with point-in-time recovery) are what restores the "
    "database after corruption, deletion or ransomware.",
    remediation="Enable automated backups (and point-in-time recovery) on the instance.",
)
def backups_enabled(payload: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    if _is_replica(payload):
        return not_applicable("Read replicas are not backed up; their primary is")
    backup = _settings(payload).get("backupConfiguration") or {}
    if backup.get("enabled") is True:
        return passed("Automated backups are enabled")
    return failed("Automated backups are disabled")


@check(
    id="gcp.sql.backup_retention",
    title="Cloud SQL instances keep enough automated backups",
    severity="medium",
    resource_type=INSTANCE,
    rationale="Backups must reach back far enough to restore from before a problem that "
    "is noticed late.",
    remediation="Raise the number of retained backups (backupRetentionSettings).",
    parameters={"min_retained_backups": 7},
)
def backup_retention(payload: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    if _is_replica(payload):
        return not_applicable("Read replicas are not backed up; their primary is")
    backup = _settings(payload).get("backupConfiguration") or {}
    if backup.get("enabled") is not True:
        return failed("Automated backups are disabled")
    retention = backup.get("backupRetentionSettings") or {}
    count = int(retention.get("retainedBackups") or 7)  # the API's default
    minimum = int(params["min_retained_backups"])
    if str(retention.get("retentionUnit", "COUNT")) == "COUNT" and count < minimum:
        return failed(f"Only {count} backups are retained (< {minimum})")
    return passed(f"{count} backups are retained")


@check(
    id="gcp.sql.not_publicly_accessible",
    title="Cloud SQL instances have no public IP address",
    severity="high",
    resource_type=INSTANCE,
    rationale="With a public IP the instance's endpoint is reachable from the internet, "
    "limited only by authorised networks; private IP keeps database traffic in the VPC.",
    remediation="Use private IP (private services access or Private Service Connect) and "
    "turn the public IP off.",
)
def not_publicly_accessible(
    payload: Mapping[str, Any], params: Mapping[str, Any]
) -> Verdict:
    ip = _settings(payload).get("ipConfiguration") or {}
    public = [a["ipAddress"] for a in payload.get("ipAddresses") or []
              if a.get("type") == "PRIMARY"]
    if ip.get("ipv4Enabled") is False and not public:
        return passed("The instance has no public IP")
    return failed("The instance has a public IP" + (f" ({public[0]})" if public else ""))


@check(
    id="gcp.sql.firewall_open_to_internet",
    title="Cloud SQL authorised networks do not admit the internet",
    severity="high",
    resource_type=INSTANCE,
    rationale="Authorised networks that together admit as many public addresses as a /8 "
    "(0.0.0.0/0, or several wide ranges) expose the database login to anyone, leaving "
    "passwords as the only defence.",
    remediation="Remove the wide authorised networks; use the Cloud SQL Auth Proxy or "
    "private IP.",
    parameters={"min_prefix_length": 8},
)
def firewall_open_to_internet(payload: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    ip = _settings(payload).get("ipConfiguration") or {}
    if ip.get("ipv4Enabled") is False:
        return not_applicable("The instance has no public IP; authorised networks do not "
                              "apply")
    minimum = int(params["min_prefix_length"])
    nets = list(ip.get("authorizedNetworks") or [])
    try:
        admitted = exposure.parse_sources(str(n.get("value", "")) for n in nets)
    except ValueError as exc:
        raise ValueError(f"authorised networks: {exc}") from None
    if exposure.Wide(v4_prefix=minimum).holds(admitted):
        names = ", ".join(f"{n.get('name') or 'unnamed'} ({n.get('value')})" for n in nets)
        return failed(f"Authorised networks admit {admitted.public().v4.size()} public "
                      f"addresses (as many as a /{minimum} or more): {names}")
    return passed("Authorised networks admit a limited range of public addresses")


@check(
    id="gcp.sql.ssl_required",
    title="Cloud SQL instances refuse unencrypted connections",
    severity="medium",
    resource_type=INSTANCE,
    rationale="Without enforced SSL/TLS, credentials and query results can cross the "
    "network in clear text.",
    remediation="Set the SSL mode to ENCRYPTED_ONLY (or TRUSTED_CLIENT_CERTIFICATE_REQUIRED).",
)
def ssl_required(payload: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    ip = _settings(payload).get("ipConfiguration") or {}
    mode = str(ip.get("sslMode") or "")
    if mode in SECURE_SSL_MODES or (not mode and ip.get("requireSsl") is True):
        return passed(f"Only encrypted connections are accepted ({mode or 'requireSsl'})")
    return failed(f"Unencrypted connections are accepted ({mode or 'requireSsl is off'})")

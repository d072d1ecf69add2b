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


@check("gcp.sql.backups_enabled")
def backups_enabled(payload: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    if _is_replica(payload):
        return not_applicable("Read replicas are not backed up; their primary is")
    backup = _settings(payload).get("backupConfiguration") or {}
    if backup.get("enabled") is True:
        return passed("Automated backups are enabled")
    return failed("Automated backups are disabled")


@check("gcp.sql.backup_retention")
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


@check("gcp.sql.not_publicly_accessible")
def not_publicly_accessible(
    payload: Mapping[str, Any], params: Mapping[str, Any]
) -> Verdict:
    ip = _settings(payload).get("ipConfiguration") or {}
    public = [a["ipAddress"] for a in payload.get("ipAddresses") or []
              if a.get("type") == "PRIMARY"]
    if ip.get("ipv4Enabled") is False and not public:
        return passed("The instance has no public IP")
    return failed("The instance has a public IP" + (f" ({public[0]})" if public else ""))


@check("gcp.sql.firewall_open_to_internet")
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


@check("gcp.sql.ssl_required")
def ssl_required(payload: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    ip = _settings(payload).get("ipConfiguration") or {}
    mode = str(ip.get("sslMode") or "")
    if mode in SECURE_SSL_MODES or (not mode and ip.get("requireSsl") is True):
        return passed(f"Only encrypted connections are accepted ({mode or 'requireSsl'})")
    return failed(f"Unencrypted connections are accepted ({mode or 'requireSsl is off'})")

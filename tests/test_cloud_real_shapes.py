"""Verdicts on vendor-shaped answers: the false passes found on Azure and Google Cloud.

Each test serves, through the Azure or Google Cloud fake, a response built from the
vendor's own published description, and asserts the exact verdict the run engine
(:func:`collector.runner.drive`, the real checks and mappings) gives:

* Azure: examples of the Azure REST API specs (``Azure/azure-rest-api-specs``,
  ``specification/<service>/resource-manager/…/examples/*.json``; the example is named
  on each test);
* Google Cloud: schemas of the discovery documents shipped in
  ``google-api-python-client`` (``compute.v1``, ``logging.v2``, ``cloudresourcemanager
  .v3``, ``sqladmin.v1``); the fake checks every answer against them
  (``tests/gcp_discovery.py``) and each test asserts it found nothing wrong.

Each of these passed before the fix (the commit that added this file says which).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
import structlog

from collector.config import ConnectorConfig, LoadedConnector
from collector.runner import drive
from connectors.azure import AzureConnector, AzureOptions
from connectors.gcp import GcpConnector, GcpOptions
from core.records import Coverage, Evidence, Finding
from mappings.loader import load_mappings
from tests import azure_fixtures as azure_fx
from tests import gcp_fixtures as gcp_fx
from tests.azure_fixtures import CLIENT_ID, CLIENT_SECRET, SUB_A, TENANT, ArmFake
from tests.gcp_fixtures import GcpFake, ServiceAccountKey

arm_tls_fake = azure_fx.arm_tls_fake
tls_ca = azure_fx.tls_ca
gcp_fake = gcp_fx.gcp_fake
sa_key_material = gcp_fx.sa_key_material

PROJECT = "acme-shapes"


def run(lc: LoadedConnector) -> dict[tuple[str, str], Finding]:
    """One run through the engine; (check id, resource id) → finding."""
    sink = Sink()
    result = drive(lc, load_mappings(), sink, run_id="shapes", rlog=structlog.get_logger(),
                   cancel_event=threading.Event())
    assert result.status == "succeeded", sink.errors + [c.error for c in sink.units
                                                        if not c.ok]
    return {(f.check_id, f.resource_id): f for f in sink.findings}


class Sink:
    """The run engine's :class:`~collector.runner.RecordSink`, kept in memory."""

    def __init__(self) -> None:
        self.records: list[Evidence] = []
        self.findings: list[Finding] = []
        self.units: list[Coverage] = []
        self.errors: list[str] = []

    def evidence(self, ev: Evidence) -> str:
        self.records.append(ev)
        return ev.content_hash()

    def finding(self, f: Finding) -> None:
        self.findings.append(f)

    def coverage(self, c: Coverage) -> None:
        self.units.append(c)

    def error(self, message: str) -> None:
        self.errors.append(message)


# --------------------------------------------------------------------------- Azure


@pytest.fixture
def azure(arm_tls_fake: ArmFake, tls_ca: tuple[Any, Path],
          monkeypatch: pytest.MonkeyPatch) -> ArmFake:
    """The ARM fake over TLS with subscription A, read with the real
    ClientSecretCredential (so the engine builds the connector from options alone)."""
    _, ca_path = tls_ca
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(ca_path))
    monkeypatch.setenv("ANNEXA_TEST_AZURE_SECRET", CLIENT_SECRET)
    arm_tls_fake.add_subscription(SUB_A, "shapes")
    arm_tls_fake.ca_path = ca_path  # type: ignore[attr-defined]
    return arm_tls_fake


def azure_run(fake: ArmFake) -> dict[tuple[str, str], Finding]:
    options = {
        "auth": "client_secret", "tenant_id": TENANT, "client_id": CLIENT_ID,
        "client_secret": {"env": "ANNEXA_TEST_AZURE_SECRET"}, "authority": fake.url,
        "disable_instance_discovery": True, "arm_url": fake.url, "subscriptions": [SUB_A],
        "http": {"ca_bundle": str(fake.ca_path), "max_attempts": 2,  # type: ignore[attr-defined]
                 "retry_min_wait": 0},
    }
    cfg = ConnectorConfig(type="azure", name="azure-shapes", options=options)
    return run(LoadedConnector(cfg, AzureConnector, AzureOptions.model_validate(options)))


def _nsg_from_example(rules: list[dict[str, Any]]) -> dict[str, Any]:
    """``NetworkSecurityGroupGet.json`` (network, stable/2023-09-01): the NSG with its
    ``securityRules`` as the example shows them — one port or range per rule in
    ``destinationPortRange``, no empty list fields."""
    nsg_id = (f"/subscriptions/{SUB_A}/resourceGroups/rg1/providers/"
              "Microsoft.Network/networkSecurityGroups/testnsg")
    return {
        "name": "testnsg", "id": nsg_id, "type": "Microsoft.Network/networkSecurityGroups",
        "location": "westus",
        "properties": {
            "provisioningState": "Succeeded",
            "securityRules": [
                {"name": r["name"], "id": f"{nsg_id}/securityRules/{r['name']}",
                 "properties": {"provisioningState": "Succeeded", "sourcePortRange": "*",
                                "destinationAddressPrefix": "*", "direction": "Inbound",
                                **{k: v for k, v in r.items() if k != "name"}}}
                for r in rules
            ],
            "defaultSecurityRules": [],
        },
    }


def _nsg_verdicts(fake: ArmFake, rules: list[dict[str, Any]]) -> dict[str, tuple[str, str]]:
    fake.add(f"/subscriptions/{SUB_A}/providers/Microsoft.Network/networkSecurityGroups",
             _nsg_from_example(rules))
    found = azure_run(fake)
    return {c.rsplit(".", 1)[1]: (f.status, f.message) for (c, r), f in found.items()
            if c.startswith("azure.network.") and r.endswith("/testnsg")}


def test_azure_nsg_rule_allowing_1_to_65535_from_any_opens_every_port(azure: ArmFake) -> None:
    got = _nsg_verdicts(azure, [
        {"name": "rule1", "protocol": "*", "destinationPortRange": "1-65535",
         "sourceAddressPrefix": "*", "access": "Allow", "priority": 130},
    ])
    assert got["all_ports_open_to_internet"][0] == "fail"
    assert "rule1" in got["all_ports_open_to_internet"][1]
    assert got["ssh_open_to_internet"][0] == "fail"


def test_azure_nsg_port_ranges_are_united(azure: ArmFake) -> None:
    got = _nsg_verdicts(azure, [
        {"name": "low", "protocol": "Tcp", "destinationPortRanges": ["1-1024", "1025-40000"],
         "sourceAddressPrefix": "Internet", "access": "Allow", "priority": 100},
        {"name": "high", "protocol": "Tcp", "destinationPortRange": "40001-65535",
         "sourceAddressPrefix": "Internet", "access": "Allow", "priority": 110},
    ])
    assert got["all_ports_open_to_internet"][0] == "fail"
    assert "low" in got["all_ports_open_to_internet"][1]
    assert "high" in got["all_ports_open_to_internet"][1]


def test_azure_nsg_sources_covering_the_internet_in_halves(azure: ArmFake) -> None:
    got = _nsg_verdicts(azure, [
        {"name": "ssh-halves", "protocol": "Tcp", "destinationPortRange": "22",
         "sourceAddressPrefixes": ["0.0.0.0/1", "128.0.0.0/1"], "access": "Allow",
         "priority": 100},
    ])
    assert got["ssh_open_to_internet"] == (
        "fail", "Rule ssh-halves allows SSH (TCP 22) from the internet "
        "(0.0.0.0/1, 128.0.0.0/1)")
    assert got["rdp_open_to_internet"][0] == "pass"


def test_azure_nsg_deny_with_higher_priority_shadows_the_allow(azure: ArmFake) -> None:
    got = _nsg_verdicts(azure, [
        {"name": "deny-ssh", "protocol": "Tcp", "destinationPortRange": "22",
         "sourceAddressPrefix": "Internet", "access": "Deny", "priority": 100},
        {"name": "allow-all", "protocol": "*", "destinationPortRange": "*",
         "sourceAddressPrefix": "*", "access": "Allow", "priority": 200},
    ])
    assert got["ssh_open_to_internet"][0] == "pass"
    assert got["rdp_open_to_internet"][0] == "fail"
    assert got["all_ports_open_to_internet"][0] == "fail"  # UDP, and TCP but 22


def test_azure_sql_firewall_rules_are_united(azure: ArmFake) -> None:
    """``FirewallRuleList.json`` (sql, stable/2021-11-01): rules of
    ``startIpAddress``/``endIpAddress``; two adjacent /16 rules admit 131,072 public
    addresses, more than ``max_addresses`` (65,536), although each alone does not."""
    server = azure_fx.sql_server(SUB_A, "sqlcrudtest-6661", public="Enabled")
    azure.add(f"/subscriptions/{SUB_A}/providers/Microsoft.Sql/servers", server)
    azure.put(f"{server['id']}/auditingSettings/default",
              {"properties": {"state": "Enabled", "retentionDays": 0}})
    azure.put_list(f"{server['id']}/firewallRules", [
        {"id": f"{server['id']}/firewallRules/rule{i}", "name": f"rule{i}",
         "type": "Microsoft.Sql/servers/firewallRules",
         "properties": {"startIpAddress": f"20.{i}.0.0", "endIpAddress": f"20.{i}.255.255"}}
        for i in (1, 2)])
    found = azure_run(azure)
    f = found[("azure.sql.firewall_open_to_internet", server["id"].lower())]
    assert f.status == "fail"
    assert "131072" in f.message.replace(",", "")


def test_azure_storage_ip_rules_admitting_the_internet_are_not_a_deny(azure: ArmFake) -> None:
    """``StorageAccountList.json`` (storage, stable/2023-05-01) account ``sto8596`` with
    its ``networkAcls``; the default action is Deny but the IP rules admit everyone."""
    account = azure_fx.storage_account_from_example(SUB_A, "sto8596")
    account["properties"]["networkAcls"].update(defaultAction="Deny", ipRules=[
        {"value": "0.0.0.0/1", "action": "Allow"}, {"value": "128.0.0.0/1", "action": "Allow"}])
    azure.add(f"/subscriptions/{SUB_A}/providers/Microsoft.Storage/storageAccounts", account)
    found = azure_run(azure)
    f = found[("azure.storage.default_network_access_deny", account["id"].lower())]
    assert f.status == "fail"
    assert "0.0.0.0/1" in f.message


# --------------------------------------------------------------------------- Google Cloud


@pytest.fixture
def gcp(gcp_fake: GcpFake, sa_key_material: ServiceAccountKey,
        monkeypatch: pytest.MonkeyPatch) -> GcpFake:
    monkeypatch.setenv("ANNEXA_TEST_GCP_KEY", sa_key_material.json)
    gcp_fake.add_project(PROJECT, 4242, "organizations/100")
    return gcp_fake


def gcp_run(fake: GcpFake) -> dict[tuple[str, str], Finding]:
    options = {
        "auth": "service_account_key", "service_account_key": {"env": "ANNEXA_TEST_GCP_KEY"},
        "oauth_url": f"{fake.url}/token", "project_ids": [PROJECT],
        "read_hierarchy_policies": False, "resource_manager_transport": "rest",
        "resource_manager_endpoint": fake.url, "resource_manager_retry_timeout": 0,
        "endpoints": fake.endpoints(), "kms_locations": ["global"],
        "http": {"max_attempts": 2, "retry_min_wait": 0},
    }
    cfg = ConnectorConfig(type="gcp", name="gcp-shapes", options=options)
    found = run(LoadedConnector(cfg, GcpConnector, GcpOptions.model_validate(options)))
    assert fake.schema_violations == []
    return found


def _firewalls(fake: GcpFake, *rules: dict[str, Any]) -> None:
    """A ``FirewallList`` (compute.v1 discovery document) of ``rules``."""
    base = f"https://www.googleapis.com/compute/v1/projects/{PROJECT}"
    fake.put(f"/compute/v1/projects/{PROJECT}/global/firewalls", {
        "kind": "compute#firewallList", "id": f"projects/{PROJECT}/global/firewalls",
        "selfLink": f"{base}/global/firewalls",
        "items": [{"kind": "compute#firewall", "id": str(1000 + i),
                   "creationTimestamp": "2024-02-01T10:00:00.000-08:00",
                   "network": f"{base}/global/networks/prod", "priority": 1000,
                   "direction": "INGRESS", "disabled": False,
                   "logConfig": {"enable": False},
                   "selfLink": f"{base}/global/firewalls/{r['name']}", **r}
                  for i, r in enumerate(rules)],
    })


def _firewall_verdicts(fake: GcpFake, name: str) -> dict[str, tuple[str, str]]:
    found = gcp_run(fake)
    return {c.rsplit(".", 1)[1]: (f.status, f.message) for (c, r), f in found.items()
            if c.startswith("gcp.network.") and r == f"prod/{name}"}


def test_gcp_firewall_protocol_given_as_a_number(gcp: GcpFake) -> None:
    _firewalls(gcp, {"name": "ssh-by-number", "sourceRanges": ["0.0.0.0/0"],
                     "allowed": [{"IPProtocol": "6", "ports": ["22"]}]})
    got = _firewall_verdicts(gcp, "ssh-by-number")
    assert got["ssh_open_to_internet"] == (
        "fail", "Rule ssh-by-number allows SSH (TCP 22) from the internet (0.0.0.0/0)")


def test_gcp_firewall_sources_covering_the_internet_in_halves(gcp: GcpFake) -> None:
    _firewalls(gcp, {"name": "rdp-halves", "sourceRanges": ["0.0.0.0/1", "128.0.0.0/1"],
                     "allowed": [{"IPProtocol": "tcp", "ports": ["3389"]}]})
    assert _firewall_verdicts(gcp, "rdp-halves")["rdp_open_to_internet"][0] == "fail"


def test_gcp_firewall_1_to_65535_is_every_port(gcp: GcpFake) -> None:
    _firewalls(gcp, {"name": "wide", "sourceRanges": ["::/0"],
                     "allowed": [{"IPProtocol": "udp", "ports": ["1-65535"]}]})
    got = _firewall_verdicts(gcp, "wide")
    assert got["all_ports_open_to_internet"][0] == "fail"
    assert got["ssh_open_to_internet"][0] == "pass"  # UDP only


def test_gcp_sink_whose_exclusions_drop_everything_exports_nothing(gcp: GcpFake) -> None:
    """``ListSinksResponse`` / ``LogSink`` (logging.v2): a sink without a filter whose
    ``exclusions[]`` drop every entry ("Log entries that match any of these exclusion
    filters will not be exported")."""
    gcp.put(f"/v2/projects/{PROJECT}/sinks", {"sinks": [{
        "name": "to-archive", "destination": "storage.googleapis.com/acme-archive",
        "writerIdentity": "serviceAccount:service-4242@gcp-sa-logging.iam.gserviceaccount.com",
        "createTime": "2024-01-01T00:00:00Z", "updateTime": "2024-06-01T00:00:00Z",
        "exclusions": [{"name": "everything", "filter": "severity>=DEFAULT",
                        "description": "cost saving", "disabled": False,
                        "createTime": "2024-06-01T00:00:00Z",
                        "updateTime": "2024-06-01T00:00:00Z"}],
    }]})
    found = gcp_run(gcp)
    f = found[("gcp.logging.sink_all_logs", f"projects/{PROJECT}/sinks")]
    assert f.status == "fail"
    assert "everything" in f.message


def test_gcp_owner_granted_to_a_whole_domain(gcp: GcpFake) -> None:
    """``Policy`` (cloudresourcemanager.v3): ``domain:`` and workforce-pool members are
    people too."""
    gcp.policies[f"projects/{PROJECT}"] = {"version": 3, "etag": "BwYjU2z3xAE=", "bindings": [
        {"role": "roles/owner", "members": ["domain:acme.example"]},
        {"role": "roles/editor", "members": [
            "principalSet://iam.googleapis.com/locations/global/workforcePools/staff/*"]},
    ]}
    found = gcp_run(gcp)
    f = found[("gcp.iam.user_no_primitive_roles", f"projects/{PROJECT}")]
    assert f.status == "fail"
    assert "domain:acme.example has roles/owner" in f.message
    assert "workforcePools/staff/* has roles/editor" in f.message


def test_gcp_sql_authorised_networks_are_united(gcp: GcpFake) -> None:
    """``InstancesListResponse`` / ``IpConfiguration.authorizedNetworks`` (sqladmin.v1):
    two /9 networks together admit as many public addresses as a /8."""
    inst = gcp_fx.sql_instance(PROJECT, "pg-halves", public=True,
                               networks=["20.0.0.0/9", "20.128.0.0/9"])
    gcp.put_list(f"/v1/projects/{PROJECT}/instances", "items", [inst])
    found = gcp_run(gcp)
    assert found[("gcp.sql.firewall_open_to_internet", "pg-halves")].status == "fail"

"""The Azure connector against a fake Azure Resource Manager on 127.0.0.1.

The fake (tests/azure_fixtures.py) is a real HTTP(S) server answering ARM's shapes:
``value``/``nextLink`` pages, 403 ``AuthorizationFailed`` for a denied subscription,
404 for absent documents, and the Entra token endpoint for the real
``azure.identity.ClientSecretCredential`` over TLS (trustme CA). Most tests use a static
credential (any object with ``get_token``); the connector's HTTP layer, paginator,
checks and the run engine are the real ones.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from collector.config import AnnexaConfig, ConnectorConfig, LoadedConnector, Settings
from collector.runner import run_connector
from connectors.azure import (
    ACTIONS,
    AzureConnector,
    AzureOptions,
    monitor,
    network,
    recoveryservices,
)
from connectors.http import HttpOptions
from core.checks import REGISTRY, evaluate
from core.connector import CollectContext
from core.records import Coverage, Evidence, Record
from mappings.loader import load_mappings
from store.queries import findings_at
from tests import azure_fixtures as fx
from tests.azure_fixtures import (
    ARM_TOKEN,
    CLIENT_ID,
    CLIENT_SECRET,
    SUB_A,
    SUB_B,
    SUB_C,
    SUB_DENIED,
    TENANT,
    ArmFake,
    StaticCredential,
    add_bad_subscription,
    add_good_subscription,
    build_estate,
    collect_all,
    nsg,
    nsg_rule,
    storage_account,
)

# Fixtures used here (pytest finds them as module attributes).
arm_fake = fx.arm_fake
arm_tls_fake = fx.arm_tls_fake
tls_ca = fx.tls_ca

ROOT = Path(__file__).resolve().parent.parent
FAST = HttpOptions(max_attempts=3, retry_min_wait=0, retry_max_wait=0.01, timeout=5,
                   connect_timeout=2)
SERVICES = {"storage", "network", "security", "monitor", "keyvault", "sql", "compute",
            "recoveryservices", "locks", "governance", "gateway", "consumption", "policy"}


def connector(fake: ArmFake, credential: Any = None, **options: Any) -> AzureConnector:
    opts = AzureOptions(arm_url=fake.url, http=FAST, **options)
    return AzureConnector("azure-test", opts, credential=credential or StaticCredential())


def judge(records: list[Record]) -> dict[tuple[str, str], str]:
    """(check id, resource id) → status for every check on every evidence."""
    out: dict[tuple[str, str], str] = {}
    for r in records:
        if isinstance(r, Evidence):
            for f in evaluate(r, REGISTRY.for_type(r.resource_type), {}):
                out[(f.check_id, f.resource_id)] = f.status
    return out


def coverage(records: list[Record]) -> dict[tuple[str, str], Coverage]:
    return {(c.scope, c.service): c for c in records if isinstance(c, Coverage)}


# --------------------------------------------------------------------------- estate


@pytest.mark.clock  # ages of findings and keys are judged against now
def test_planted_misconfigurations_fail_exactly_their_checks(arm_fake: ArmFake) -> None:
    estate = build_estate(arm_fake)
    records = collect_all(connector(arm_fake))
    verdicts = judge(records)
    failing = {k for k, status in verdicts.items() if status == "fail"}
    assert failing == estate.expected_failures
    assert "error" not in verdicts.values()
    # Every Azure check ran, failed where planted and passed somewhere else.
    ids = {c.id for c in AzureConnector.checks()}
    assert len(ids) >= 20
    assert {c for c, _ in failing} == ids
    assert {c for (c, _), s in verdicts.items() if s in ("pass", "not_applicable")} == ids


def test_forbidden_subscription_is_an_error_for_that_scope_only(arm_fake: ArmFake) -> None:
    build_estate(arm_fake)
    cov = coverage(collect_all(connector(arm_fake)))
    bad = {k for k, c in cov.items() if not c.ok}
    assert bad == {(SUB_DENIED, s) for s in SERVICES}
    assert all("HTTP 403" in cov[k].error for k in bad)
    for sub in (SUB_A, SUB_B, SUB_C):
        assert all(cov[(sub, s)].ok for s in SERVICES)
    assert cov[("azure-test", "*")].ok  # discovery itself succeeded (no tenant_id given)


def test_discovery_follows_next_link_and_skips_unreadable_subscriptions(
    arm_fake: ArmFake,
) -> None:
    arm_fake.page_size = 1
    arm_fake.add_subscription(SUB_A, "a")
    arm_fake.add_subscription(SUB_B, "b")
    arm_fake.add_subscription(SUB_C, "gone", state="Disabled")
    c = connector(arm_fake)
    records = collect_all(c)
    assert [s.id for s in c.subscriptions] == [SUB_A, SUB_B]
    listing = [r for r in arm_fake.requests if r.path == "/subscriptions"]
    assert len(listing) == 3
    assert [r.query.get("$skiptoken") for r in listing] == [None, ["1"], ["2"]]
    assert {r.scope for r in records if isinstance(r, Coverage) and r.service != "*"} == {
        SUB_A, SUB_B}


def test_resource_lists_follow_next_link(arm_fake: ArmFake) -> None:
    estate = build_estate(arm_fake)
    records = collect_all(connector(arm_fake, subscriptions=[SUB_B]))
    accounts = {r.resource_id for r in records
                if isinstance(r, Evidence) and r.resource_type == "azure.storage.account"}
    assert len(accounts) == 7  # four pages of two
    pages = [r.query.get("$skiptoken", ["0"])[0] for r in arm_fake.requests
             if r.path.endswith("Microsoft.Storage/storageAccounts")]
    assert pages == ["0", "2", "4", "6"]
    # Configured subscriptions: no discovery call at all; the scope opened.
    assert "/subscriptions" not in arm_fake.paths()
    assert coverage(records)[(SUB_B, "*")].ok
    assert estate.expected_failures  # the estate is the planted one


def test_every_request_is_authorised_with_the_credential_token(arm_fake: ArmFake) -> None:
    build_estate(arm_fake)
    cred = StaticCredential()
    collect_all(connector(arm_fake, credential=cred))
    assert arm_fake.requests
    assert {r.authorization for r in arm_fake.requests} == {f"Bearer {ARM_TOKEN}"}
    assert cred.scopes and set(cred.scopes) == {(f"{arm_fake.url}/.default",)}
    assert cred.calls == 1  # cached until shortly before it expires


def test_sovereign_cloud_token_scope_is_configurable(arm_fake: ArmFake) -> None:
    arm_fake.add_subscription(SUB_A, "a")
    cred = StaticCredential()
    collect_all(connector(arm_fake, credential=cred,
                          arm_scope="https://management.usgovcloudapi.net/.default"))
    assert set(cred.scopes) == {("https://management.usgovcloudapi.net/.default",)}


def test_expiring_token_is_refreshed(arm_fake: ArmFake) -> None:
    arm_fake.add_subscription(SUB_A, "a")
    cred = StaticCredential(expires_in=60)  # inside the refresh margin: ask every time
    collect_all(connector(arm_fake, credential=cred, max_workers=1))
    assert cred.calls == len(arm_fake.requests) + 1


def test_client_secret_credential_over_tls(
    arm_tls_fake: ArmFake, tls_ca: tuple[Any, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real ClientSecretCredential: OpenID discovery and the token endpoint on
    https://127.0.0.1, then ARM over TLS with the token it obtained."""
    _, ca_path = tls_ca
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(ca_path))
    monkeypatch.setenv("ANNEXA_TEST_AZURE_SECRET", CLIENT_SECRET)
    fake = arm_tls_fake
    add_good_subscription_only(fake)
    opts = AzureOptions(
        auth="client_secret",
        tenant_id=TENANT,
        client_id=CLIENT_ID,
        client_secret={"env": "ANNEXA_TEST_AZURE_SECRET"},
        authority=fake.url,
        disable_instance_discovery=True,
        arm_url=fake.url,
        http=HttpOptions(ca_bundle=str(ca_path), max_attempts=2, retry_min_wait=0),
    )
    records = list(AzureConnector("az-tls", opts).collect(CollectContext(run_id="t")))
    cov = coverage(records)
    assert all(c.ok for c in cov.values()), [c for c in cov.values() if not c.ok]
    assert {(SUB_A, s) for s in SERVICES} <= set(cov)
    [grant] = fake.token_requests
    assert grant["grant_type"] == ["client_credentials"]
    assert grant["client_id"] == [CLIENT_ID]
    assert grant["scope"] == [f"{fake.url}/.default"]
    arm_calls = [r for r in fake.requests if r.path.startswith("/subscriptions")]
    assert arm_calls and {r.authorization for r in arm_calls} == {f"Bearer {ARM_TOKEN}"}
    assert any(isinstance(r, Evidence) for r in records)
    assert CLIENT_SECRET not in repr(records) and ARM_TOKEN not in repr(records)


def add_good_subscription_only(fake: ArmFake) -> None:
    from tests.azure_fixtures import Estate

    add_good_subscription(Estate(fake), SUB_A, "prod-a", prefix="a")


def test_wrong_client_secret_is_one_clear_error_per_scope(
    arm_tls_fake: ArmFake, tls_ca: tuple[Any, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, ca_path = tls_ca
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(ca_path))
    monkeypatch.setenv("ANNEXA_TEST_AZURE_SECRET", "wrong-secret-value")
    fake = arm_tls_fake
    opts = AzureOptions(
        auth="client_secret", tenant_id=TENANT, client_id=CLIENT_ID,
        client_secret={"env": "ANNEXA_TEST_AZURE_SECRET"}, authority=fake.url,
        disable_instance_discovery=True, arm_url=fake.url, subscriptions=[SUB_A, SUB_B],
        http=HttpOptions(ca_bundle=str(ca_path), max_attempts=1),
    )
    records = list(AzureConnector("az-tls", opts).collect(CollectContext(run_id="t")))
    assert [(r.scope, r.service, r.ok) for r in records] == [
        (SUB_A, "*", False), (SUB_B, "*", False)]
    assert "ClientAuthenticationError" in records[0].error and "AADSTS7000215" in records[0].error
    assert "wrong-secret-value" not in records[0].error
    assert not [r for r in fake.requests if r.path.startswith("/subscriptions")]


def test_missing_secret_is_a_scope_error(arm_fake: ArmFake) -> None:
    opts = AzureOptions(auth="client_secret", tenant_id=TENANT, client_id=CLIENT_ID,
                        client_secret={"env": "ANNEXA_TEST_UNSET_VARIABLE"},
                        arm_url=arm_fake.url, http=FAST)
    records = list(AzureConnector("az", opts).collect(CollectContext(run_id="t")))
    assert [(r.scope, r.service, r.ok) for r in records] == [(TENANT, "*", False)]
    assert "ANNEXA_TEST_UNSET_VARIABLE" in records[0].error


# --------------------------------------------------------------------------- failures


def test_throttling_is_retried_honouring_retry_after(arm_fake: ArmFake) -> None:
    arm_fake.add_subscription(SUB_A, "a")
    arm_fake.add(f"/subscriptions/{SUB_A}/providers/Microsoft.Storage/storageAccounts",
                 storage_account(SUB_A, "throttled"))
    fault = arm_fake.fault(r"Microsoft\.Storage/storageAccounts$", 429,
                           code="TooManyRequests", times=2, headers={"Retry-After": "0"})
    records = collect_all(connector(arm_fake))
    assert fault.hits == 2
    assert coverage(records)[(SUB_A, "storage")].ok
    assert any(isinstance(r, Evidence) and r.resource_type == "azure.storage.account"
               for r in records)


def test_persistent_server_error_fails_only_that_unit(arm_fake: ArmFake) -> None:
    build_estate(arm_fake)
    arm_fake.fault(rf"{SUB_A}/providers/Microsoft.KeyVault/vaults$", 503, code="Unavailable")
    cov = coverage(collect_all(connector(arm_fake, subscriptions=[SUB_A, SUB_B])))
    assert {k for k, c in cov.items() if not c.ok} == {(SUB_A, "keyvault")}
    assert "503" in cov[(SUB_A, "keyvault")].error
    assert "3 attempt" in cov[(SUB_A, "keyvault")].error


def test_unreadable_detail_makes_only_its_checks_errors(arm_fake: ArmFake) -> None:
    build_estate(arm_fake)
    arm_fake.fault(r"b-sql-open/auditingSettings/default$", 403, code="AuthorizationFailed")
    records = collect_all(connector(arm_fake, subscriptions=[SUB_B]))
    assert coverage(records)[(SUB_B, "sql")].ok
    [server] = [r for r in records if isinstance(r, Evidence)
                and r.resource_type == "azure.sql.server" and "b-sql-open" in r.resource_id]
    assert "403" in server.payload["_errors"]["auditing"]
    verdicts = {k[0]: v for k, v in judge([server]).items()}
    assert verdicts["azure.sql.auditing_enabled"] == "error"
    assert verdicts["azure.sql.minimum_tls_version"] == "fail"  # still judged


def test_cancelled_run_reads_nothing(arm_fake: ArmFake) -> None:
    build_estate(arm_fake)
    ctx = CollectContext(run_id="t")
    ctx.cancel_event.set()
    records = list(connector(arm_fake, subscriptions=[SUB_A]).collect(ctx))
    assert not [r for r in records if isinstance(r, Evidence)]
    assert not [r for r in records if isinstance(r, Coverage) and r.service != "*"]


# --------------------------------------------------------------------------- evidence


def test_evidence_is_normalised_and_holds_no_secrets(arm_fake: ArmFake) -> None:
    build_estate(arm_fake)
    records = [r for r in collect_all(connector(arm_fake)) if isinstance(r, Evidence)]
    by_type: dict[str, list[Evidence]] = {}
    for r in records:
        by_type.setdefault(r.resource_type, []).append(r)
        assert r.resource_id == r.resource_id.lower()
        assert r.scope in (SUB_A, SUB_B, SUB_C)
        assert ARM_TOKEN not in r.body()
    vm = by_type["azure.compute.virtual_machine"][0]
    assert "osProfile" not in vm.payload["properties"]
    assert vm.region == "westeurope"
    kv = by_type["azure.keyvault.vault"][0]
    assert "accessPolicies" not in kv.payload["properties"]
    assert kv.payload["properties"]["accessPolicyCount"] == 1
    pricings = by_type["azure.security.pricings"][0].payload["pricings"]
    assert all("freeTrialRemainingTime" not in p for p in pricings)
    nsgs = by_type["azure.network.nsg"]
    assert all("defaultSecurityRules" not in n.payload["properties"] for n in nsgs)
    assert all("etag" not in n.body() for n in nsgs)
    # A second run of the unchanged estate gives identical evidence (no new versions).
    again = {r.key: r.content_hash() for r in collect_all(connector(arm_fake))
             if isinstance(r, Evidence)}
    assert again == {r.key: r.content_hash() for r in records}


def test_critical_tag_marks_more_resources_critical(arm_fake: ArmFake) -> None:
    arm_fake.add_subscription(SUB_A, "a")
    tagged = storage_account(SUB_A, "tagged", rg="rg-x", tags={"criticality": "high"})
    arm_fake.add(f"/subscriptions/{SUB_A}/providers/Microsoft.Storage/storageAccounts", tagged)
    arm_fake.add(f"/subscriptions/{SUB_A}/providers/Microsoft.Network/networkSecurityGroups",
                 nsg(SUB_A, "tagged-nsg", []) | {"tags": {"criticality": "high"}})
    records = collect_all(connector(arm_fake, critical_resource_types=[],
                                    critical_tag="criticality=high"))
    crit = {r.payload["name"]: r.payload for r in records if isinstance(r, Evidence)
            and r.resource_type == "azure.locks.critical_resource"}
    assert set(crit) == {"tagged", "tagged-nsg"}
    assert crit["tagged"]["criticalBecause"] == ["tag"]
    flt = [r.query["$filter"][0] for r in arm_fake.requests if r.path.endswith("/resources")]
    assert flt == ["tagName eq 'criticality' and tagValue eq 'high'"]


# --------------------------------------------------------------------------- the store


def _settings(db_url: str, options: dict[str, Any], name: str = "azure-prod") -> Settings:
    cfg = ConnectorConfig(type="azure", name=name, options=options)
    settings = Settings(AnnexaConfig(database={"url": db_url}, connectors=[cfg]), None)
    settings.connectors = [LoadedConnector(cfg, AzureConnector,
                                           AzureOptions.model_validate(options))]
    return settings


@pytest.mark.clock  # ages of findings and keys are judged against now
def test_two_subscriptions_discovered_and_collected_in_one_run(
    engine: Engine, db_url: str, arm_tls_fake: ArmFake, tls_ca: tuple[Any, Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """config options → run engine → store, with the real credential over TLS; then a
    403 on one subscription turns only that subscription's checks into errors."""
    from tests.azure_fixtures import Estate

    _, ca_path = tls_ca
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(ca_path))
    monkeypatch.setenv("ANNEXA_TEST_AZURE_SECRET", CLIENT_SECRET)
    fake = arm_tls_fake
    estate = Estate(fake)
    add_good_subscription(estate, SUB_A, "prod-a", prefix="a")
    add_bad_subscription(estate, SUB_B, "prod-b")
    options = {
        "auth": "client_secret", "tenant_id": TENANT, "client_id": CLIENT_ID,
        "client_secret": {"env": "ANNEXA_TEST_AZURE_SECRET"}, "authority": fake.url,
        "disable_instance_discovery": True, "arm_url": fake.url,
        "http": {"ca_bundle": str(ca_path), "max_attempts": 2, "retry_min_wait": 0},
    }
    settings = _settings(db_url, options)
    index = load_mappings()
    summary = run_connector(settings, settings.connectors[0], engine, index)
    assert summary.status == "succeeded", summary.errors
    with engine.connect() as conn:
        rows = list(findings_at(conn, source="azure-prod"))
    assert {r["scope"] for r in rows} == {SUB_A, SUB_B}
    failing = {(r["check_id"], r["resource_id"]) for r in rows if r["status"] == "fail"}
    assert failing == estate.expected_failures
    assert not [r for r in rows if r["status"] == "error"]

    # Second run: subscription B now answers 403 to everything.
    fake.denied.add(SUB_B)
    summary = run_connector(settings, settings.connectors[0], engine, index)
    assert summary.status == "partial"
    with engine.connect() as conn:
        rows = list(findings_at(conn, source="azure-prod"))
    errors = [r for r in rows if r["status"] == "error"]
    assert errors and {r["scope"] for r in errors} == {SUB_B}
    assert {r["check_id"] for r in errors} == {c.id for c in AzureConnector.checks()}
    # Nothing of B was closed by absence; A is as it was.
    b_fails = {(r["check_id"], r["resource_id"]) for r in rows
               if r["status"] == "fail" and r["scope"] == SUB_B}
    assert b_fails == {f for f in estate.expected_failures if SUB_B in f[1]}
    assert not [r for r in rows if r["scope"] == SUB_A and r["status"] != "pass"
                and r["status"] != "not_applicable"]


# --------------------------------------------------------------------------- checks


def _nsg(*rules: dict[str, Any]) -> dict[str, Any]:
    return nsg(SUB_A, "n", list(rules))


@pytest.mark.parametrize(
    ("rules", "ssh", "rdp", "every"),
    [
        ([], "pass", "pass", "pass"),
        ([nsg_rule("r", 100, "22")], "fail", "pass", "pass"),
        ([nsg_rule("r", 100, "20-25", "Internet")], "fail", "pass", "pass"),
        ([nsg_rule("r", 100, "22", "10.0.0.0/8")], "pass", "pass", "pass"),
        ([nsg_rule("r", 100, "22", protocol="Udp")], "pass", "pass", "pass"),
        ([nsg_rule("r", 100, "*", "::/0", protocol="*")], "fail", "fail", "fail"),
        ([nsg_rule("r", 100, "*", protocol="Udp")], "pass", "pass", "fail"),
        ([nsg_rule("d", 100, "*", access="Deny", protocol="*"), nsg_rule("a", 200, "*")],
         "pass", "pass", "pass"),
        ([nsg_rule("a", 300, "3389"), nsg_rule("d", 100, "3389", "Internet", access="Deny")],
         "pass", "pass", "pass"),
        ([nsg_rule("a", 100, "3389", direction="Outbound")], "pass", "pass", "pass"),
    ],
)
def test_nsg_rules_are_read_in_priority_order(
    rules: list[dict[str, Any]], ssh: str, rdp: str, every: str
) -> None:
    ev = Evidence(SUB_A, "x", network.NSG, "n", _nsg(*rules))
    got = {f.check_id.rsplit(".", 1)[1]: f.status
           for f in evaluate(ev, REGISTRY.for_type(network.NSG), {})}
    assert got == {"ssh_open_to_internet": ssh, "rdp_open_to_internet": rdp,
                   "all_ports_open_to_internet": every}


def test_nsg_rule_lists_of_prefixes_and_ports() -> None:
    rule = nsg_rule("r", 100, "")
    rule["properties"].update(sourceAddressPrefix="", sourceAddressPrefixes=["10.0.0.0/8",
                              "0.0.0.0/0"], destinationPortRange="",
                              destinationPortRanges=["80", "3389"])
    ev = Evidence(SUB_A, "x", network.NSG, "n", _nsg(rule))
    got = {f.check_id: f.status for f in evaluate(ev, REGISTRY.for_type(network.NSG), {})}
    assert got["azure.network.rdp_open_to_internet"] == "fail"
    assert got["azure.network.ssh_open_to_internet"] == "pass"


def test_check_parameters_change_verdicts() -> None:
    spec = REGISTRY.get("azure.security.defender_plans_enabled")
    payload = {"pricings": [{"name": "VirtualMachines", "pricingTier": "Standard"},
                            {"name": "Containers", "pricingTier": "Free"}]}
    assert spec.func(payload, spec.params_with({"required_plans": ["VirtualMachines"]})
                     ).status == "pass"
    verdict = spec.func(payload, spec.params_with({"required_plans": ["Containers", "Dns"]}))
    assert verdict.status == "fail" and "Containers (Free)" in verdict.message
    assert "Dns (not offered" in verdict.message
    tls = REGISTRY.get("azure.storage.minimum_tls_version")
    acct = {"properties": {"minimumTlsVersion": "TLS1_2"}}
    assert tls.func(acct, tls.params_with({"min_version": "TLS1_3"})).status == "fail"
    disk = REGISTRY.get("azure.compute.volume_encrypted")
    platform = {"properties": {"encryption": {"type": "EncryptionAtRestWithPlatformKey"}}}
    assert disk.func(platform, disk.parameters).status == "pass"
    assert disk.func(platform, disk.params_with({"require_customer_managed_key": True})
                     ).status == "fail"


def test_retention_interpretation() -> None:
    assert recoveryservices.retention_days(
        {"retentionDuration": {"count": 2, "durationType": "Months"}}) == 60
    assert recoveryservices.retention_days({
        "dailySchedule": {"retentionDuration": {"count": 7, "durationType": "Days"}},
        "yearlySchedule": {"retentionDuration": {"count": 1, "durationType": "Years"}},
    }) == 365
    policy = {"properties": {"subProtectionPolicy": [
        {"policyType": "Log", "retentionPolicy": {
            "retentionDuration": {"count": 400, "durationType": "Days"}}},
        {"policyType": "Full", "retentionPolicy": {
            "retentionDuration": {"count": 14, "durationType": "Days"}}},
    ]}}
    assert recoveryservices.policy_retention_days(policy) == 14
    assert monitor.storage_delete_after_days(None) is None
    rules = {"properties": {"policy": {"rules": [
        {"enabled": True, "definition": {"filters": {"prefixMatch": ["other/"]},
                                         "actions": {"baseBlob": {"delete": {
                                             "daysAfterModificationGreaterThan": 1}}}}},
        {"enabled": False, "definition": {"actions": {"baseBlob": {"delete": {
            "daysAfterModificationGreaterThan": 2}}}}},
    ]}}}
    assert monitor.storage_delete_after_days(rules) is None


def test_unreadable_retention_destination_is_an_error_not_a_fail() -> None:
    spec = REGISTRY.get("azure.monitor.activity_log_retention")
    ws = "/subscriptions/x/resourcegroups/r/providers/microsoft.operationalinsights/workspaces/w"
    payload = {
        "diagnosticSettings": [{"name": "d", "workspaceId": ws, "logs": [
            {"categoryGroup": "allLogs", "enabled": True}]}],
        "destinations": {ws: {"kind": "workspace", "error": "HTTP 403"}},
    }
    ev = Evidence(SUB_A, "global", monitor.ACTIVITY_LOG, "x", payload)
    [f] = evaluate(ev, [spec], {})
    assert f.status == "error" and "403" in f.message


# --------------------------------------------------------------------------- config & docs


def test_options_validation() -> None:
    with pytest.raises(ValueError, match="auth = 'client_secret' needs tenant_id, client_id"):
        AzureOptions(auth="client_secret")
    with pytest.raises(ValueError, match="certificate_path"):
        AzureOptions(auth="certificate", tenant_id=TENANT, client_id=CLIENT_ID)
    with pytest.raises(ValueError, match="not subscription ids"):
        AzureOptions(subscriptions=["prod"])
    with pytest.raises(ValueError, match="loopback"):
        AzureOptions(arm_url="http://management.example.com")
    with pytest.raises(ValueError, match="azure-identity refuses http"):
        AzureOptions(authority="http://127.0.0.1:1")
    with pytest.raises(ValueError, match="name=value"):
        AzureOptions(critical_tag="critical")
    with pytest.raises(ValueError, match="Provider/type"):
        AzureOptions(critical_resource_types=["vaults"])
    with pytest.raises(ValueError, match="SecretRef"):
        AzureOptions(auth="client_secret", tenant_id=TENANT, client_id=CLIENT_ID,
                     client_secret="inline-secret")
    o = AzureOptions(subscriptions=[SUB_A.upper()], arm_url="https://management.chinacloudapi.cn/")
    assert o.subscriptions == [SUB_A]
    assert o.scope_for_token == "https://management.chinacloudapi.cn/.default"


def test_credential_kinds_build_azure_identity_credentials(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from azure import identity

    from connectors.azure.credentials import build_credential

    monkeypatch.setenv("ANNEXA_TEST_AZURE_SECRET", CLIENT_SECRET)
    token_file = tmp_path / "token"
    token_file.write_text("eyJhbGciOi.fake.jwt")
    cases = {
        "client_secret": (identity.ClientSecretCredential,
                          {"tenant_id": TENANT, "client_id": CLIENT_ID,
                           "client_secret": {"env": "ANNEXA_TEST_AZURE_SECRET"}}),
        "managed_identity": (identity.ManagedIdentityCredential,
                             {"managed_identity_client_id": CLIENT_ID}),
        "workload_identity": (identity.WorkloadIdentityCredential,
                              {"tenant_id": TENANT, "client_id": CLIENT_ID,
                               "workload_identity_file": str(token_file)}),
        "default": (identity.DefaultAzureCredential, {}),
    }
    for kind, (cls, extra) in cases.items():
        cred = build_credential(AzureOptions(auth=kind, **extra))
        assert isinstance(cred, cls), kind
    with pytest.raises((ValueError, OSError)):
        build_credential(AzureOptions(auth="certificate", tenant_id=TENANT,
                                      client_id=CLIENT_ID,
                                      certificate_path=str(tmp_path / "missing.pem")))


def test_permissions_document_lists_exactly_the_actions_used() -> None:
    text = (ROOT / "docs" / "permissions" / "azure.md").read_text(encoding="utf-8")
    block = text.split("```json", 1)[1].split("```", 1)[0]
    import json

    role = json.loads(block)
    assert sorted(role["Actions"]) == sorted(ACTIONS)
    assert all(a.endswith("/read") for a in ACTIONS)
    assert "Reader" in text


def test_mapping_links_every_check_with_a_rationale() -> None:
    import tomllib

    path = ROOT / "mappings" / "checks" / "azure.toml"
    doc = tomllib.loads(path.read_text(encoding="utf-8"))
    ids = {c.id for c in AzureConnector.checks()}
    linked = {link["check"] for link in doc["link"]}
    assert linked == ids
    assert all(len(link["rationale"]) > 20 for link in doc["link"])
    from collector.cli import known_checks

    index = load_mappings(known_checks=set(known_checks()) | {s.id for s in REGISTRY})
    assert all(index.controls_for(i) for i in ids)
    assert not [link for link in doc["link"]
                if link["control"] == "A.8.11" and "encrypt" in link["check"]]
    pairs = [(link["check"], link["control"]) for link in doc["link"]]
    assert len(pairs) == len(set(pairs))
    assert all(re.fullmatch(r"A\.[5-8]\.\d+", link["control"]) for link in doc["link"])


def test_check_names_match_the_other_clouds() -> None:
    azure = {c.id.split(".", 1)[1] for c in AzureConnector.checks()}
    assert {"network.ssh_open_to_internet", "network.rdp_open_to_internet",
            "network.all_ports_open_to_internet"} <= azure
    for spec in AzureConnector.checks():
        assert spec.rationale and spec.remediation and spec.title
        assert spec.resource_type.split(".")[1] in SERVICES


# --------------------------------------------------------------------------- new checks


def _judge(check_id: str, payload: dict[str, Any], **params: Any) -> tuple[str, str]:
    spec = REGISTRY.get(check_id)
    ev = Evidence(SUB_A, "global", spec.resource_type, "x", payload)
    [f] = evaluate(ev, [spec], {check_id: spec.params_with(params)})
    return f.status, f.message


@pytest.mark.clock
def test_assessment_sla_by_severity_judged_from_full_timestamps() -> None:
    from datetime import UTC, datetime, timedelta

    def ago(days: float) -> str:
        return (datetime.now(UTC) - timedelta(days=days)).isoformat()

    def unhealthy(sev: str | None, days: float) -> dict[str, Any]:
        return {"key": "k", "displayName": "Fix it", "severity": sev,
                "resourceId": "/subscriptions/s/resourcegroups/r/x/vm1",
                "statusChangeDate": ago(days)}

    check = "azure.security.assessments_within_sla"
    assert _judge(check, {"unhealthy": [unhealthy("High", 29.9)]})[0] == "pass"
    assert _judge(check, {"unhealthy": [unhealthy("High", 30.1)]})[0] == "fail"
    assert _judge(check, {"unhealthy": [unhealthy("Low", 170)]})[0] == "pass"
    # An unknown severity gets the strictest limit.
    status, message = _judge(check, {"unhealthy": [unhealthy(None, 31)]})
    assert status == "fail" and "unknown 'Fix it' on vm1 (31 days > 30)" in message
    assert _judge(check, {"unhealthy": [unhealthy("Low", 40)]},
                  max_age_days={"Low": 30})[0] == "fail"
    assert _judge(check, {"unhealthy": []}) == ("pass", "No open Defender for Cloud findings")
    assert _judge(check, {"_errors": {"unhealthy": "HTTP 403"}})[0] == "error"


def test_app_gateway_tls_policies() -> None:
    from connectors.azure.gateway import min_tls

    assert min_tls({"policyType": "Predefined", "policyName": "AppGwSslPolicy20150501"}) == \
        "TLSv1_0"
    assert min_tls({"policyType": "Predefined", "policyName": "AppGwSslPolicy20220101S"}) == \
        "TLSv1_2"
    assert min_tls({"policyType": "Custom", "minProtocolVersion": "TLSv1_1"}) == "TLSv1_1"
    assert min_tls({"disabledSslProtocols": ["TLSv1_0", "TLSv1_1"]}) == "TLSv1_2"
    assert min_tls(None) is None
    base = {"httpsListeners": 1, "sslPolicy": {"policyType": "Predefined",
                                               "policyName": "AppGwSslPolicy20220101"}}
    check = "azure.gateway.app_gateway_tls_policy"
    assert _judge(check, base)[0] == "pass"
    weak_profile = base | {"sslProfiles": [{"name": "legacy", "sslPolicy": {
        "policyType": "Predefined", "policyName": "AppGwSslPolicy20170401"}}]}
    assert _judge(check, weak_profile) == (
        "fail", "TLS below TLSv1_2 is accepted: SSL profile legacy: minimum TLSv1_1")
    assert _judge(check, base, min_version="TLSv1_3")[0] == "fail"
    assert _judge(check, {"httpsListeners": 0})[0] == "not_applicable"


def test_firewall_threat_intel_mode_defaults_to_alert() -> None:
    check = "azure.gateway.firewall_threat_intel_deny"
    assert _judge(check, {"firewallPolicy": None})[0] == "fail"
    assert _judge(check, {"firewallPolicy": None, "threatIntelMode": "Deny"})[0] == "pass"
    # A policy-managed firewall: the policy's mode applies, not the firewall's own.
    assert _judge(check, {"firewallPolicy": "p", "threatIntelMode": "Deny",
                          "policy": {"threatIntelMode": "Alert"}})[0] == "fail"
    assert _judge(check, {"firewallPolicy": "p", "_errors": {"policy": "HTTP 403"}})[0] == \
        "error"


def test_environment_separation_reads_every_tag_value() -> None:
    check = "azure.governance.environments_separated"
    sub = {"tags": {"Environment": "prod, test"}, "resourceGroups": []}
    status, message = _judge(check, sub)
    assert status == "fail" and "production" in message and "non-production" in message
    only = {"tags": {}, "resourceGroups": [{"name": "a", "tags": {"ENVIRONMENT": "PRD"}}]}
    assert _judge(check, only)[0] == "pass"
    assert _judge(check, {"tags": {}, "resourceGroups": []})[0] == "fail"
    assert _judge(check, {"tags": {"stage": "dev"}, "resourceGroups": []}, tag="stage")[0] == \
        "pass"


def test_management_group_placement() -> None:
    check = "azure.governance.subscription_in_management_group"
    root = {"name": TENANT, "displayName": "Tenant Root Group"}
    assert _judge(check, {"tenantId": TENANT, "managementGroups": [root]})[0] == "fail"
    status, message = _judge(check, {"tenantId": TENANT, "managementGroups": [
        {"name": "prod", "displayName": "Production"}, root]})
    assert (status, message) == ("pass", "The subscription sits in Tenant Root Group > "
                                 "Production")
    assert _judge(check, {"tenantId": TENANT, "managementGroups": None})[0] == "error"
    assert _judge(check, {"tenantId": TENANT,
                          "_errors": {"managementGroups": "HTTP 403"}})[0] == "error"


def test_unreadable_management_groups_make_only_placement_an_error(arm_fake: ArmFake) -> None:
    build_estate(arm_fake)
    arm_fake.fault(r"/providers/Microsoft\.Management/managementGroups/", 403,
                   code="AuthorizationFailed")
    records = collect_all(connector(arm_fake, subscriptions=[SUB_A, SUB_B]))
    verdicts = judge(records)
    for sub in (SUB_A, SUB_B):
        rid = f"/subscriptions/{sub}"
        assert verdicts[("azure.governance.subscription_in_management_group", rid)] == "error"
        assert verdicts[("azure.governance.subscription_tagged", rid)] in ("pass", "fail")
    # The tree is read once per tenant and the failure remembered, not retried per unit.
    tree_reads = [r for r in arm_fake.requests if "managementGroups" in r.path]
    assert len(tree_reads) == 1

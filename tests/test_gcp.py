"""The Google Cloud connector against a fake of Google Cloud on 127.0.0.1.

The real ``google-cloud-resource-manager`` client (REST transport) talks to the fake's
Resource Manager v3; the other APIs go through the real HTTP layer; the
service-account-key test runs google-auth's real JWT-bearer flow against the fake's
token endpoint (the assertion's signature is verified). See tests/gcp_fixtures.py.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from collector.config import AnnexaConfig, ConnectorConfig, LoadedConnector, Settings
from collector.runner import run_connector
from connectors.gcp import PERMISSIONS, GcpConnector, GcpOptions
from connectors.gcp import network as gcp_network
from connectors.gcp.resourcemanager import ResourceManager
from core.checks import REGISTRY, evaluate
from core.connector import CollectContext
from core.records import Coverage, Evidence, Record
from mappings.loader import load_mappings
from store.queries import findings_at
from tests import azure_fixtures as azure_fx
from tests import clock
from tests import gcp_fixtures as fx
from tests.configs import connector_table, secret_env, write_config
from tests.gcp_fixtures import (
    ENG,
    GCP_TOKEN,
    ORG,
    PROD,
    GcpFake,
    ServiceAccountKey,
    StaticTokenCredentials,
    build_estate,
    firewall,
)

# Fixtures used here (pytest finds them as module attributes).
gcp_fake = fx.gcp_fake
sa_key_material = fx.sa_key_material
arm_tls_fake = azure_fx.arm_tls_fake
tls_ca = azure_fx.tls_ca

ROOT = Path(__file__).resolve().parent.parent
PROJECT_SERVICES = {"iam", "logging", "storage", "network", "sql", "kms", "scc",
                    "governance", "dlp", "loadbalancing", "billing", "orgpolicy"}


def options(fake: GcpFake, **extra: Any) -> GcpOptions:
    return GcpOptions.model_validate(fx.fake_options(fake, **extra))


def collect(fake: GcpFake, **extra: Any) -> tuple[GcpConnector, list[Record]]:
    c = GcpConnector("gcp-test", options(fake, **extra), credentials=StaticTokenCredentials())
    return c, list(c.collect(CollectContext(run_id="t")))


def judge(records: list[Record]) -> dict[tuple[str, str], tuple[str, str]]:
    out = {}
    for r in records:
        if isinstance(r, Evidence):
            for f in evaluate(r, REGISTRY.for_type(r.resource_type), {}):
                out[(f.check_id, f.resource_id)] = (f.status, f.message)
    return out


def coverage(records: list[Record]) -> dict[tuple[str, str], Coverage]:
    return {(c.scope, c.service): c for c in records if isinstance(c, Coverage)}


def evidence_of(records: list[Record], rtype: str) -> dict[str, Evidence]:
    return {r.resource_id: r for r in records
            if isinstance(r, Evidence) and r.resource_type == rtype}


# --------------------------------------------------------------------------- estate


@pytest.mark.clock  # ages of findings and keys are judged against now
def test_planted_misconfigurations_fail_exactly_their_checks(gcp_fake: GcpFake) -> None:
    estate = build_estate(gcp_fake)
    _, records = collect(gcp_fake)
    verdicts = judge(records)
    failing = {k for k, (status, _) in verdicts.items() if status == "fail"}
    assert failing == estate.expected_failures
    assert not [(k, m) for k, (s, m) in verdicts.items() if s == "error"]
    ids = {c.id for c in GcpConnector.checks()}
    assert len(ids) >= 20
    assert {c for c, _ in failing} == ids
    assert {c for (c, _), (s, _) in verdicts.items() if s in ("pass", "not_applicable")} == ids


def test_fake_answers_match_googles_discovery_documents(gcp_fake: GcpFake) -> None:
    """Every answer the fake gives the connector is valid under the response schema of
    its method in the discovery documents of google-api-python-client (no property they
    do not define, types, formats, enums); the one API without a document there is
    named."""
    build_estate(gcp_fake)
    collect(gcp_fake)
    assert gcp_fake.schema_violations == []
    assert {u.split(":", 1)[0] for u in gcp_fake.unvalidated} == {"scc"}
    # The validator does catch drift.
    from tests.gcp_discovery import Discovery

    bad = firewall("p", "r", "n", ["0.0.0.0/0"], [{"IPProtocol": 6}]) | {"invented": True}
    found = Discovery("compute.v1").violations("FirewallList", {"items": [bad]})
    assert found == ["FirewallList.items[0].allowed[0].IPProtocol: expected a string, got 6",
                     "FirewallList.items[0]: property 'invented' is not in the schema"]


def test_member_kinds_cover_the_documented_principal_identifiers() -> None:
    from connectors.gcp.iam import PEOPLE_KINDS, WORKLOAD_KINDS, member_kind

    cases = {
        "user:alex@example.com": "user",
        "group:admins@example.com": "group",
        "domain:example.com": "domain",
        "serviceAccount:app@p.iam.gserviceaccount.com": "serviceAccount",
        "serviceAccount:p.svc.id.goog[ns/ksa]": "serviceAccount",
        "allUsers": "allUsers",
        "allAuthenticatedUsers": "allAuthenticatedUsers",
        "principal://iam.googleapis.com/locations/global/workforcePools/p/subject/raha":
            "workforceIdentity",
        "principalSet://iam.googleapis.com/locations/global/workforcePools/p/group/g":
            "workforceIdentity",
        "principalSet://iam.googleapis.com/locations/global/workforcePools/p/*":
            "workforceIdentity",
        "principal://iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/"
        "p/subject/s": "workloadIdentity",
        "principalSet://iam.googleapis.com/projects/1/locations/global/"
        "workloadIdentityPools/p/attribute.repo/x": "workloadIdentity",
        "principalSet://cloudresourcemanager.googleapis.com/folders/2/type/ServiceAccount":
            "serviceAccount",
        "principal://goog/subject/alex@example.com": "user",
        "principalSet://goog/group/admins@example.com": "group",
        "principalSet://goog/cloudIdentityCustomerId/C01abc": "domain",
        "principalSet://goog/public:all": "allUsers",
        "deleted:user:alex@example.com?uid=123": "deletedUser",
        "deleted:group:admins@example.com?uid=4": "deletedGroup",
        "deleted:serviceAccount:app@p.iam.gserviceaccount.com?uid=5":
            "deletedServiceAccount",
        "projectOwner:acme-prod": "projectRole",
        "projectViewer:acme-prod": "projectRole",
        "somethingNew:x": "unknown",
        "principal://example.org/x": "unknown",
    }
    assert {m: member_kind(m) for m in cases} == cases
    assert not set(PEOPLE_KINDS) & set(WORKLOAD_KINDS)
    assert set(cases.values()) <= set(PEOPLE_KINDS) | set(WORKLOAD_KINDS)


def test_forbidden_project_is_an_error_for_that_scope_only(gcp_fake: GcpFake) -> None:
    build_estate(gcp_fake)
    _, records = collect(gcp_fake)
    cov = coverage(records)
    bad = {k for k, c in cov.items() if not c.ok}
    assert bad == {("acme-denied", s) for s in PROJECT_SERVICES}
    assert all("403" in cov[k].error for k in bad)
    for scope in ("acme-good", "acme-bad", "acme-third"):
        assert all(cov[(scope, s)].ok for s in PROJECT_SERVICES)
    for node in (ORG, ENG, PROD):
        assert cov[(node, "iam")].ok
    assert cov[("gcp-test", "*")].ok


def test_hierarchy_is_discovered_with_paging(gcp_fake: GcpFake) -> None:
    gcp_fake.page_size = 1
    build_estate(gcp_fake)
    c, records = collect(gcp_fake)
    assert [p.id for p in c.projects] == ["acme-good", "acme-bad", "acme-third", "acme-denied"]
    assert set(c.nodes) == {ORG, ENG, PROD}
    searches = [r for r in gcp_fake.requests if r.path == "/v3/projects:search"]
    assert [r.query.get("pageToken") for r in searches] == [None, ["1"], ["2"], ["3"]]
    assert all(r.query["query"] == ["state:ACTIVE"] for r in searches)
    assert {tuple(r.query["parent"]) for r in gcp_fake.requests if r.path == "/v3/folders"} \
        == {(ORG,), (ENG,), (PROD,)}
    good = evidence_of(records, "gcp.iam.policy")["projects/acme-good"].payload
    assert good["ancestors"] == [PROD, ENG, ORG]
    assert good["inheritedAuditConfigs"][0]["resource"] == PROD
    # Each ancestor's policy was read once, although four projects share it.
    calls = [r.path for r in gcp_fake.requests if r.path.endswith(":getIamPolicy")]
    assert calls.count(f"/v3/{ENG}:getIamPolicy") == 1
    # Service accounts of acme-good come in two pages (page size 1: three pages).
    sa_pages = [r for r in gcp_fake.requests
                if r.path == "/iam/v1/projects/acme-good/serviceAccounts"]
    assert len(sa_pages) == 3
    assert len([k for k in evidence_of(records, "gcp.iam.service_account")
                if k.endswith("@acme-good.iam.gserviceaccount.com")]) == 3


def test_configured_projects_skip_search(gcp_fake: GcpFake) -> None:
    build_estate(gcp_fake)
    c, records = collect(gcp_fake, project_ids=["acme-good", "acme-nope1"],
                         read_hierarchy_policies=False, kms_locations=["europe-west1"])
    assert [p.id for p in c.projects] == ["acme-good"]
    assert "/v3/projects:search" not in gcp_fake.paths()
    assert "/v3/projects/acme-good" in gcp_fake.paths()
    cov = coverage(records)
    assert not cov[("acme-nope1", "*")].ok and "404" in cov[("acme-nope1", "*")].error
    assert not [p for p in gcp_fake.paths() if p.endswith("/locations")]  # kms_locations
    assert evidence_of(records, "gcp.kms.crypto_key")
    assert {s for s, _ in cov} == {"acme-good", "acme-nope1"}
    assert cov[("acme-good", "*")].ok  # closes an earlier scope-wide error


def test_every_request_carries_the_bearer_token(gcp_fake: GcpFake) -> None:
    build_estate(gcp_fake)
    collect(gcp_fake)
    assert {r.authorization for r in gcp_fake.requests} == {f"Bearer {GCP_TOKEN}"}
    rm_calls = [r for r in gcp_fake.requests if r.path.startswith("/v3/")]
    assert rm_calls and all(r.query.get("$alt") == ["json;enum-encoding=int"]
                            for r in rm_calls)


# --------------------------------------------------------------------------- failures


def test_resource_manager_outage_is_a_discovery_error(gcp_fake: GcpFake) -> None:
    build_estate(gcp_fake)
    gcp_fake.fault(r"^/v3/projects:search$", 503)
    _, records = collect(gcp_fake)
    assert [(r.scope, r.service, r.ok) for r in records] == [("gcp-test", "*", False)]
    assert "503" in records[0].error


def test_transient_resource_manager_error_is_retried(gcp_fake: GcpFake) -> None:
    build_estate(gcp_fake, denied=False)
    fault = gcp_fake.fault(r"^/v3/projects:search$", 503, times=1)
    _, records = collect(gcp_fake, resource_manager_retry_timeout=5)
    assert fault.hits == 1
    assert all(c.ok for c in coverage(records).values())


def test_unreadable_ancestor_policy_makes_inheritance_unknown(gcp_fake: GcpFake) -> None:
    build_estate(gcp_fake, denied=False)
    gcp_fake.fault(rf"^/v3/{ENG}:getIamPolicy$", 403)
    _, records = collect(gcp_fake)
    cov = coverage(records)
    assert {k for k, c in cov.items() if not c.ok} == {(ENG, "iam")}
    verdicts = judge(records)
    status, message = verdicts[("gcp.iam.data_access_audit_logs", "projects/acme-bad")]
    assert status == "error" and ENG in message
    # acme-good inherits a complete configuration from production: still a pass.
    assert verdicts[("gcp.iam.data_access_audit_logs", "projects/acme-good")][0] == "pass"
    assert verdicts[("gcp.iam.user_no_primitive_roles", "projects/acme-bad")][0] == "fail"


def test_unreadable_bucket_policy_makes_only_its_check_an_error(gcp_fake: GcpFake) -> None:
    build_estate(gcp_fake, denied=False)
    gcp_fake.fault(r"/b/acme-bad-public/iam$", 403)
    _, records = collect(gcp_fake, project_ids=["acme-bad"], read_hierarchy_policies=False)
    verdicts = judge(records)
    assert verdicts[("gcp.storage.bucket_not_public", "acme-bad-public")][0] == "error"
    assert verdicts[("gcp.storage.bucket_uniform_access", "acme-bad-public")][0] == "fail"
    assert coverage(records)[("acme-bad", "storage")].ok


def test_api_throttling_is_retried(gcp_fake: GcpFake) -> None:
    build_estate(gcp_fake, denied=False)
    fault = gcp_fake.fault(r"/sqladmin/v1/projects/acme-bad/instances$", 429, times=1)
    _, records = collect(gcp_fake, project_ids=["acme-bad"], read_hierarchy_policies=False)
    assert fault.hits == 1
    assert coverage(records)[("acme-bad", "sql")].ok
    assert "mysql-open" in evidence_of(records, "gcp.sql.instance")


def test_cancelled_run_reads_nothing(gcp_fake: GcpFake) -> None:
    build_estate(gcp_fake)
    c = GcpConnector("g", options(gcp_fake), credentials=StaticTokenCredentials())
    ctx = CollectContext(run_id="t")
    ctx.cancel_event.set()
    records = list(c.collect(ctx))
    assert not [r for r in records if isinstance(r, Evidence)]


# --------------------------------------------------------------------------- evidence


def test_evidence_is_normalised_and_holds_no_secrets(gcp_fake: GcpFake) -> None:
    build_estate(gcp_fake, denied=False)
    _, records = collect(gcp_fake)
    evidence = [r for r in records if isinstance(r, Evidence)]
    for r in evidence:
        assert GCP_TOKEN not in r.body()
        assert "etag" not in r.body().lower() or r.resource_type == "gcp.network.firewall"
    buckets = evidence_of(records, "gcp.storage.bucket")
    assert "updated" not in buckets["acme-good-data"].payload
    assert buckets["acme-good-data"].region == "eu"
    sql = evidence_of(records, "gcp.sql.instance")["pg-prod"]
    assert "serverCaCert" not in sql.body() and "settingsVersion" not in sql.body()
    assert sql.region == "europe-west1"
    sa = evidence_of(records, "gcp.iam.service_account")
    ci = sa["ci@acme-good.iam.gserviceaccount.com"].payload
    assert ci["userManagedKeys"][0]["keyId"] == "k-young"
    assert "oauth2ClientId" not in ci
    subnet = evidence_of(records, "gcp.network.subnet")["europe-west1/prod-ew1"]
    assert subnet.region == "europe-west1"
    again = {r.key: r.content_hash() for r in collect(gcp_fake)[1] if isinstance(r, Evidence)}
    assert again == {r.key: r.content_hash() for r in evidence}


# --------------------------------------------------------------------------- the store


@pytest.mark.clock  # ages of findings and keys are judged against now
def test_three_projects_in_a_folder_hierarchy_collected_in_one_run(
    engine: Engine, db_url: str, gcp_fake: GcpFake, sa_key_material: ServiceAccountKey,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """config options → run engine → store, authenticated with a service-account key
    (google-auth's JWT flow against the fake's token endpoint); then a 403 on one
    project turns only that project's checks into errors."""
    estate = build_estate(gcp_fake, denied=False)
    monkeypatch.setenv("ANNEXA_TEST_GCP_KEY", sa_key_material.json)
    opts = fx.fake_options(gcp_fake, key=True)
    cfg = ConnectorConfig(type="gcp", name="gcp-org", options=opts)
    settings = Settings(AnnexaConfig(database={"url": db_url}, connectors=[cfg]), None)
    settings.connectors = [LoadedConnector(cfg, GcpConnector, GcpOptions.model_validate(opts))]
    index = load_mappings()
    summary = run_connector(settings, settings.connectors[0], engine, index)
    assert summary.status == "succeeded", summary.errors
    assert gcp_fake.token_grants, "the key's JWT-bearer grant was not used"
    with engine.connect() as conn:
        rows = list(findings_at(conn, source="gcp-org"))
    assert {r["scope"] for r in rows} == {"acme-good", "acme-bad", "acme-third", ORG, ENG, PROD}
    failing = {(r["check_id"], r["resource_id"]) for r in rows if r["status"] == "fail"}
    assert failing == estate.expected_failures
    assert not [r for r in rows if r["status"] == "error"]

    gcp_fake.denied.add("acme-bad")
    summary = run_connector(settings, settings.connectors[0], engine, index)
    assert summary.status == "partial"
    with engine.connect() as conn:
        rows = list(findings_at(conn, source="gcp-org"))
    errors = [r for r in rows if r["status"] == "error"]
    assert {r["scope"] for r in errors} == {"acme-bad"}
    assert {r["check_id"] for r in errors} == {c.id for c in GcpConnector.checks()}
    # acme-bad's failures stay open (not closed by absence); the others are unchanged.
    still = {(r["check_id"], r["resource_id"]) for r in rows if r["status"] == "fail"}
    assert still == estate.expected_failures


def test_service_account_key_problems_are_scope_errors(
    gcp_fake: GcpFake, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ANNEXA_TEST_GCP_KEY", '{"type": "authorized_user"}')
    opts = options(gcp_fake, auth="service_account_key",
                   service_account_key={"env": "ANNEXA_TEST_GCP_KEY"}, project_ids=["acme-a1"])
    records = list(GcpConnector("g", opts).collect(CollectContext(run_id="t")))
    assert [(r.scope, r.service, r.ok) for r in records] == [("acme-a1", "*", False)]
    assert "service_account" in records[0].error


def test_rejected_token_grant_fails_every_unit_with_a_clear_reason(
    gcp_fake: GcpFake, sa_key_material: ServiceAccountKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    build_estate(gcp_fake, denied=False)
    gcp_fake.public_key_pem = None  # the fake can no longer verify the assertion
    monkeypatch.setenv("ANNEXA_TEST_GCP_KEY", sa_key_material.json)
    opts = options(gcp_fake, auth="service_account_key",
                   service_account_key={"env": "ANNEXA_TEST_GCP_KEY"},
                   oauth_url=f"{gcp_fake.url}/token")
    records = list(GcpConnector("g", opts).collect(CollectContext(run_id="t")))
    assert [(r.scope, r.service, r.ok) for r in records] == [("g", "*", False)]
    assert "invalid_grant" in records[0].error or "RefreshError" in records[0].error
    assert sa_key_material.private_pem[40:80] not in records[0].error


def test_default_transport_is_grpc() -> None:
    rm = ResourceManager(StaticTokenCredentials(), endpoint="127.0.0.1:1")
    try:
        assert type(rm.projects._transport).__name__ == "ProjectsGrpcTransport"
    finally:
        rm.close()
    assert GcpOptions().resource_manager_transport == "grpc"


# --------------------------------------------------------------------------- checks


@pytest.mark.parametrize(
    ("ranges", "allowed", "ssh", "rdp", "every"),
    [
        (["0.0.0.0/0"], [{"IPProtocol": "tcp", "ports": ["22"]}], "fail", "pass", "pass"),
        (["0.0.0.0/0"], [{"IPProtocol": "tcp"}], "fail", "fail", "fail"),
        # Port 0 is reserved: 1-65535 is every port (a false pass before the shared
        # exposure arithmetic).
        (["0.0.0.0/0"], [{"IPProtocol": "tcp", "ports": ["1-65535"]}], "fail", "fail", "fail"),
        (["0.0.0.0/0"], [{"IPProtocol": "6", "ports": ["20-30"]}], "fail", "pass", "pass"),
        (["0.0.0.0/0"], [{"IPProtocol": "17"}], "pass", "pass", "fail"),
        (["0.0.0.0/1", "128.0.0.0/1"], [{"IPProtocol": "tcp", "ports": ["22"]}],
         "fail", "pass", "pass"),
        (["35.235.240.0/20"], [{"IPProtocol": "tcp", "ports": ["22", "3389"]}],
         "pass", "pass", "pass"),
        (["8.0.0.0/7"], [{"IPProtocol": "all"}], "fail", "fail", "fail"),
        (["0.0.0.0/0"], [{"IPProtocol": "tcp", "ports": ["0-65535"]}], "fail", "fail", "fail"),
        (["10.0.0.0/8"], [{"IPProtocol": "all"}], "pass", "pass", "pass"),
        (["0.0.0.0/0"], [{"IPProtocol": "icmp"}], "pass", "pass", "pass"),
        (["::/0"], [{"IPProtocol": "tcp", "ports": ["3389"]}], "pass", "fail", "pass"),
    ],
)
def test_firewall_rule_evaluation(ranges: list[str], allowed: list[dict[str, Any]], ssh: str,
                                  rdp: str, every: str) -> None:
    rule = firewall("p", "r", "n", ranges, allowed)
    ev = Evidence("p", "global", gcp_network.FIREWALL, "n/r", rule)
    got = {f.check_id.rsplit(".", 1)[1]: f.status
           for f in evaluate(ev, REGISTRY.for_type(gcp_network.FIREWALL), {})}
    assert got == {"ssh_open_to_internet": ssh, "rdp_open_to_internet": rdp,
                   "all_ports_open_to_internet": every}


def test_firewall_deny_rules_evaluated_first_shadow_allow_rules() -> None:
    """The reader gives each ingress allow rule the deny rules of its network that Google
    evaluates first; a deny covering the allow rule's targets shadows it."""
    allow = firewall("p", "allow-all", "n", ["0.0.0.0/0"], [{"IPProtocol": "all"}])
    allow |= {"priority": 1000, "targetTags": ["web"]}
    deny_ssh = firewall("p", "deny-ssh", "n", ["0.0.0.0/0"], []) | {
        "priority": 1000, "denied": [{"IPProtocol": "tcp", "ports": ["22"]}]}
    deny_rdp_db = firewall("p", "deny-rdp-db", "n", ["0.0.0.0/0"], []) | {
        "priority": 10, "targetTags": ["db"], "denied": [{"IPProtocol": "tcp"}]}
    deny_late = firewall("p", "deny-late", "n", ["0.0.0.0/0"], []) | {
        "priority": 2000, "denied": [{"IPProtocol": "all"}]}
    other_net = firewall("p", "deny-elsewhere", "m", ["0.0.0.0/0"], []) | {
        "priority": 1, "denied": [{"IPProtocol": "all"}]}
    payloads = dict(gcp_network.with_denies([allow, deny_ssh, deny_rdp_db, deny_late,
                                             other_net]))
    got = payloads["n/allow-all"]
    assert [d["name"] for d in got["denyRulesBefore"]] == ["deny-rdp-db", "deny-ssh"]
    assert "denyRulesBefore" not in payloads["n/deny-ssh"]
    ev = Evidence("p", "global", gcp_network.FIREWALL, "n/allow-all", got)
    verdicts = {f.check_id.rsplit(".", 1)[1]: (f.status, f.message)
                for f in evaluate(ev, REGISTRY.for_type(gcp_network.FIREWALL), {})}
    assert verdicts["ssh_open_to_internet"][0] == "pass"  # deny-ssh wins at equal priority
    assert verdicts["rdp_open_to_internet"][0] == "fail"  # deny-rdp-db targets only "db"
    assert verdicts["all_ports_open_to_internet"] == (
        "fail", "Rule allow-all opens 65534 of 65535 TCP ports (all but 22) and every UDP "
        "port to the internet")


def test_check_parameters_change_verdicts() -> None:
    policy = {"bindings": [{"role": "roles/owner", "members": ["user:breakglass@acme.example"]}],
              "auditConfigs": []}
    spec = REGISTRY.get("gcp.iam.user_no_primitive_roles")
    assert spec.func(policy, spec.parameters).status == "fail"
    allowed = spec.params_with({"allowed_members": ["user:breakglass@acme.example"]})
    assert spec.func(policy, allowed).status == "pass"
    audit = REGISTRY.get("gcp.iam.data_access_audit_logs")
    partial = {"auditConfigs": [{"service": "allServices", "auditLogConfigs": [
        {"logType": "DATA_WRITE"}]}]}
    assert audit.func(partial, audit.parameters).status == "fail"
    assert audit.func(partial, audit.params_with({"log_types": ["DATA_WRITE"]})).status == "pass"
    sinks = REGISTRY.get("gcp.logging.sink_all_logs")
    audit_only = {"sinks": [{"name": "a", "destination": "d",
                             "filter": 'logName:"cloudaudit.googleapis.com"'}]}
    assert sinks.func(audit_only, sinks.parameters).status == "fail"
    assert sinks.func(audit_only, sinks.params_with({"audit_logs_suffice": True})
                      ).status == "pass"
    pap = REGISTRY.get("gcp.storage.bucket_public_access_block")
    inherited = {"iamConfiguration": {"publicAccessPrevention": "inherited"}}
    assert pap.func(inherited, pap.params_with({"accept_inherited": True})).status == "pass"
    rot = REGISTRY.get("gcp.kms.key_rotation")
    key = {"purpose": "ENCRYPT_DECRYPT", "primaryState": "ENABLED", "rotationPeriod": "31536000s"}
    assert rot.func(key, rot.params_with({"max_rotation_days": 365})).status == "pass"
    assert rot.func(key, rot.parameters).status == "fail"
    with pytest.raises(ValueError, match="must be int"):
        rot.params_with({"max_rotation_days": "90"})


# --------------------------------------------------------------------------- config & docs


def test_options_validation() -> None:
    with pytest.raises(ValueError, match="needs service_account_key"):
        GcpOptions(auth="service_account_key")
    with pytest.raises(ValueError, match="not project ids"):
        GcpOptions(project_ids=["Bad_Project"])
    with pytest.raises(ValueError, match="loopback"):
        GcpOptions(endpoints={"storage": "http://storage.example.com"})
    with pytest.raises(ValueError, match="host\\[:port\\]"):
        GcpOptions(resource_manager_endpoint="https://cloudresourcemanager.googleapis.com")
    with pytest.raises(ValueError, match="organizations/<number>"):
        GcpOptions(organization_ids=["100"])
    with pytest.raises(ValueError, match="SecretRef"):
        GcpOptions(auth="service_account_key", service_account_key="{}")
    with pytest.raises(ValueError, match="not constraint names"):
        GcpOptions(org_policy_constraints=["requireOsLogin"])
    assert GcpOptions(org_policy_constraints=["compute.requireOsLogin"] * 2
                      ).org_policy_constraints == ["compute.requireOsLogin"]
    o = GcpOptions(resource_manager_transport="rest",
                   resource_manager_endpoint="https://cloudresourcemanager.googleapis.com",
                   endpoints={"compute": "https://compute.googleapis.com/"})
    assert o.endpoints.compute == "https://compute.googleapis.com"


def test_permissions_document_lists_exactly_the_permissions_used() -> None:
    text = (ROOT / "docs" / "permissions" / "gcp.md").read_text(encoding="utf-8")
    block = text.split("```yaml", 1)[1].split("```", 1)[0]
    listed = re.findall(r"^\s*-\s*([a-z]+\.[A-Za-z.]+)\s*$", block, re.MULTILINE)
    assert sorted(listed) == sorted(PERMISSIONS)
    assert "roles/iam.securityReviewer" in text and "roles/viewer" in text


def test_mapping_links_every_check_with_a_rationale() -> None:
    import tomllib

    doc = tomllib.loads((ROOT / "mappings" / "checks" / "gcp.toml").read_text("utf-8"))
    ids = {c.id for c in GcpConnector.checks()}
    assert {link["check"] for link in doc["link"]} == ids
    assert all(len(link["rationale"]) > 20 for link in doc["link"])
    pairs = [(link["check"], link["control"]) for link in doc["link"]]
    assert len(pairs) == len(set(pairs))
    from collector.cli import known_checks

    index = load_mappings(known_checks=set(known_checks()) | {s.id for s in REGISTRY})
    assert all(index.controls_for(i) for i in ids)


def test_check_names_match_the_other_clouds() -> None:
    """Where the concept is the same, the check name (after the service) is the same on
    every cloud, so a control's evidence reads the same across clouds."""
    import connectors.aws
    import connectors.azure  # registers the Azure checks

    def suffixes(prefix: str) -> set[str]:
        return {c.id.split(".", 2)[2] for c in REGISTRY if c.id.startswith(prefix + ".")}

    aws, azure, gcp = suffixes("aws"), suffixes("azure"), suffixes("gcp")
    network = {"ssh_open_to_internet", "rdp_open_to_internet", "all_ports_open_to_internet"}
    assert network <= aws & azure & gcp
    assert {"not_publicly_accessible", "backup_retention"} <= aws & gcp
    assert {"not_publicly_accessible", "storage_encrypted"} <= aws & azure
    assert {"bucket_not_public", "bucket_public_access_block", "flow_logs_enabled",
            "key_rotation", "access_key_rotated"} <= aws & gcp
    assert {"account_public_access_block", "volume_encrypted"} <= aws & azure
    assert {"firewall_open_to_internet"} <= azure & gcp
    rotated = [REGISTRY.get(f"{c}.iam.access_key_rotated").parameters for c in ("aws", "gcp")]
    assert set(rotated[0]) == set(rotated[1])
    assert connectors.aws.AwsConnector.prefix == "aws"


def test_sa_key_json_is_shaped_like_googles(sa_key_material: ServiceAccountKey) -> None:
    doc = json.loads(sa_key_material.json)
    assert doc["type"] == "service_account" and doc["private_key"].startswith("-----BEGIN")


# --------------------------------------------------------------------------- the CLI


def _plugin_dir(tmp_path: Path) -> Path:
    """Registers ``azure`` and ``gcp`` under ``annexa.connectors`` for a subprocess, as an
    installed distribution would (harmless once pyproject.toml registers them too)."""
    root = tmp_path / "plugin"
    info = root / "annexa_cloud_test-0.0.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: annexa-cloud-test\n"
                                   "Version: 0.0.0\n")
    (info / "entry_points.txt").write_text(
        "[annexa.connectors]\nazure = connectors.azure:AzureConnector\n"
        "gcp = connectors.gcp:GcpConnector\n")
    return root


@pytest.mark.clock  # ages of findings and keys are judged against now
def test_cli_collects_two_subscriptions_and_three_projects_in_one_run(
    tmp_path: Path, db_url: str, gcp_fake: GcpFake, sa_key_material: ServiceAccountKey,
    arm_tls_fake: Any, tls_ca: tuple[Any, Path],
) -> None:
    """config.toml → ``annexa collect`` (a subprocess) → store → ``annexa findings``: the
    real ClientSecretCredential over TLS for Azure, a service-account key for Google
    Cloud, check parameters from the config."""
    import os
    import subprocess
    import sys

    from tests import azure_fixtures as az

    _, ca_path = tls_ca
    azure_estate = az.Estate(arm_tls_fake)
    az.add_good_subscription(azure_estate, az.SUB_A, "prod-a", prefix="a")
    az.add_bad_subscription(azure_estate, az.SUB_B, "prod-b")
    gcp_estate = build_estate(gcp_fake, denied=False)
    gcp_estate.expect("gcp.iam.access_key_rotated", "ci@acme-good.iam.gserviceaccount.com")
    cfg = tmp_path / "annexa.toml"
    retry = {"max_attempts": 2, "retry_min_wait": 0.0}
    write_config(
        cfg,
        db_url,
        connector_table("azure", "azure-tenant", {
            "auth": "client_secret", "tenant_id": az.TENANT, "client_id": az.CLIENT_ID,
            "client_secret": secret_env("ANNEXA_TEST_AZURE_SECRET"),
            "authority": arm_tls_fake.url, "disable_instance_discovery": True,
            "arm_url": arm_tls_fake.url, "http": {"ca_bundle": ca_path, **retry},
        }),
        connector_table("gcp", "gcp-org", fx.fake_options(gcp_fake, key=True, http=retry),
                  **{"gcp.iam.access_key_rotated": {"max_age_days": 5}}),
    )
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(_plugin_dir(tmp_path)), str(ROOT)]),
        "REQUESTS_CA_BUNDLE": str(ca_path),
        "ANNEXA_TEST_AZURE_SECRET": az.CLIENT_SECRET,
        "ANNEXA_TEST_GCP_KEY": sa_key_material.json,
    }
    env.pop("ANNEXA_DATABASE_URL", None)

    def annexa(*args: str) -> subprocess.CompletedProcess[str]:
        # At a shifted clock (marker "clock"), the subprocess follows it (libfaketime).
        return subprocess.run(
            clock.command([sys.executable, "-m", "collector", *args, "--config", str(cfg)]),
            capture_output=True, text=True, env=clock.env(env), timeout=240,
        )

    proc = annexa("collect", "--format", "json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = {r["connector"]: r for r in json.loads(proc.stdout)}
    assert {r["status"] for r in runs.values()} == {"succeeded"}
    proc = annexa("findings", "--status", "fail", "--format", "json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = json.loads(proc.stdout)
    by_source = {
        src: {(r["check_id"], r["resource_id"]) for r in rows if r["source"] == src}
        for src in ("azure-tenant", "gcp-org")
    }
    assert by_source["azure-tenant"] == azure_estate.expected_failures
    assert by_source["gcp-org"] == gcp_estate.expected_failures
    assert {r["scope"] for r in rows if r["source"] == "azure-tenant"} == {az.SUB_B}
    assert {r["scope"] for r in rows if r["source"] == "gcp-org"} >= {"acme-bad", ORG}
    assert all(r["controls"] for r in rows)  # every failing check is mapped


# --------------------------------------------------------------------------- new checks


def _judge(check_id: str, payload: dict[str, Any], **params: Any) -> tuple[str, str]:
    spec = REGISTRY.get(check_id)
    ev = Evidence("p", "global", spec.resource_type, "x", payload)
    [f] = evaluate(ev, [spec], {check_id: spec.params_with(params)})
    return f.status, f.message


@pytest.mark.clock
def test_scc_findings_sla_by_class_severity_and_mute() -> None:
    from tests.gcp_fixtures import ts

    def finding(sev: str, days: float, cls: str = "VULNERABILITY", mute: str = "UNDEFINED"
                ) -> dict[str, Any]:
        return {"name": "1/f", "category": "OS_VULNERABILITY", "severity": sev,
                "findingClass": cls, "createTime": ts(days), "mute": mute,
                "resourceName": "//compute.googleapis.com/projects/p/zones/z/instances/vm"}

    check = "gcp.scc.findings_within_sla"
    assert _judge(check, {"findings": [finding("CRITICAL", 14)]})[0] == "pass"
    status, message = _judge(check, {"findings": [finding("CRITICAL", 16)]})
    assert status == "fail" and "CRITICAL OS_VULNERABILITY on vm (16 days > 15)" in message
    assert _judge(check, {"findings": [finding("CRITICAL", 99, cls="THREAT")]})[0] == "pass"
    muted = {"findings": [finding("HIGH", 60, mute="MUTED")]}
    assert _judge(check, muted)[0] == "fail"
    assert _judge(check, muted, include_muted=False)[0] == "pass"
    assert _judge(check, {"findings": [finding("SEVERITY_UNSPECIFIED", 20)]})[0] == "fail"
    assert _judge(check, {"_errors": {"findings": "HTTP 403"}})[0] == "error"


def test_ssl_policy_profiles_and_versions() -> None:
    check = "gcp.loadbalancing.ssl_policy_modern"

    def proxy(profile: str, version: str) -> dict[str, Any]:
        return {"policy": {"name": "p", "profile": profile, "minTlsVersion": version,
                           "customFeatures": []}}

    assert _judge(check, proxy("RESTRICTED", "TLS_1_2"))[0] == "pass"
    assert _judge(check, proxy("MODERN", "TLS_1_0")) == (
        "fail", "SSL policy p accepts weak TLS: minimum TLS_1_0")
    assert _judge(check, proxy("COMPATIBLE", "TLS_1_2"))[0] == "fail"
    assert _judge(check, proxy("CUSTOM", "TLS_1_3"),
                  accepted_profiles=["CUSTOM"])[0] == "pass"
    assert _judge(check, {"policy": None})[0] == "fail"


def test_org_policy_conditional_rules_do_not_enforce() -> None:
    from connectors.gcp.orgpolicy import enforced

    assert enforced({"spec": {"rules": [{"enforce": True}]}})
    assert not enforced({"spec": {"rules": [{"enforce": True, "condition": {
        "expression": "resource.matchTag('env', 'prod')"}}]}})
    assert not enforced({"spec": {"rules": [{"enforce": False}]}})
    assert not enforced({"name": "projects/p/policies/x"})
    check = "gcp.orgpolicy.constraints_enforced"
    assert _judge(check, {"constraints": {"a.b": {"enforced": True}},
                          "_errors": {"constraints": "c.d: HTTP 403"}})[0] == "error"
    assert _judge(check, {"constraints": {"a.b": {"enforced": False}},
                          "_errors": {"constraints": "c.d: HTTP 403"}})[0] == "fail"


def test_budget_scope_follows_projects_and_ancestors() -> None:
    from connectors.gcp.billing import covers
    from connectors.gcp.context import Project

    project = Project(id="p", name="projects/42", parent="folders/7")
    everything = {"filter": {"projects": [], "resourceAncestors": []}}
    mine = {"filter": {"projects": ["projects/42"], "resourceAncestors": []}}
    other = {"filter": {"projects": ["projects/43"], "resourceAncestors": []}}
    folder = {"filter": {"projects": [], "resourceAncestors": ["folders/7"]}}
    assert covers(everything, project, ["folders/7", "organizations/1"])
    assert covers(mine, project, [])
    assert not covers(other, project, ["folders/7"])
    assert covers(folder, project, ["folders/7", "organizations/1"])
    check = "gcp.billing.budget_alerts"
    assert _judge(check, {"billingEnabled": False})[0] == "not_applicable"
    quiet = {"billingEnabled": True, "budgets": [
        {"name": "b", "thresholds": [50.0], "notifies": False}]}
    assert _judge(check, quiet)[0] == "fail"
    assert _judge(check, {"billingEnabled": True, "budgets": [
        {"name": "b", "thresholds": [120.0], "notifies": True}]})[0] == "fail"


def test_sink_destination_lock_is_judged_on_the_exporting_sinks() -> None:
    check = "gcp.logging.sink_destination_locked"
    gcs = "storage.googleapis.com/central"
    assert _judge(check, {"destinations": {gcs: {"kind": "gcs", "locked": True,
                                                 "retentionDays": 400}}})[0] == "pass"
    assert _judge(check, {"destinations": {gcs: {"kind": "gcs", "locked": True,
                                                 "retentionDays": 30}}})[0] == "fail"
    assert _judge(check, {"destinations": {"bigquery.googleapis.com/projects/p/datasets/d": {
        "kind": "bigquery"}}})[0] == "fail"
    assert _judge(check, {"destinations": {gcs: {"kind": "gcs", "error": "HTTP 403"}}})[0] \
        == "error"
    assert _judge(check, {"destinations": {}})[0] == "fail"


def test_shared_vpc_host_of_the_other_environment() -> None:
    check = "gcp.governance.environments_separated"
    prod_host = {"projectId": "host", "labels": {"environment": "production"}}
    assert _judge(check, {"labels": {"environment": "prod"},
                          "sharedVpcHost": prod_host})[0] == "pass"
    assert _judge(check, {"labels": {"environment": "staging"},
                          "sharedVpcHost": prod_host}) == (
        "fail", "A non-production project on the Shared VPC of host (production)")
    assert _judge(check, {"labels": {}, "sharedVpcHost": None})[0] == "fail"

"""Bulk inventory mode of the azure connector (``inventory = "resource_graph"``).

The planted estate of tests/azure_fixtures.py is served by the fake both through the
ARM listings and through Azure Resource Graph (rows of the ``Resources`` table built
from the same resources); both modes run through the product's run engine
(tests/harness.py) with the connector's real HTTP client over a real socket, and must
give the same findings and payloads. Call counts come from the fake's request log.
"""

from __future__ import annotations

import ssl
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import structlog
from pydantic import ValidationError

from connectors.azure import AzureConnector, AzureOptions, resourcegraph
from connectors.http import HttpOptions
from tests import azure_fixtures as fx
from tests.azure_fixtures import SUB_A, SUB_B, SUB_C, SUB_DENIED, ArmFake, StaticCredential
from tests.harness import RunResult, run_built

arm_fake = fx.arm_fake
tls_ca = fx.tls_ca

FAST = HttpOptions(max_attempts=2, retry_min_wait=0, retry_max_wait=0.01, timeout=5,
                   connect_timeout=2)
BULK_TYPES = {"azure.storage.account", "azure.network.nsg", "azure.network.vnet"}
GRAPH = "/providers/Microsoft.ResourceGraph/resources"
#: The ARM listings the inventory replaces.
REPLACED = ("/providers/microsoft.storage/storageaccounts",
            "/providers/microsoft.network/networksecuritygroups",
            "/providers/microsoft.network/virtualnetworks")


def run(fake: ArmFake, **options: Any) -> tuple[RunResult, list[fx.Seen]]:
    """One engine run; the requests it made."""
    fake.requests.clear()
    opts = AzureOptions(arm_url=fake.url, http=FAST, max_workers=4, **options)
    result = run_built(AzureConnector("azure-bulk", opts, credential=StaticCredential()))
    return result, list(fake.requests)


def outcomes(r: RunResult) -> set[tuple[str, str, str, str]]:
    return {(f.check_id, f.scope, f.resource_id, str(f.status)) for f in r.findings}


def hashes(r: RunResult, types: set[str]) -> dict[str, str]:
    return {e.key: e.content_hash() for e in r.evidence if e.resource_type in types}


def planted(fake: ArmFake) -> Counter[str]:
    """Resources of the inventoried types the readable subscriptions hold, by type."""
    types = {t.lower() for t in resourcegraph.TYPES}
    return Counter(r["type"] for s in (SUB_A, SUB_B, SUB_C) for r in fake.resources.get(s, [])
                   if r["type"].lower() in types)


def replaced(seen: list[fx.Seen]) -> list[str]:
    return [s.path for s in seen if s.path.lower().endswith(REPLACED)]


def graph_calls(seen: list[fx.Seen]) -> list[fx.Seen]:
    return [s for s in seen if s.path == GRAPH]


@pytest.mark.clock  # ages of findings and keys are judged against now
@pytest.mark.parametrize("graph_page", [1000, 2], ids=["page1000", "page2"])
def test_bulk_and_direct_modes_give_identical_findings_with_fewer_calls(
        arm_fake: ArmFake, graph_page: int) -> None:
    estate = fx.build_estate(arm_fake)
    arm_fake.graph_page_size = graph_page
    direct, direct_calls = run(arm_fake)
    bulk, bulk_calls = run(arm_fake, inventory="resource_graph")
    assert direct.status == bulk.status  # "partial": the denied subscription, both ways

    # Same findings (check, scope, resource, status); the planted ones fail.
    assert outcomes(bulk) == outcomes(direct)
    failing = {(f.check_id, f.resource_id) for f in bulk.findings if f.status == "fail"}
    assert failing == estate.expected_failures
    # Same payloads (content hashes) for the types read from the inventory.
    assert hashes(bulk, BULK_TYPES) == hashes(direct, BULK_TYPES)
    counts = Counter(e.resource_type for e in bulk.evidence if e.resource_type in BULK_TYPES)
    held = planted(arm_fake)
    assert counts == {resourcegraph.TYPES[t][1]: n for t, n in held.items()}
    assert len(counts) == 3  # every inventoried type is in the estate
    # Resource Graph has no per-resource change time: none is invented.
    assert all(e.source_updated_at is None for e in bulk.evidence)

    # The denied subscription is not in Resource Graph's answer, so it is not covered:
    # its units read directly and fail with ARM's 403, exactly as in direct mode.
    denied = [p for p in replaced(bulk_calls) if SUB_DENIED in p]
    assert len(denied) == 2  # storage listing; network stops at its first listing
    assert not [p for p in replaced(bulk_calls) if SUB_DENIED not in p]
    bad = {(c.scope, c.service) for c in bulk.coverage if not c.ok}
    assert bad == {(c.scope, c.service) for c in direct.coverage if not c.ok}
    assert (SUB_DENIED, "storage") in bad and (SUB_DENIED, "network") in bad

    # Calls, from the fake's request log.
    graph = graph_calls(bulk_calls)
    rows = sum(held.values())
    pages = -(-rows // graph_page)
    sub_pages = -(-3 // graph_page)  # the three readable subscriptions
    assert len(graph) == pages + sub_pages
    assert all(q["options"]["$top"] == 1000 for q in arm_fake.graph_queries)
    tokens = [q["options"].get("$skipToken") for q in arm_fake.graph_queries]
    assert sum(1 for t in tokens if t) == (pages - 1) + (sub_pages - 1)
    print(f"\n[graph page {graph_page}] calls direct={len(direct_calls)} "
          f"bulk={len(bulk_calls)}; replaced listings direct={len(replaced(direct_calls))} "
          f"bulk={len(replaced(bulk_calls))} + graph={len(graph)}")
    assert len(bulk_calls) == (len(direct_calls) - len(replaced(direct_calls))
                               + len(replaced(bulk_calls)) + len(graph))
    assert len(bulk_calls) < len(direct_calls)
    # The lifecycle policies are still read per account (Resource Graph lacks them);
    # the monitor unit reads a few more for the activity log's destination.
    def policies(seen: list[fx.Seen]) -> list[str]:
        return sorted(s.path for s in seen if s.path.endswith("/managementPolicies/default"))

    assert policies(bulk_calls) == policies(direct_calls)
    assert len(set(policies(bulk_calls))) >= held["Microsoft.Storage/storageAccounts"]


@pytest.mark.clock
def test_graph_denied_falls_back_to_direct_reads_with_a_logged_reason(
        arm_fake: ArmFake) -> None:
    """Resource Graph answers 403: every subscription reads directly; same findings;
    the reason is logged (not silent)."""
    fx.build_estate(arm_fake)
    direct, direct_calls = run(arm_fake)
    arm_fake.fault(r"^/providers/Microsoft\.ResourceGraph/", 403, code="AuthorizationFailed")
    with structlog.testing.capture_logs() as logs:
        bulk, bulk_calls = run(arm_fake, inventory="resource_graph")
    assert outcomes(bulk) == outcomes(direct)
    assert hashes(bulk, BULK_TYPES) == hashes(direct, BULK_TYPES)
    assert sorted(replaced(bulk_calls)) == sorted(replaced(direct_calls))
    assert len(graph_calls(bulk_calls)) == 1  # a 403 is not retried
    [warning] = [e for e in logs if "resource graph" in e["event"]
                 and e["log_level"] == "warning"]
    assert "403" in warning["error"] and warning["subscriptions"] == 4


@pytest.mark.clock
def test_truncated_result_without_skip_token_reads_directly(arm_fake: ArmFake) -> None:
    """A page truncated with no ``$skipToken`` to continue: the rest cannot be had from
    Resource Graph, so nothing is judged from the partial rows; all read directly."""
    fx.build_estate(arm_fake)
    direct, direct_calls = run(arm_fake)
    arm_fake.graph_page_size = 5
    arm_fake.graph_truncate = True
    with structlog.testing.capture_logs() as logs:
        bulk, bulk_calls = run(arm_fake, inventory="resource_graph")
    assert outcomes(bulk) == outcomes(direct)
    assert sorted(replaced(bulk_calls)) == sorted(replaced(direct_calls))
    [warning] = [e for e in logs if e["log_level"] == "warning"
                 and "resource graph" in e["event"]]
    assert "truncated" in warning["error"]
    assert f"5 of {sum(planted(arm_fake).values())} rows" in warning["error"]


@pytest.mark.clock
def test_hostile_rows_are_errors_never_passes(arm_fake: ArmFake) -> None:
    """A row without ``properties`` gives ``error`` for every check of its resource; a
    row without an ``id`` fails its unit. Nothing of either passes."""
    fx.build_estate(arm_fake)
    account_a = fx.rid(SUB_A, "rg-data", "Microsoft.Storage/storageAccounts", "adata")

    def hostile(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        out = []
        for r in rows:
            r = dict(r)
            if r.get("id") == account_a:
                r.pop("properties")
            elif r.get("type") == "microsoft.network/networksecuritygroups" \
                    and r.get("subscriptionId") == SUB_B and r.get("name") == "ssh-open":
                r.pop("id")
            out.append(r)
        return out

    assert any(r["id"] == account_a for r in arm_fake.resources[SUB_A])
    arm_fake.graph_rows = hostile
    bulk, _ = run(arm_fake, inventory="resource_graph")
    on_a = [f for f in bulk.findings if f.resource_id == account_a.lower()
            and f.resource_type == "azure.storage.account"]  # not the locks unit's check
    storage_checks = {c.id for c in AzureConnector.checks()
                      if c.resource_type == "azure.storage.account"}
    assert {f.check_id for f in on_a} == storage_checks
    assert {f.status for f in on_a} == {"error"}
    assert all("no properties object" in f.message for f in on_a)
    assert not [e for e in bulk.evidence if e.resource_id == account_a.lower()
                and e.resource_type == "azure.storage.account"]
    # The NSG without an id: its unit fails (every network check an error there).
    [cov] = [c for c in bulk.coverage if (c.scope, c.service) == (SUB_B, "network")]
    assert not cov.ok and "without a resource id" in (cov.error or "")
    ssh_open = fx.rid(SUB_B, "rg-net", "Microsoft.Network/networkSecurityGroups",
                      "ssh-open").lower()
    assert not [f for f in bulk.findings if f.resource_id == ssh_open]
    unit = [f for f in bulk.findings if f.resource_id == f"azure:{SUB_B}/global/network"]
    assert unit and {f.status for f in unit} == {"error"}
    # The other resources of the same units are still judged.
    assert any(e.scope == SUB_B and e.resource_type == "azure.network.nsg"
               for e in bulk.evidence)
    assert (SUB_C, "network") in {(c.scope, c.service) for c in bulk.coverage if c.ok}


def test_query_the_fake_does_not_understand_is_a_400(arm_fake: ArmFake) -> None:
    """The fake is no KQL engine: any other query shape is refused as the service
    refuses an invalid query, and the connector reads directly."""
    import httpx

    arm_fake.add_subscription(SUB_A, "a")
    body = {"subscriptions": [SUB_A], "query": "Resources | summarize count() by type",
            "options": {"$top": 10}}
    resp = httpx.post(f"{arm_fake.url}{GRAPH}", params={"api-version": "2022-10-01"},
                      json=body, headers={"Authorization": f"Bearer {fx.ARM_TOKEN}"})
    assert resp.status_code == 400
    assert resp.json()["error"]["details"][0]["code"] == "InvalidQuery"
    ok = httpx.post(f"{arm_fake.url}{GRAPH}", params={"api-version": "2022-10-01"},
                    json={**body, "query": resourcegraph.RESOURCES_QUERY},
                    headers={"Authorization": f"Bearer {fx.ARM_TOKEN}"})
    assert ok.status_code == 200 and ok.json()["resultTruncated"] == "false"


def test_inventory_option_is_validated() -> None:
    assert AzureOptions.model_validate({}).inventory == "direct"
    with pytest.raises(ValidationError, match="inventory"):
        AzureOptions.model_validate({"inventory": "bulk"})
    assert AzureOptions.model_validate({"inventory": "resource_graph"}).inventory == \
        "resource_graph"


def test_config_check_connect_says_whether_resource_graph_is_reachable(
        tls_ca: tuple[Any, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """``annexa config check --connect`` (collector.configcheck.connect_lines) with the
    real ClientSecretCredential against the fake over TLS: Resource Graph reachable,
    then denied (403, the permission named), and not probed in direct mode."""
    from collector.config import ConnectorConfig, LoadedConnector
    from collector.configcheck import connect_lines

    ca, ca_path = tls_ca
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(ctx)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(ca_path))
    monkeypatch.setenv("ANNEXA_TEST_AZURE_SECRET", fx.CLIENT_SECRET)
    with ArmFake(ssl_context=ctx) as fake:
        fx.build_estate(fake)

        def lines(**extra: Any) -> dict[str, tuple[bool, str]]:
            options = {"auth": "client_secret", "tenant_id": fx.TENANT,
                       "client_id": fx.CLIENT_ID,
                       "client_secret": {"env": "ANNEXA_TEST_AZURE_SECRET"},
                       "authority": fake.url, "disable_instance_discovery": True,
                       "arm_url": fake.url,
                       "http": {"ca_bundle": str(ca_path), "max_attempts": 1}, **extra}
            lc = LoadedConnector(ConnectorConfig(type="azure", name="az", options=options),
                                 AzureConnector, AzureOptions.model_validate(options))
            return {line.what: (line.ok, line.detail) for line in connect_lines(lc)}

        probe = f"POST {GRAPH} (Microsoft.ResourceGraph/resources/read)"
        got = lines(inventory="resource_graph")
        assert got[probe][0], got
        assert got[probe][1].startswith("reachable: ")
        assert got["GET /subscriptions (Microsoft.Resources/subscriptions/read)"] == (
            True, "4 readable subscriptions")
        fake.fault(r"^/providers/Microsoft\.ResourceGraph/", 403, code="AuthorizationFailed")
        ok, detail = lines(inventory="resource_graph")[probe]
        assert not ok
        assert "missing permission Microsoft.ResourceGraph/resources/read (HTTP 403)" in detail
        assert "read every subscription directly" in detail
        assert probe not in lines()  # direct mode: Resource Graph is not needed


@pytest.mark.clock
def test_a_row_repeated_across_pages_is_one_resource(arm_fake: ArmFake) -> None:
    """Resource Graph documents that pages of a changing table can repeat a row: the
    repeat is one resource, not two evidence records of the same key."""
    fx.build_estate(arm_fake)
    direct, _ = run(arm_fake)
    arm_fake.graph_page_size = 3
    arm_fake.graph_rows = lambda rows: rows[:4] + rows[3:4] + rows[4:]
    bulk, calls = run(arm_fake, inventory="resource_graph")
    assert outcomes(bulk) == outcomes(direct)
    assert hashes(bulk, BULK_TYPES) == hashes(direct, BULK_TYPES)
    keys = [e.key for e in bulk.evidence if e.resource_type in BULK_TYPES]
    assert len(keys) == len(set(keys))
    assert not replaced(calls) or all(SUB_DENIED in p for p in replaced(calls))


def test_cli_config_check_connect_reports_resource_graph(
        tls_ca: tuple[Any, Path], tmp_path: Path) -> None:
    """The command itself: ``annexa config check --connect`` in a subprocess (real
    ClientSecretCredential, TLS to the fake) prints the Resource Graph line."""
    import os
    import subprocess
    import sys

    ca, ca_path = tls_ca
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(ctx)
    with ArmFake(ssl_context=ctx) as fake:
        fx.build_estate(fake)
        cfg = tmp_path / "annexa.toml"
        cfg.write_text(
            f'[database]\nurl = "sqlite:///{tmp_path / "annexa.db"}"\n\n'
            '[[connectors]]\ntype = "azure"\nname = "az"\n[connectors.options]\n'
            f'auth = "client_secret"\ntenant_id = "{fx.TENANT}"\n'
            f'client_id = "{fx.CLIENT_ID}"\n'
            'client_secret = { env = "ANNEXA_TEST_AZURE_SECRET" }\n'
            f'authority = "{fake.url}"\ndisable_instance_discovery = true\n'
            f'arm_url = "{fake.url}"\ninventory = "resource_graph"\n'
            f'[connectors.options.http]\nca_bundle = "{ca_path}"\nmax_attempts = 1\n')
        env = {k: v for k, v in os.environ.items() if not k.startswith(("ANNEXA_", "AZURE_"))
               and k.lower() not in ("http_proxy", "https_proxy", "no_proxy")}
        env |= {"PYTHONPATH": str(Path(__file__).resolve().parent.parent),
                "REQUESTS_CA_BUNDLE": str(ca_path),
                "ANNEXA_TEST_AZURE_SECRET": fx.CLIENT_SECRET}
        proc = subprocess.run([sys.executable, "-m", "collector", "config", "check",
                               "--connect", "-c", str(cfg)], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=300)
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr
    assert (f"ok    az: POST {GRAPH} (Microsoft.ResourceGraph/resources/read): reachable: "
            in out), out
    assert fx.CLIENT_SECRET not in out + proc.stderr
    assert not (tmp_path / "annexa.db").exists()

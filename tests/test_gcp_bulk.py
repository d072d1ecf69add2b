"""Bulk inventory mode of the gcp connector (``inventory = "asset_inventory"``).

The same planted estate (tests/gcp_fixtures.py) is served by the fake both through the
services' own APIs and through Cloud Asset Inventory (``assets.list``); both modes run
through the product's run engine (tests/engine_run.py) and must give the same findings.
Call counts come from the fake's request log.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from connectors.gcp import GcpOptions
from tests import gcp_fixtures as fx
from tests.engine_run import EngineRun, run_engine
from tests.gcp_fixtures import GcpFake, ServiceAccountKey, build_estate, fake_options

sa_key_material = fx.sa_key_material

BULK_TYPES = {"gcp.storage.bucket", "gcp.network.firewall", "gcp.network.vpc",
              "gcp.network.subnet"}
#: Paths the inventory replaces: the bucket listings and policies, the compute listings.
REPLACED = ("/storage/v1/b", "/global/firewalls", "/global/networks",
            "/aggregated/subnetworks")


@pytest.fixture
def fake(sa_key_material: ServiceAccountKey, request: pytest.FixtureRequest,
         monkeypatch: pytest.MonkeyPatch) -> Any:
    page_size = getattr(request, "param", 1000)  # every list's, direct and inventory
    monkeypatch.setenv("ANNEXA_TEST_GCP_KEY", sa_key_material.json)
    with GcpFake(public_key_pem=sa_key_material.public_pem, page_size=page_size,
                 asset_page_size=page_size) as f:
        yield f


def run(fake: GcpFake, **extra: Any) -> tuple[EngineRun, list[fx.Seen]]:
    """One engine run; the requests it made (the token grant excluded)."""
    fake.requests.clear()
    opts = fake_options(fake, key=True, max_workers=4, **extra)
    result = run_engine("gcp", opts, name="gcp-org")
    return result, [r for r in fake.requests if r.path != "/token"]


def outcomes(r: EngineRun) -> set[tuple[str, str, str, str]]:
    return {(f.check_id, f.scope, f.resource_id, str(f.status)) for f in r.findings}


def hashes(r: EngineRun, types: set[str]) -> dict[str, str]:
    return {e.key: e.content_hash() for e in r.evidence if e.resource_type in types}


def replaced(seen: list[fx.Seen]) -> list[str]:
    return [s.path for s in seen if any(p in s.path for p in REPLACED)
            and s.path != "/storage/storage/v1/b/central-logs"]  # the logging sink's bucket


def by_api(seen: list[fx.Seen]) -> Counter[str]:
    return Counter(s.path.split("/")[1] for s in seen)


@pytest.mark.clock  # the estate's key and finding ages are judged against now
@pytest.mark.parametrize("fake", [1000, 2], indirect=True, ids=["page1000", "page2"])
def test_bulk_and_direct_modes_give_identical_findings_with_fewer_calls(
        fake: GcpFake) -> None:
    estate = build_estate(fake, denied=False)
    fake.asset_read_time = "2026-02-03T04:05:06Z"  # the snapshot time, not updateTime
    direct, direct_calls = run(fake)
    bulk, bulk_calls = run(fake, inventory="asset_inventory")
    assert direct.status == bulk.status == "succeeded", (direct.errors, bulk.errors)

    # Same findings (check, scope, resource, status), and the planted ones fail.
    assert outcomes(bulk) == outcomes(direct)
    failing = {(f.check_id, f.resource_id) for f in bulk.findings if f.status == "fail"}
    assert failing == estate.expected_failures
    assert {e.resource_type for e in bulk.evidence} >= BULK_TYPES
    # Same payloads (content hashes) for the types read from the inventory.
    assert hashes(bulk, BULK_TYPES) == hashes(direct, BULK_TYPES)
    assert len(hashes(bulk, BULK_TYPES)) == 21

    # The inventory's snapshot time travels with the evidence (direct reads have none).
    stamp = datetime(2026, 2, 3, 4, 5, 6, tzinfo=UTC)
    for e in bulk.evidence:
        expected = stamp if e.resource_type in BULK_TYPES else None
        assert e.source_updated_at == expected, e.key
    assert all(e.source_updated_at is None for e in direct.evidence)

    # Calls, from the fake's request log.
    asset_calls = [s for s in bulk_calls if s.path.startswith("/cloudasset/")]
    contents = Counter(s.query["contentType"][0] for s in asset_calls)
    print(f"\n[asset page {fake.asset_page_size}] calls direct={len(direct_calls)} "
          f"bulk={len(bulk_calls)}; replaced reads direct={len(replaced(direct_calls))} "
          f"bulk={len(replaced(bulk_calls))} + cloudasset={len(asset_calls)} {dict(contents)}"
          f"\n  direct by api {dict(by_api(direct_calls))}"
          f"\n  bulk by api {dict(by_api(bulk_calls))}")
    assert replaced(bulk_calls) == []  # no bucket, policy or compute listing left
    # Direct: per project the pages of 3 listings + 1 aggregated page, per bucket 1 policy.
    ps = fake.page_size
    pids = ("acme-good", "acme-bad", "acme-third")
    listings = [fake.lists.get(path, ("", []))[1] for pid in pids for path in (
        f"/storage/v1/b?project={pid}", f"/compute/v1/projects/{pid}/global/firewalls",
        f"/compute/v1/projects/{pid}/global/networks")]
    buckets = sum(len(items) for items in listings[0::3])
    assert buckets == 5
    expected_direct = sum(max(1, -(-len(items) // ps)) for items in listings) + 3 + buckets
    assert len(replaced(direct_calls)) == expected_direct
    # Bulk: the organisation's 21 resources and 5 bucket policies, pages followed.
    assert all(s.path == "/cloudasset/v1/organizations/100/assets" for s in asset_calls)
    assert contents == {"RESOURCE": -(-21 // ps), "IAM_POLICY": -(-buckets // ps)}
    assert len(bulk_calls) == len(direct_calls) - expected_direct + len(asset_calls)
    assert len(bulk_calls) < len(direct_calls)
    assert fake.schema_violations == []


@pytest.mark.clock
def test_inventory_unavailable_falls_back_to_direct_reads(fake: GcpFake) -> None:
    """Cloud Asset API not enabled (403): every project reads directly; same findings."""
    build_estate(fake, denied=False)
    direct, direct_calls = run(fake)
    fake.fault(r"^/cloudasset/", 403)
    bulk, bulk_calls = run(fake, inventory="asset_inventory")
    assert bulk.status == "succeeded", bulk.errors
    assert outcomes(bulk) == outcomes(direct)
    assert sorted(replaced(bulk_calls)) == sorted(replaced(direct_calls))
    assert all(e.source_updated_at is None for e in bulk.evidence)


@pytest.mark.clock
def test_only_what_the_inventory_lacks_is_read_directly(fake: GcpFake) -> None:
    """A bucket without an IAM policy asset has its policy read from the bucket; a
    configured project parent covers only that project, the others read directly."""
    build_estate(fake, denied=False)
    direct, _ = run(fake)
    real = fake._estate_assets

    def without_one_policy(pid: str) -> Any:
        for name, atype, data, pol in real(pid):
            yield name, atype, data, (None if data.get("name") == "acme-bad-public" else pol)

    fake._estate_assets = without_one_policy  # type: ignore[method-assign]
    bulk, calls = run(fake, inventory="asset_inventory",
                      asset_inventory_parents=["projects/acme-bad"])
    assert outcomes(bulk) == outcomes(direct)
    assert ("gcp.storage.bucket_not_public", "acme-bad", "acme-bad-public", "fail") in \
        outcomes(bulk)
    got = sorted(replaced(calls))
    assert "/storage/storage/v1/b/acme-bad-public/iam" in got
    assert not [p for p in got if "acme-bad" in p and "acme-bad-public" not in p]
    # acme-good and acme-third were read directly (4 listings each + their policies).
    assert any("/projects/acme-good/global/firewalls" in p for p in got)
    assert {s.path for s in calls if s.path.startswith("/cloudasset/")} == {
        "/cloudasset/v1/projects/acme-bad/assets"}


@pytest.mark.clock
def test_bucket_data_without_iam_configuration_is_read_from_the_bucket(
        fake: GcpFake) -> None:
    """Asset data lacking a field the checks read (``iamConfiguration``) is completed by
    one ``buckets.get`` of that bucket only; verdicts stay those of the direct path."""
    build_estate(fake, denied=False)
    direct, _ = run(fake)
    real = fake._estate_assets

    def partial_data(pid: str) -> Any:
        for name, atype, data, pol in real(pid):
            if data.get("name") == "acme-bad-public":
                data = {k: v for k, v in data.items() if k != "iamConfiguration"}
            yield name, atype, data, pol

    fake._estate_assets = partial_data  # type: ignore[method-assign]
    bulk, calls = run(fake, inventory="asset_inventory")
    assert outcomes(bulk) == outcomes(direct)
    assert hashes(bulk, BULK_TYPES) == hashes(direct, BULK_TYPES)
    assert replaced(calls) == ["/storage/storage/v1/b/acme-bad-public"]


def test_inventory_options_are_validated() -> None:
    assert GcpOptions.model_validate({}).inventory == "direct"
    with pytest.raises(ValidationError, match="inventory"):
        GcpOptions.model_validate({"inventory": "bulk"})
    with pytest.raises(ValidationError, match="asset_inventory_parents"):
        GcpOptions.model_validate({"asset_inventory_parents": ["org/1"]})
    ok = GcpOptions.model_validate({"asset_inventory_parents": ["organizations/1",
                                                                "folders/2", "projects/acme-x"]})
    assert ok.asset_inventory_parents == ["organizations/1", "folders/2", "projects/acme-x"]

"""Bulk inventory mode of the aws connector (``inventory = "config_aggregator"``).

One AWS Organization (``annexa_demo.aws.estate.seed_org_estate``: a management account
and three members, buckets of every kind in two regions) is planted once in moto. The
direct path reads it through moto; the bulk path asks AWS Config's
``SelectAggregateResourceConfig`` — served by :mod:`tests.aws_config_fake`, whose items
are moto's own AWS Config rendering of the same buckets — over a real socket with the
real boto3 client. Both run through the product's run engine (tests/harness.py).

Calls are counted on the wire: every request but AWS Config's passes through the fault
proxy of tests/aws_fixtures.py (``FaultProxy.seen``); the advanced queries are logged by
the fake.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
import structlog
from pydantic import ValidationError
from sqlalchemy import Engine, select

from annexa_demo.aws.estate import seed_org_estate
from collector.config import AnnexaConfig, ConnectorConfig, LoadedConnector, Settings
from collector.runner import run_connector
from connectors.aws import AwsConnector, AwsOptions
from connectors.aws.configinventory import Inventory, parse_bucket, parse_source
from mappings.loader import load_mappings
from store.schema import evidence
from store.status import control_statuses
from tests.aws_config_fake import CAPTURED, MAX_LIMIT, SYNCED, ConfigSelectFake
from tests.aws_fixtures import FaultProxy, serve_proxy
from tests.harness import RunResult, run_engine

REGIONS = ["us-east-1", "eu-west-1"]
S3_TYPES = {"aws.s3.bucket", "aws.s3.bucket_access", "aws.s3.bucket_settings"}
#: The per-bucket reads the inventory replaces (ACL and policy status stay direct).
REPLACED = {"GetBucketEncryption", "GetPublicAccessBlock", "GetBucketPolicy",
            "GetBucketVersioning", "GetBucketLogging"}
#: Of those, the ones AWS Config's item always has (encryption and the public access
#: block are left out of the item when not configured: then they are read directly).
ALWAYS_IN_ITEM = {"GetBucketPolicy", "GetBucketVersioning", "GetBucketLogging"}
ORG_AGGREGATOR = "org-wide"
#: S3 sub-resource in the query string → operation (the proxy names only a few).
S3_OPERATIONS = {"encryption": "GetBucketEncryption", "publicAccessBlock":
                 "GetPublicAccessBlock", "policy": "GetBucketPolicy", "versioning":
                 "GetBucketVersioning", "logging": "GetBucketLogging", "policyStatus":
                 "GetBucketPolicyStatus", "acl": "GetBucketAcl",
                 "location": "GetBucketLocation"}


def s3_op(seen: Any) -> str:
    """The S3 bucket operation of one request seen by the proxy, else its own name."""
    if seen.service != "s3" or seen.method != "GET" or "?" not in seen.url:
        return str(seen.operation)
    keys = [k.split("=", 1)[0] for k in seen.url.split("?", 1)[1].split("&")]
    return next((S3_OPERATIONS[k] for k in keys if k in S3_OPERATIONS), seen.operation)


@pytest.fixture(scope="module")
def estate(aws_module_env: str) -> Iterator[dict[str, Any]]:
    """The organisation, an organisation-wide aggregator, the fake and a counting proxy
    (module scope: planting the organisation takes moto a while)."""
    org = seed_org_estate(aws_module_env)
    config = boto3.client("config", region_name="us-east-1", endpoint_url=aws_module_env)
    config.put_configuration_aggregator(
        ConfigurationAggregatorName=ORG_AGGREGATOR,
        OrganizationAggregationSource={
            "RoleArn": "arn:aws:iam::123456789012:role/config-aggregator",
            "AllAwsRegions": True})
    import os

    fake = ConfigSelectFake(upstream=os.environ["AWS_ENDPOINT_URL_CONFIG_SERVICE"])
    fake.start()
    proxy = FaultProxy(upstream=aws_module_env)
    server = serve_proxy(proxy)
    gaps = os.environ["NO_PROXY"]
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AWS_ENDPOINT_URL_CONFIG_SERVICE", fake.url)
        for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
            mp.setenv(name, proxy.url)
        for name in ("NO_PROXY", "no_proxy"):  # the two fakes only; moto goes via the proxy
            mp.setenv(name, f"{gaps},{fake.url.split('//')[1]}")
        yield {"org": org, "fake": fake, "proxy": proxy, "endpoint": aws_module_env}
    server.shutdown()
    server.server_close()
    fake.stop()


def run(estate: dict[str, Any], **extra: Any) -> tuple[RunResult, list[Any], int]:
    """One engine run of the organisation's s3 units; (result, requests seen by the
    proxy, advanced queries answered by the fake)."""
    proxy: FaultProxy = estate["proxy"]
    fake: ConfigSelectFake = estate["fake"]
    with proxy._lock:
        proxy.seen.clear()
    fake.requests.clear()
    result = run_engine("aws", {
        "regions": REGIONS, "organization": True, "member_role_name": "annexa-audit",
        "services": ["s3"], "max_workers": 8, "max_attempts": 2, **extra}, name="aws-org")
    return result, list(proxy.seen), len(fake.requests)


def outcomes(r: RunResult) -> set[tuple[str, str, str, str]]:
    return {(f.check_id, f.scope, f.resource_id, str(f.status)) for f in r.findings}


def hashes(r: RunResult) -> dict[str, str]:
    return {e.key: e.content_hash() for e in r.evidence if e.resource_type in S3_TYPES}


def bulk_options(name: str = ORG_AGGREGATOR) -> dict[str, Any]:
    return {"inventory": "config_aggregator", "config_aggregator_name": name,
            "config_aggregator_region": "us-east-1"}


def test_bulk_and_direct_modes_give_identical_findings_with_fewer_calls(
        estate: dict[str, Any]) -> None:
    direct, direct_seen, direct_selects = run(estate)
    bulk, bulk_seen, selects = run(estate, **bulk_options())
    assert direct.status == bulk.status == "succeeded", (direct.errors, bulk.errors)
    assert selects == 1  # the inventory was read (not a silent fallback)
    assert all(c.ok for c in bulk.coverage), [c for c in bulk.coverage if not c.ok]

    # Same findings (check, account, resource, status); the planted failures fail.
    assert outcomes(bulk) == outcomes(direct)
    assert not [f for f in bulk.findings if f.status == "error"]
    planted = {(check, account, rid) for account, p in estate["org"]["accounts"].items()
               for check, ids in p["fail"].items() if check.startswith("aws.s3.")
               for rid in ids}
    failing = {(f.check_id, f.scope, f.resource_id) for f in bulk.findings
               if f.status == "fail"}
    assert failing == planted and len(planted) >= 10
    # Same payloads for every bucket evidence of every account.
    assert hashes(bulk) == hashes(direct)
    buckets = {e.resource_id for e in bulk.evidence if e.resource_type == "aws.s3.bucket"}
    assert len(hashes(bulk)) == 3 * len(buckets) and len(buckets) >= 9
    assert len({e.scope for e in bulk.evidence}) == 4

    # Freshness: the sources' sync time (never the items' capture time, a last change),
    # on every bucket evidence read in bulk; one status call.
    synced = {e.source_updated_at for e in bulk.evidence}
    assert {str(t.isoformat()) for t in synced} == {"2026-12-01T06:00:00+00:00"}, CAPTURED
    assert all(e.source_updated_at is None for e in direct.evidence)
    assert [q.limit for q in estate["fake"].status_requests[-1:]] == [100]

    # Calls on the wire: the replaced reads are gone, but for the parts the items lack
    # (a bucket without default encryption or public access block: moto's and AWS's
    # items leave the key out, and absence is not taken for "not configured").
    lacking = {("GetBucketEncryption", e.resource_id) for e in direct.evidence
               if e.resource_type == "aws.s3.bucket"
               and e.payload["ServerSideEncryptionConfiguration"] is None}
    lacking |= {("GetPublicAccessBlock", e.resource_id) for e in direct.evidence
                if e.resource_type == "aws.s3.bucket"
                and e.payload["PublicAccessBlockConfiguration"] is None}
    filled = [(s3_op(s), s.bucket) for s in bulk_seen if s3_op(s) in REPLACED]
    assert sorted(filled) == sorted(lacking) and len(lacking) < 2 * len(buckets)
    direct_ops = [(s3_op(s), s.bucket) for s in direct_seen if s3_op(s) in REPLACED]
    assert sorted(direct_ops) == sorted((op, b) for op in REPLACED for b in buckets)
    # The region comes from the item when the listing lacks it (moto's does).
    located = [s for s in direct_seen if s3_op(s) == "GetBucketLocation"]
    assert not [s for s in bulk_seen if s3_op(s) == "GetBucketLocation"]
    # What stays direct is the same in both modes: the listing, ACL, policy status…
    kept = REPLACED | {"GetBucketLocation"}
    assert sorted(s3_op(s) for s in bulk_seen if s3_op(s) not in kept) == sorted(
        s3_op(s) for s in direct_seen if s3_op(s) not in kept)
    assert direct_selects == 0 and selects == -(-len(buckets) // 100) == 1
    total_direct, total_bulk = len(direct_seen), len(bulk_seen) + selects
    print(f"\n[aws bulk] {len(buckets)} buckets in 4 accounts: calls direct={total_direct} "
          f"bulk={total_bulk} (advanced queries {selects}, parts filled directly "
          f"{len(filled)}); per bucket {total_direct / len(buckets):.2f} vs "
          f"{total_bulk / len(buckets):.2f}")
    assert total_bulk == (total_direct - 5 * len(buckets) - len(located) + len(filled)
                          + selects)
    assert total_bulk < total_direct


def test_pages_are_followed_at_the_largest_page_size(estate: dict[str, Any]) -> None:
    """A fake answering 2 items a page: every page is read (NextToken), each asked for
    with Limit=100; the evidence is that of one page."""
    fake: ConfigSelectFake = estate["fake"]
    one_page, _, _ = run(estate, **bulk_options())
    fake.max_page = 2
    try:
        paged, _, selects = run(estate, **bulk_options())
        queries = list(fake.requests)
    finally:
        fake.max_page = 100
    buckets = len([e for e in paged.evidence if e.resource_type == "aws.s3.bucket"])
    assert selects == -(-buckets // 2) >= 5
    assert {q.limit for q in queries} == {100}
    assert [q.token is None for q in queries] == [True] + [False] * (selects - 1)
    assert hashes(paged) == hashes(one_page) and outcomes(paged) == outcomes(one_page)


@pytest.mark.parametrize(("aggregator", "deny", "code"), [
    ("no-such-aggregator", False, "NoSuchConfigurationAggregatorException"),
    (ORG_AGGREGATOR, True, "AccessDeniedException")], ids=["missing", "denied"])
def test_unavailable_aggregator_falls_back_to_direct_reads_with_a_logged_reason(
        estate: dict[str, Any], aggregator: str, deny: bool, code: str) -> None:
    direct, direct_seen, _ = run(estate)
    estate["fake"].deny = deny
    try:
        with structlog.testing.capture_logs() as logs:
            bulk, bulk_seen, selects = run(estate, **bulk_options(aggregator))
    finally:
        estate["fake"].deny = False
    assert bulk.status == "succeeded", bulk.errors
    assert outcomes(bulk) == outcomes(direct) and hashes(bulk) == hashes(direct)
    assert sorted(map(s3_op, bulk_seen)) == sorted(map(s3_op, direct_seen))
    assert "GetBucketLocation" in map(s3_op, bulk_seen)  # the listing has no region
    assert selects == 0  # the fake refused it before answering
    assert all(e.source_updated_at is None for e in bulk.evidence)
    warned = [e for e in logs if "aggregator could not be queried" in e["event"]]
    assert len(warned) == 1
    assert warned[0]["error"] == f"SelectAggregateResourceConfig: {code} (HTTP 400)"
    assert warned[0]["log_level"] == "warning"


def test_accounts_outside_the_aggregator_read_directly(estate: dict[str, Any]) -> None:
    """An aggregator over the management account only: the members' buckets (absent
    from the inventory) are read directly; findings and payloads are unchanged."""
    management = estate["org"]["management"]
    config = boto3.client("config", region_name="us-east-1",
                          endpoint_url=estate["endpoint"])
    config.put_configuration_aggregator(
        ConfigurationAggregatorName="management-only",
        AccountAggregationSources=[{"AccountIds": [management], "AllAwsRegions": True}])
    direct, _, _ = run(estate)
    bulk, seen, selects = run(estate, **bulk_options("management-only"))
    assert outcomes(bulk) == outcomes(direct) and hashes(bulk) == hashes(direct)
    assert selects == 1
    replaced = {s.account for s in seen if s3_op(s) in ALWAYS_IN_ITEM}
    assert replaced and management not in replaced
    fresh = {e.scope for e in bulk.evidence if e.source_updated_at is not None}
    assert fresh == {management}


def _bucket_entry(fake: ConfigSelectFake, name: str) -> str:
    from moto.s3.models import s3_backends

    for account, backends in s3_backends.items():
        bucket = backends["aws"].buckets.get(name)
        if bucket is not None:
            from tests.aws_config_fake import _moto_bucket_item

            item = _moto_bucket_item(account, bucket)
            return json.dumps({k: item[k] for k in ("accountId", "resourceName",
                                                    "supplementaryConfiguration")})
    raise AssertionError(name)


def test_malformed_entries_give_errors_for_that_bucket_never_a_pass(
        estate: dict[str, Any]) -> None:
    """Hostile entries: a bucket whose public access block is a string of garbage, one
    whose supplementary configuration is not JSON, and entries naming no bucket. The
    parts of the first two are errors (with the reason), everything else as direct."""
    fake: ConfigSelectFake = estate["fake"]
    direct, _, _ = run(estate)
    good = {e.resource_id for e in direct.evidence if e.resource_type == "aws.s3.bucket"
            and e.scope == estate["org"]["management"]}
    victim, broken = sorted(good)[:2]

    def hostile_block(entry: str) -> str:
        doc = json.loads(entry)
        doc["supplementaryConfiguration"]["PublicAccessBlockConfiguration"] = (
            '{"blockPublicAcls": "<script>yes</script>"}')
        return json.dumps(doc)

    def not_json(entry: str) -> str:
        doc = json.loads(entry)
        doc["supplementaryConfiguration"] = '{"BucketPolicy": {"policyText": '
        return json.dumps(doc)

    fake.corrupt = {victim: hostile_block, broken: not_json}
    fake.extra_entries = ["not json at all", json.dumps({"resourceName": "../etc"}),
                          json.dumps([1, 2])]
    try:
        with structlog.testing.capture_logs() as logs:
            bulk, _, _ = run(estate, **bulk_options())
    finally:
        fake.corrupt, fake.extra_entries = {}, []
    assert bulk.status == "succeeded"
    errors = {(f.check_id, f.resource_id): f.message for f in bulk.findings
              if f.status == "error"}
    # The victim: the checks reading its public access block are errors…
    assert ("aws.s3.bucket_public_access_block", victim) in errors
    assert "AWS Config item is malformed" in errors[("aws.s3.bucket_public_access_block",
                                                     victim)]
    assert "<script>" not in " ".join(errors.values())
    # …the broken one: every check reading a part the inventory gives is an error.
    for check in ("aws.s3.bucket_default_encryption", "aws.s3.bucket_public_access_block",
                  "aws.s3.bucket_tls_only", "aws.s3.bucket_versioning",
                  "aws.s3.bucket_access_logging"):
        assert (check, broken) in errors, check
    assert not [k for k in errors if k[1] not in (victim, broken)]
    # No error became a pass, and every other finding is the direct one.
    rest = {o for o in outcomes(bulk) if o[2] not in (victim, broken)}
    assert rest == {o for o in outcomes(direct) if o[2] not in (victim, broken)}
    was = {(c, r): st for c, _s, r, st in outcomes(direct)}
    for c, _s, r, st in outcomes(bulk):
        assert st in (was[(c, r)], "error"), (c, r, st)  # never a pass it was not
    # The three entries naming no bucket were skipped, and said so.
    skipped = [e for e in logs if "naming no bucket" in e["event"]]
    assert skipped and skipped[0]["entries"] == 3
    assert _bucket_entry(fake, victim)  # the fixture's bucket exists in moto


def test_results_entries_are_parsed_as_published() -> None:
    """Supplementary configuration values as objects or JSON strings (once or twice
    encoded), as AWS documents and moto renders them."""
    sup = {"PublicAccessBlockConfiguration": json.dumps(json.dumps({
        "blockPublicAcls": True, "ignorePublicAcls": True, "blockPublicPolicy": False,
        "restrictPublicBuckets": True})),
        "BucketVersioningConfiguration": {"status": "Suspended", "isMfaDeleteEnabled": False},
        "BucketLoggingConfiguration": {"destinationBucketName": None, "logFilePrefix": None},
        "BucketPolicy": {"policyText": None}}
    item = parse_bucket(json.dumps({"accountId": "123456789012", "resourceName": "b-1",
                                    "awsRegion": "eu-west-1",
                                    "supplementaryConfiguration": sup}))
    assert item is not None and item.region == "eu-west-1" and item.captured is None
    assert item.parts == {
        "PublicAccessBlockConfiguration": {"BlockPublicAcls": True, "IgnorePublicAcls": True,
                                           "BlockPublicPolicy": False,
                                           "RestrictPublicBuckets": True},
        "Versioning": {"Status": "Suspended", "MFADelete": "Disabled"},
        "Logging": {}, "Policy": None}  # encryption absent: read directly
    assert parse_bucket(json.dumps({"accountId": "12", "resourceName": "b-1"})) is None


def test_inventory_options_are_validated() -> None:
    assert AwsOptions.model_validate({}).inventory == "direct"
    with pytest.raises(ValidationError, match="inventory"):
        AwsOptions.model_validate({"inventory": "bulk"})
    with pytest.raises(ValidationError, match="needs config_aggregator_name"):
        AwsOptions.model_validate({"inventory": "config_aggregator"})
    with pytest.raises(ValidationError, match="only apply with inventory"):
        AwsOptions.model_validate({"config_aggregator_name": "org"})
    with pytest.raises(ValidationError, match="config_aggregator_name must be"):
        AwsOptions.model_validate({"inventory": "config_aggregator",
                                   "config_aggregator_name": "a b"})
    with pytest.raises(ValidationError, match="not an AWS region"):
        AwsOptions.model_validate({"inventory": "config_aggregator",
                                   "config_aggregator_name": "org",
                                   "config_aggregator_region": "mars"})
    with pytest.raises(ValidationError, match="services leaves out"):
        AwsOptions.model_validate({"inventory": "config_aggregator",
                                   "config_aggregator_name": "org", "services": ["iam"]})
    ok = AwsOptions.model_validate({"inventory": "config_aggregator",
                                    "config_aggregator_name": "org-wide_1"})
    assert ok.config_aggregator_region is None


# -- freshness: the sources' sync time, stored and counted toward stale -----------------
# Instants are taken once before a run and verdicts asked at an explicit ``at`` a day
# later: no verdict depends on how long the run takes nor on the time of day.


def _bucket_regions() -> dict[tuple[str, str], str]:
    """(account, bucket) → region, from moto (the estate's truth)."""
    from moto.s3.models import s3_backends

    return {(account, name): bucket.region_name for account, backends in s3_backends.items()
            if backends.get("aws") is not None
            for name, bucket in backends["aws"].buckets.items()}


def _secure(estate: dict[str, Any]) -> str:
    (account,) = [a for a, p in estate["org"]["accounts"].items() if p["name"] == "secure"]
    return account


def _store_run(estate: dict[str, Any], db_url: str, engine: Engine, **extra: Any) -> Any:
    """One run of the secure member's s3 units into the store (``run_connector``: the
    product's engine and writer)."""
    opts = {"regions": REGIONS, "organization": True, "member_role_name": "annexa-audit",
            "services": ["s3"], "max_workers": 8, "max_attempts": 2,
            "include_accounts": [_secure(estate)], **bulk_options(), **extra}
    cfg = ConnectorConfig(type="aws", name="aws-org", options=opts)
    loaded = LoadedConnector(cfg, AwsConnector, AwsOptions.model_validate(opts))
    settings = Settings(AnnexaConfig(database={"url": db_url}, connectors=[cfg]), None)
    settings.connectors = [loaded]
    return run_connector(settings, loaded, engine, load_mappings([]))


#: Rests on S3 checks only (aws.s3.bucket_* of mappings/checks/aws.toml), all of which
#: pass in the secure account: its status is decided by the S3 evidence alone.
CONTROL = "A.8.3"


def _status(engine: Engine, at: datetime) -> str:
    return next(c.status for c in control_statuses(engine, load_mappings([]), at=at)
                if c.id == CONTROL)


def _stored_as_of(engine: Engine, run_id: str) -> dict[str, set[datetime | None]]:
    """Bucket name → the source_updated_at of its evidence rows written by ``run_id``."""
    out: dict[str, set[datetime | None]] = {}
    with engine.connect() as conn:
        for rtype, rid, at in conn.execute(
                select(evidence.c.resource_type, evidence.c.resource_id,
                       evidence.c.source_updated_at).where(evidence.c.run_id == run_id)):
            if rtype in S3_TYPES:
                out.setdefault(rid, set()).add(at)
    return out


@pytest.fixture
def synced(estate: dict[str, Any]) -> Iterator[datetime]:
    """Every source synced an hour before the run (the fake's LastUpdateTime)."""
    fake: ConfigSelectFake = estate["fake"]
    instant = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    fake.synced = instant.timestamp()
    try:
        yield instant
    finally:
        fake.synced, fake.source_status = SYNCED, {}


def test_a_recently_synced_source_dates_its_evidence_and_the_control_passes(
        estate: dict[str, Any], engine: Engine, db_url: str, synced: datetime) -> None:
    s = _store_run(estate, db_url, engine)
    assert s.status == "succeeded", s.errors
    stored = _stored_as_of(engine, s.run_id)
    assert len(stored) >= 2 and all(v == {synced} for v in stored.values()), stored
    # Dated by the items' capture time (CAPTURED, a last change long ago) it would be
    # stale: an unchanged bucket the aggregator still vouches for passes.
    assert _status(engine, synced + timedelta(days=1)) == "pass"


def test_a_failed_source_keeps_its_old_sync_time_and_the_control_is_stale(
        estate: dict[str, Any], engine: Engine, db_url: str, synced: datetime) -> None:
    """The secure account's source in one region FAILED 30 days ago: its buckets carry
    that time (the others the fresh one), the warning names it, the control is stale."""
    account = _secure(estate)
    regions = {name: r for (a, name), r in _bucket_regions().items() if a == account}
    failed_region = sorted(regions.values())[0]
    old = synced - timedelta(days=30)
    estate["fake"].source_status[(account, failed_region)] = {
        "LastUpdateStatus": "FAILED", "LastUpdateTime": old.timestamp(),
        "LastErrorCode": "OrganizationAccessDeniedException",
        "LastErrorMessage": "not authorized"}
    with structlog.testing.capture_logs() as logs:
        s = _store_run(estate, db_url, engine)
    assert s.status == "succeeded", s.errors
    stored = _stored_as_of(engine, s.run_id)
    assert set(stored) == set(regions)
    for name, region in regions.items():
        assert stored[name] == ({old} if region == failed_region else {synced}), name
    at = synced + timedelta(days=1)
    assert _status(engine, at) == "stale"
    warned = [e for e in logs if "source not synced" in e["event"]]
    assert [(w["source"], w["source_region"], w["status"], w["error_code"],
             w["log_level"]) for w in warned] == [
        (account, failed_region, "FAILED", "OrganizationAccessDeniedException", "warning")]

    # The source syncs again: the next run confirms the unchanged buckets (no new
    # evidence rows) and the control passes.
    estate["fake"].source_status = {}
    again = _store_run(estate, db_url, engine)
    assert again.status == "succeeded" and again.counts["evidence_written"] == 0
    assert _status(engine, at) == "pass"


def test_a_denied_status_call_reads_everything_directly(estate: dict[str, Any]) -> None:
    """Without config:DescribeConfigurationAggregatorSourcesStatus the inventory's age is
    unknown: nothing of it is used (bulk data of unknown age must not look fresh)."""
    direct, direct_seen, _ = run(estate)
    estate["fake"].deny_status = True
    try:
        with structlog.testing.capture_logs() as logs:
            bulk, bulk_seen, selects = run(estate, **bulk_options())
    finally:
        estate["fake"].deny_status = False
    assert bulk.status == "succeeded", bulk.errors
    assert selects == 1  # the query itself answered; its data was not used
    assert outcomes(bulk) == outcomes(direct) and hashes(bulk) == hashes(direct)
    assert sorted(map(s3_op, bulk_seen)) == sorted(map(s3_op, direct_seen))
    assert all(e.source_updated_at is None for e in bulk.evidence)
    warned = [e for e in logs if "aggregator could not be queried" in e["event"]]
    assert len(warned) == 1 and warned[0]["log_level"] == "warning"
    assert warned[0]["error"] == ("DescribeConfigurationAggregatorSourcesStatus: "
                                  "AccessDeniedException (HTTP 400)")


def test_a_source_without_status_is_read_directly(estate: dict[str, Any]) -> None:
    """No status entry for an account and region: its buckets are not dated by the
    aggregator, so they are read directly; the rest in bulk. Status pages followed."""
    account = _secure(estate)
    regions = {name: r for (a, name), r in _bucket_regions().items() if a == account}
    gap = sorted(regions.values())[0]
    fake: ConfigSelectFake = estate["fake"]
    fake.source_status[(account, gap)] = None
    fake.status_max_page = 3
    fake.status_requests.clear()
    try:
        direct, _, _ = run(estate)
        bulk, seen, _ = run(estate, **bulk_options())
    finally:
        fake.source_status, fake.status_max_page = {}, MAX_LIMIT
    assert outcomes(bulk) == outcomes(direct) and hashes(bulk) == hashes(direct)
    undated = {n for n, r in regions.items() if r == gap}
    for e in bulk.evidence:
        if e.resource_type in S3_TYPES:
            assert (e.source_updated_at is None) == (e.resource_id in undated), e.key
    versioned = {s.bucket for s in seen if s3_op(s) == "GetBucketVersioning"}
    assert versioned == undated
    calls = list(fake.status_requests)
    assert len(calls) >= 3 and {q.limit for q in calls} == {100}
    assert [q.token is None for q in calls] == [True] + [False] * (len(calls) - 1)


def test_source_status_entries_are_parsed_as_published() -> None:
    """An organisation entry naming the organisation (not an account) dates every
    account of its region; an account's own entry wins; no region, no date."""
    stamp = datetime(2026, 11, 30, 8, tzinfo=UTC)
    org = parse_source({"SourceId": "o-abc123", "SourceType": "ORGANIZATION",
                        "AwsRegion": "eu-west-1", "LastUpdateStatus": "SUCCEEDED",
                        "LastUpdateTime": stamp})
    own = parse_source({"SourceId": "111111111111", "SourceType": "ORGANIZATION",
                        "AwsRegion": "eu-west-1", "LastUpdateStatus": "OUTDATED",
                        "LastUpdateTime": stamp - timedelta(days=9)})
    assert org is not None and own is not None
    assert parse_source({"SourceId": "111111111111"}) is None
    inv = Inventory("org", "us-east-1", sources={("o-abc123", "eu-west-1"): org,
                                                 ("111111111111", "eu-west-1"): own})
    assert inv.source("222222222222", "eu-west-1") is org
    assert inv.source("111111111111", "eu-west-1") is own
    assert inv.source("222222222222", "us-east-1") is None
    assert inv.source("222222222222", None) is None
    assert inv.unhealthy() == [own]

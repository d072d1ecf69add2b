"""The AWS connector against a real moto server over a real socket (see TESTING.md).

boto3 is pointed at moto only through the standard environment (``AWS_ENDPOINT_URL``,
proxy variables) set by ``tests/aws_fixtures.py``; the connector has no test-only path.
Faults (throttling, AccessDenied) are injected by a local HTTP proxy in front of moto,
so botocore's real retry and error handling run; no Stubber is needed.
"""

from __future__ import annotations

import json
import socket
import time
from collections import defaultdict
from pathlib import Path

import boto3
import pytest
from pydantic import ValidationError

from connectors.aws import ACTIONS, AwsConnector, AwsOptions
from connectors.aws.estate import SECURE_ACCOUNT, seed_demo_estate
from connectors.base import CollectContext, available_connectors
from connectors.checks import REGISTRY, evaluate
from connectors.records import Coverage, Evidence, Finding, Record


ROOT = Path(__file__).resolve().parents[1]
REGIONS = ["us-east-1", "eu-west-1"]


def collect(name: str = "aws-test", ctx: CollectContext | None = None, **options) -> list[Record]:
    """Records of one run, less the scope-level ``*`` unit (asserted here, once)."""
    connector = AwsConnector(name, AwsOptions(**options))
    records = list(connector.collect(ctx or CollectContext(run_id="t")))
    whole = [r for r in records if isinstance(r, Coverage) and r.service == "*"]
    assert len(whole) == 1 and whole[0].scope == name, whole
    if whole[0].ok:
        return [r for r in records if r is not whole[0]]
    return records


def findings_of(records: list[Record], params: dict | None = None) -> list[Finding]:
    """Evaluate evidence exactly as the collector does."""
    out: list[Finding] = []
    for rec in records:
        if isinstance(rec, Evidence):
            out.extend(evaluate(rec, REGISTRY.for_type(rec.resource_type), params or {}))
    return out


def coverage_of(records: list[Record]) -> dict[tuple[str, str, str], Coverage]:
    cov = [r for r in records if isinstance(r, Coverage)]
    by_unit = {(c.scope, c.region, c.service): c for c in cov}
    assert len(by_unit) == len(cov), "one Coverage per unit"
    return by_unit


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- the demo estate -----------------------------------------------------------------


@pytest.fixture
def estate(aws_env: str) -> dict:
    return seed_demo_estate(aws_env)


def test_estate_findings_match_what_was_planted(estate: dict) -> None:
    assert estate["aged"], "the moto server runs in-process, so credentials can be aged"
    check_ids = {spec.id for spec in AwsConnector.checks()}
    seen_status: dict[str, set[str]] = defaultdict(set)
    for account_id, planted in estate["accounts"].items():
        records = collect(regions=REGIONS, role_arn=planted["role_arn"])
        units = coverage_of(records)
        assert all(c.ok for c in units.values()), [c for c in units.values() if not c.ok]
        assert {u[0] for u in units} == {account_id}
        expected_units = {
            (account_id, "global", s) for s in ("iam", "s3", "s3control", "cloudtrail")
        } | {(account_id, r, "ec2") for r in REGIONS}
        assert set(units) == expected_units

        findings = findings_of(records)
        assert {f.check_id for f in findings} == check_ids
        errors = [f for f in findings if f.status == "error"]
        assert not errors, errors
        for check_id in check_ids:
            mine = [f for f in findings if f.check_id == check_id]
            failing = sorted(f.resource_id for f in mine if f.status == "fail")
            assert failing == sorted(planted["fail"].get(check_id, [])), (account_id, check_id)
            seen_status[check_id].update(f.status for f in mine)

    # every check both passes and fails somewhere in the estate (except what moto
    # cannot express: root access keys)
    for check_id in check_ids - {"aws.iam.root_access_keys"}:
        assert {"pass", "fail"} <= seen_status[check_id], check_id


def test_evidence_payloads_are_the_api_answer_without_secrets(estate: dict) -> None:
    records = collect(regions=REGIONS)
    evidence = {(e.resource_type, e.resource_id): e for e in records if isinstance(e, Evidence)}
    users = estate["accounts"]["123456789012"]["users"]

    carol = evidence[("aws.iam.user", users["carol-ci"])].payload
    key = carol["AccessKeys"][0]
    assert key["Status"] == "Active" and key["AccessKeyId"].startswith("AKIA")
    assert len(key["AccessKeyLastUsed"]["LastUsedDate"]) == 10  # day precision
    assert carol["LoginProfile"] is None and carol["MFADevices"] == []
    body = json.dumps([e.payload for e in records if isinstance(e, Evidence)])
    assert "SecretAccessKey" not in body and "SessionToken" not in body

    eu = evidence[("aws.s3.bucket", "annexa-demo-eu-data")]
    assert eu.region == "eu-west-1"
    assert eu.payload["PublicAccessBlockConfiguration"] is None  # moto: not configured
    assert "_errors" not in eu.payload

    trails = evidence[("aws.cloudtrail.trails", "123456789012")].payload["trailList"]
    # the eu-west-1 single-region trail is not visible from us-east-1; multi-region ones are
    assert {t["Name"] for t in trails} == {"annexa-demo-org-wide", "annexa-demo-app"}
    status = next(t for t in trails if t["Name"] == "annexa-demo-app")["Status"]
    assert status["IsLogging"] is True
    assert not any(k.startswith("LatestDelivery") and k.endswith("Time") for k in status)


def test_parameters_from_config_change_the_verdicts(estate: dict) -> None:
    records = collect(regions=["us-east-1"])
    users = estate["accounts"]["123456789012"]["users"]
    params = {
        "aws.iam.access_key_rotated": {"max_age_days": 0},
        "aws.iam.credentials_unused": {"max_unused_days": 150},
    }
    findings = findings_of(records, params)
    rotated = {
        f.resource_id
        for f in findings
        if f.check_id == "aws.iam.access_key_rotated" and f.status == "fail"
    }
    assert rotated == {users["carol-ci"], users["dave-legacy"]}  # every active key
    unused = {
        f.resource_id
        for f in findings
        if f.check_id == "aws.iam.credentials_unused" and f.status == "fail"
    }
    assert unused == {users["dave-legacy"]}  # 200 days; erin's 100 days now within limit


def test_region_discovery_reads_every_enabled_region(aws_env: str) -> None:
    connector = AwsConnector("aws-test", AwsOptions(max_workers=16))
    records = list(connector.collect(CollectContext(run_id="t")))
    units = coverage_of(records)
    assert all(c.ok for c in units.values())
    regions = {region for (_, region, service) in units if service == "ec2"}
    enabled = {
        r["RegionName"]
        for r in boto3.client("ec2").describe_regions()["Regions"]
        if r["OptInStatus"] != "not-opted-in"
    }
    assert regions == enabled and len(regions) > 10
    assert "ec2:DescribeRegions" in connector.operations_called


def test_permissions_document_lists_exactly_the_actions_called(estate: dict) -> None:
    called: set[str] = set()
    for planted in estate["accounts"].values():
        connector = AwsConnector("aws-test", AwsOptions(role_arn=planted["role_arn"]))
        records = list(connector.collect(CollectContext(run_id="t")))
        assert all(c.ok for c in coverage_of(records).values())
        called |= connector.operations_called
    assert called <= set(ACTIONS), called - set(ACTIONS)
    assert called == set(ACTIONS), set(ACTIONS) - called  # every declared call happens
    doc = json.loads((ROOT / "docs/permissions/aws.json").read_text())
    assert doc["Version"] == "2012-10-17"
    (statement,) = doc["Statement"]
    assert statement["Effect"] == "Allow"
    needed = {ACTIONS[op] for op in called} - {None}
    assert set(statement["Action"]) == needed
    assert all(a.split(":")[1].startswith(("Get", "List", "Describe")) for a in needed)


def test_assume_role_reads_the_target_account(estate: dict) -> None:
    role = estate["accounts"][SECURE_ACCOUNT]["role_arn"]
    records = collect(regions=["us-east-1"], role_arn=role, external_id="annexa-ext-id")
    assert {r.scope for r in records} == {SECURE_ACCOUNT}


# --- failures are contained ------------------------------------------------------------


def test_unreachable_endpoint_is_one_quick_coverage_error(aws_offline_env: None) -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    start = time.monotonic()
    records = collect("offline", endpoint_url=url, connect_timeout=1, max_attempts=2)
    assert time.monotonic() - start < 10
    assert len(records) == 1
    (cov,) = records
    assert isinstance(cov, Coverage) and not cov.ok
    assert (cov.scope, cov.region, cov.service) == ("offline", "global", "*")
    assert "unreachable" in cov.error and "127.0.0.1" not in cov.error


def test_unreachable_service_fails_only_its_unit(
    aws_env: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """IAM's endpoint is a closed port (standard per-service endpoint variable)."""
    dead = f"127.0.0.1:{closed_port()}"
    monkeypatch.setenv("AWS_ENDPOINT_URL_IAM", f"http://{dead}")
    monkeypatch.setenv("NO_PROXY", dead)  # go straight to the closed port
    boto3.client("s3").create_bucket(Bucket="annexa-still-read")
    start = time.monotonic()
    records = collect(regions=["us-east-1"], connect_timeout=1, max_attempts=2)
    assert time.monotonic() - start < 10
    units = coverage_of(records)
    iam = units[("123456789012", "global", "iam")]
    assert not iam.ok and "EndpointConnectionError" in iam.error
    assert all(c.ok for key, c in units.items() if key[2] != "iam")
    assert not any(isinstance(r, Evidence) and r.service == "iam" for r in records)
    assert any(isinstance(r, Evidence) and r.resource_id == "annexa-still-read" for r in records)


def test_throttling_is_retried_then_reported_for_that_unit(aws_fault_proxy) -> None:
    boto3.client("s3").create_bucket(Bucket="annexa-throttle-test")
    aws_fault_proxy.fail(service="iam", code="Throttling", message="Rate exceeded")
    records = collect(regions=["us-east-1"], max_attempts=3)
    units = coverage_of(records)
    iam = units[("123456789012", "global", "iam")]
    assert not iam.ok and iam.error == "ListUsers: Throttling (HTTP 400)"
    assert aws_fault_proxy.count(service="iam", operation="ListUsers") == 3
    assert all(c.ok for key, c in units.items() if key[2] != "iam")
    assert any(isinstance(r, Evidence) and r.resource_id == "annexa-throttle-test" for r in records)


def test_access_denied_on_one_bucket_is_an_error_for_that_check_only(
    aws_fault_proxy, aws_env: str
) -> None:
    plan = seed_demo_estate(aws_env)
    aws_fault_proxy.fail(
        service="s3",
        operation="GetBucketEncryption",
        bucket="annexa-demo-logs",
        code="AccessDenied",
        status=403,
    )
    records = collect(regions=["us-east-1"])
    assert coverage_of(records)[("123456789012", "global", "s3")].ok
    logs = next(
        r for r in records if isinstance(r, Evidence) and r.resource_id == "annexa-demo-logs"
    )
    assert "ServerSideEncryptionConfiguration" not in logs.payload
    assert logs.payload["_errors"] == {"ServerSideEncryptionConfiguration": "AccessDenied"}
    verdicts = {(f.check_id, f.resource_id): f for f in findings_of(records)}
    enc = verdicts[("aws.s3.bucket_default_encryption", "annexa-demo-logs")]
    assert enc.status == "error" and "AccessDenied" in enc.message
    assert verdicts[("aws.s3.bucket_public_access_block", "annexa-demo-logs")].status == "pass"
    assert verdicts[("aws.s3.bucket_default_encryption", "annexa-demo-public")].status == "pass"
    assert plan["aged"]


def test_unreadable_trail_status_makes_logging_check_an_error(
    aws_fault_proxy, aws_env: str
) -> None:
    seed_demo_estate(aws_env)
    aws_fault_proxy.fail(
        service="cloudtrail", operation="GetTrailStatus", code="AccessDeniedException"
    )
    records = collect(regions=["us-east-1"])
    assert all(c.ok for c in coverage_of(records).values())
    (finding,) = [
        f for f in findings_of(records) if f.check_id == "aws.cloudtrail.multi_region_logging"
    ]
    assert finding.status == "error" and "AccessDeniedException" in finding.message
    validation = [
        f for f in findings_of(records) if f.check_id == "aws.cloudtrail.log_file_validation"
    ]
    assert {f.status for f in validation} == {"pass", "fail"}  # still judged


def test_region_discovery_failure_fails_only_region_dependent_units(aws_fault_proxy) -> None:
    aws_fault_proxy.fail(
        service="ec2", operation="DescribeRegions", code="UnauthorizedOperation", status=403
    )
    records = collect()  # regions=None: discover them
    units = coverage_of(records)
    assert {k[1:] for k, c in units.items() if not c.ok} == {
        ("global", "ec2"),
        ("global", "cloudtrail"),
    }
    assert units[("123456789012", "global", "ec2")].error == (
        "region discovery failed: DescribeRegions: UnauthorizedOperation (HTTP 403)"
    )
    assert {k[2] for k, c in units.items() if c.ok} == {"iam", "s3", "s3control"}


def test_s3control_goes_through_the_moto_proxy(aws_env: str) -> None:
    """The account-id host prefix of S3 Control resolves only via the proxy trick."""
    control = boto3.client("s3control")
    control.put_public_access_block(
        AccountId="123456789012",
        PublicAccessBlockConfiguration={
            "BlockPublicAcls": True,
            "IgnorePublicAcls": True,
            "BlockPublicPolicy": True,
            "RestrictPublicBuckets": True,
        },
    )
    records = collect(regions=["us-east-1"])
    (ev,) = [
        r
        for r in records
        if isinstance(r, Evidence)
        and r.resource_type == "aws.s3control.account_public_access_block"
    ]
    assert ev.payload["PublicAccessBlockConfiguration"]["BlockPublicPolicy"] is True


def test_cancelled_run_schedules_no_units(aws_env: str) -> None:
    ctx = CollectContext(run_id="t")
    ctx.cancel_event.set()
    assert collect(ctx=ctx, regions=["us-east-1"]) == []


def test_cancel_mid_run_schedules_no_further_units(aws_env: str) -> None:
    ctx = CollectContext(run_id="t")
    connector = AwsConnector("aws-test", AwsOptions(regions=REGIONS, max_workers=1))
    records = []
    for rec in connector.collect(ctx):
        if isinstance(rec, Coverage) and rec.service == "*":
            continue  # the account opened; cancel on the first record of the first unit
        records.append(rec)
        ctx.cancel_event.set()  # after the first record of the first unit (IAM)
    assert {r.service for r in records} == {"iam"}
    assert len(coverage_of(records)) <= 1


# --- options and registration --------------------------------------------------------


def test_options_validation() -> None:
    AwsOptions(endpoint_url="https://vpce.example.internal", regions=["eu-central-1"])
    AwsOptions(endpoint_url="http://localhost:4566")
    for bad in (
        {"endpoint_url": "http://aws.example.com"},
        {"endpoint_url": "ftp://127.0.0.1"},
        {"regions": []},
        {"regions": ["mars-north-1x"]},
        {"role_arn": "arn:aws:iam::12:user/x"},
        {"external_id": "x"},
        {"session_name": "a"},
        {"max_workers": 0},
        {"unknown": 1},
    ):
        with pytest.raises(ValidationError):
            AwsOptions(**bad)


def test_insecure_endpoint_env_var_is_refused(
    aws_offline_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://aws.example.com")
    (cov,) = collect("env")
    assert not cov.ok and cov.error.startswith("AWS_ENDPOINT_URL")


def test_registered_as_entry_point_with_mapped_checks() -> None:
    assert available_connectors()["aws"] is AwsConnector
    from mappings import load_mappings

    index = load_mappings()
    for spec in AwsConnector.checks():
        assert spec.id.startswith("aws.") and spec.resource_type.startswith("aws.")
        assert index.controls_for(spec.id), f"{spec.id} has no control mapping"

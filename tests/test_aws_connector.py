"""The AWS connector when things go wrong, against a real moto server over a real socket.

boto3 is pointed at moto only through the standard environment (``AWS_ENDPOINT_URL``,
proxy variables) set by ``tests/aws_fixtures.py``; the connector has no test-only path.
Faults (throttling, AccessDenied) are injected by a local HTTP proxy in front of moto,
so botocore's real retry and error handling run; no Stubber is needed. Each test plants
only the few resources it needs (the full estates are in test_aws_demo / test_aws_org).
"""

from __future__ import annotations

import json
import socket
import time
from typing import Any

import boto3
import pytest
from pydantic import ValidationError
from sqlalchemy import Engine, select

from collector.config import AnnexaConfig, ConnectorConfig, LoadedConnector, Settings
from collector.runner import run_connector
from connectors.aws import AwsConnector, AwsOptions
from connectors.aws.connector import SERVICES
from core.connector import CollectContext, available_connectors
from core.records import Coverage, Evidence, Record
from mappings import load_mappings
from store.schema import findings as findings_table
from tests.harness import run_engine

MAIN = "123456789012"
REGIONAL = {"ec2", "vpc", "logs", "kms", "rds", "guardduty", "config", "securityhub",
            "inspector2", "ecr", "macie", "route53resolver",
            "backup", "elbv2", "accessanalyzer"}


def collect(name: str = "aws-test", ctx: CollectContext | None = None, **options) -> list[Record]:
    """Records of one run, less the scope-level ``*`` unit (asserted here, once)."""
    connector = AwsConnector(name, AwsOptions(**options))
    records = list(connector.collect(ctx or CollectContext(run_id="t")))
    whole = [r for r in records if isinstance(r, Coverage) and r.service == "*"
             and r.scope == name]
    assert len(whole) == 1, whole
    if whole[0].ok:
        return [r for r in records if r is not whole[0]]
    return records


def coverage_of(records: list[Record]) -> dict[tuple[str, str, str], Coverage]:
    cov = [r for r in records if isinstance(r, Coverage)]
    by_unit = {(c.scope, c.region, c.service): c for c in cov}
    assert len(by_unit) == len(cov), "one Coverage per unit"
    return by_unit


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def small_org(members: int = 3) -> list[str]:
    """An organisation of the caller's account and ``members`` new accounts."""
    org = boto3.client("organizations")
    org.create_organization(FeatureSet="ALL")
    return [
        org.create_account(Email=f"m{i}@example.com", AccountName=f"member-{i}",
                           RoleName="annexa-audit")["CreateAccountStatus"]["AccountId"]
        for i in range(members)
    ]


def member_client(service: str, account_id: str, region: str = "us-east-1") -> Any:
    creds = boto3.client("sts").assume_role(
        RoleArn=f"arn:aws:iam::{account_id}:role/annexa-audit", RoleSessionName="seed"
    )["Credentials"]
    return boto3.client(service, region_name=region,
                        aws_access_key_id=creds["AccessKeyId"],
                        aws_secret_access_key=creds["SecretAccessKey"],
                        aws_session_token=creds["SessionToken"])


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
    for name in ("NO_PROXY", "no_proxy"):  # go straight to the closed port
        monkeypatch.setenv(name, dead)
    boto3.client("s3").create_bucket(Bucket="annexa-still-read")
    # A refused connection fails at once and is retried max_attempts times; how long that
    # takes depends on the machine's load, so it is not asserted (tests judge outcomes).
    records = collect(regions=["us-east-1"], connect_timeout=1, max_attempts=2,
                      services=["iam", "s3", "s3control", "kms"])
    units = coverage_of(records)
    iam = units[(MAIN, "global", "iam")]
    assert not iam.ok and "EndpointConnectionError" in iam.error
    assert all(c.ok for key, c in units.items() if key[2] != "iam")
    assert not any(isinstance(r, Evidence) and r.service == "iam" for r in records)
    assert any(isinstance(r, Evidence) and r.resource_id == "annexa-still-read" for r in records)


def test_throttling_is_retried_then_reported_for_that_unit(aws_fault_proxy) -> None:
    boto3.client("s3").create_bucket(Bucket="annexa-throttle-test")
    aws_fault_proxy.fail(service="iam", code="Throttling", message="Rate exceeded")
    records = collect(regions=["us-east-1"], max_attempts=3, services=["iam", "s3"])
    units = coverage_of(records)
    iam = units[(MAIN, "global", "iam")]
    assert not iam.ok and iam.error == "ListUsers: Throttling (HTTP 400)"
    assert aws_fault_proxy.count(service="iam", operation="ListUsers") == 3
    assert all(c.ok for key, c in units.items() if key[2] != "iam")
    assert any(isinstance(r, Evidence) and r.resource_id == "annexa-throttle-test" for r in records)


def test_access_denied_on_one_bucket_is_an_error_for_that_check_only(aws_fault_proxy) -> None:
    s3 = boto3.client("s3")
    for name in ("annexa-denied", "annexa-readable"):
        s3.create_bucket(Bucket=name)
        s3.put_bucket_encryption(Bucket=name, ServerSideEncryptionConfiguration={
            "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]})
    aws_fault_proxy.fail(service="s3", operation="GetBucketEncryption", bucket="annexa-denied",
                         code="AccessDenied", status=403)
    run = run_engine("aws", {"regions": ["us-east-1"], "services": ["s3"]}, name="aws-test")
    records = run.records
    assert coverage_of(records)[(MAIN, "global", "s3")].ok
    denied = next(r for r in records if isinstance(r, Evidence)
                  and r.resource_type == "aws.s3.bucket" and r.resource_id == "annexa-denied")
    assert "ServerSideEncryptionConfiguration" not in denied.payload
    assert denied.payload["_errors"] == {"ServerSideEncryptionConfiguration": "AccessDenied"}
    verdicts = {(f.check_id, f.resource_id): f for f in run.findings}
    enc = verdicts[("aws.s3.bucket_default_encryption", "annexa-denied")]
    assert enc.status == "error" and "AccessDenied" in enc.message
    assert verdicts[("aws.s3.bucket_public_access_block", "annexa-denied")].status == "fail"
    assert verdicts[("aws.s3.bucket_versioning", "annexa-denied")].status == "fail"
    assert verdicts[("aws.s3.bucket_default_encryption", "annexa-readable")].status == "pass"


def test_unreadable_trail_status_makes_logging_check_an_error(aws_fault_proxy) -> None:
    boto3.client("s3").create_bucket(Bucket="annexa-trail-logs")
    ct = boto3.client("cloudtrail")
    ct.create_trail(Name="annexa-multi", S3BucketName="annexa-trail-logs",
                    IsMultiRegionTrail=True, EnableLogFileValidation=True)
    ct.create_trail(Name="annexa-single", S3BucketName="annexa-trail-logs")
    aws_fault_proxy.fail(
        service="cloudtrail", operation="GetTrailStatus", code="AccessDeniedException"
    )
    run = run_engine("aws", {"regions": ["us-east-1"], "services": ["cloudtrail"]},
                     name="aws-test")
    assert all(c.ok for c in coverage_of(run.records).values())
    (finding,) = [
        f for f in run.findings if f.check_id == "aws.cloudtrail.multi_region_logging"
    ]
    assert finding.status == "error" and "AccessDeniedException" in finding.message
    validation = [
        f for f in run.findings if f.check_id == "aws.cloudtrail.log_file_validation"
    ]
    assert {f.status for f in validation} == {"pass", "fail"}  # still judged
    public = [f for f in run.findings if f.check_id == "aws.cloudtrail.bucket_not_public"]
    assert {f.status for f in public} == {"pass"}


def test_region_discovery_failure_fails_only_region_dependent_units(aws_fault_proxy) -> None:
    aws_fault_proxy.fail(
        service="ec2", operation="DescribeRegions", code="UnauthorizedOperation", status=403
    )
    records = collect()  # regions=None: discover them
    units = coverage_of(records)
    assert {k[1:] for k, c in units.items() if not c.ok} == {
        ("global", s) for s in REGIONAL | {"cloudtrail"}
    }
    assert units[(MAIN, "global", "ec2")].error == (
        "region discovery failed: DescribeRegions: UnauthorizedOperation (HTTP 403)"
    )
    assert {k[2] for k, c in units.items() if c.ok} == {"iam", "s3", "s3control",
                                                         "organizations", "cloudfront",
                                                         "budgets"}


# --- organisation mode: one account or one service failing --------------------------------


def test_unassumable_member_is_an_error_for_its_scope_only(aws_fault_proxy) -> None:
    members = small_org()
    broken = members[1]
    fault = aws_fault_proxy.fail(service="sts", operation="AssumeRole", code="AccessDenied",
                                 status=403, body_contains=f"%3A{broken}%3Arole")
    options = dict(regions=["us-east-1"], organization=True, member_role_name="annexa-audit",
                   services=["s3control"], connect_timeout=1)
    records = collect("aws-org", **options)
    scopes = {r.scope: r for r in records if isinstance(r, Coverage) and r.service == "*"}
    assert set(scopes) == {MAIN, *members}
    assert not scopes[broken].ok and scopes[broken].region == "global"
    assert scopes[broken].error == (
        "account could not be opened: AssumeRole: AccessDenied (HTTP 403)")
    assert fault.hits == 1  # AccessDenied is not retried
    assert all(scopes[a].ok for a in scopes if a != broken)
    read = {r.scope for r in records if isinstance(r, Evidence)}
    assert read == {MAIN, *members} - {broken}

    # once the role can be assumed again, the scope reports ok (closing its errors)
    aws_fault_proxy.faults.clear()
    again = collect("aws-org", **options)
    assert [r.ok for r in again if isinstance(r, Coverage) and r.scope == broken
            and r.service == "*"] == [True]


def _settings(db_url: str, **options: Any) -> tuple[Settings, LoadedConnector]:
    model = AnnexaConfig(
        database={"url": db_url},
        connectors=[ConnectorConfig(type="aws", name="aws-org", options=options)],
    )
    settings = Settings(model, None)
    cfg = model.connectors[0]
    loaded = LoadedConnector(cfg, AwsConnector, AwsOptions.model_validate(cfg.options))
    return settings, loaded


def test_access_denied_on_one_service_in_one_account_errors_only_there(
    aws_fault_proxy, engine: Engine, db_url: str
) -> None:
    """Through the collector into the store: AccessDenied on RDS in one member account
    gives ``error`` findings for the RDS checks of that account and region only; every
    other account's RDS findings and every other service are stored and judged."""
    members = small_org()
    denied = members[0]
    for account_id in [MAIN, *members]:
        rds = boto3.client("rds") if account_id == MAIN else member_client("rds", account_id)
        rds.create_db_instance(
            DBInstanceIdentifier=f"db-{account_id}", DBInstanceClass="db.t3.micro",
            Engine="postgres", MasterUsername="annexa", MasterUserPassword="Annexa-test-1",
            AllocatedStorage=20, StorageEncrypted=True, BackupRetentionPeriod=7,
            PubliclyAccessible=False)
    aws_fault_proxy.fail(service="rds", account=denied, code="AccessDenied", status=403)
    settings, loaded = _settings(db_url, regions=["us-east-1"], organization=True,
                                 member_role_name="annexa-audit", services=["rds", "kms"])
    summary = run_connector(settings, loaded, engine, load_mappings())
    assert summary.status == "partial"
    assert summary.errors == [
        f"{denied}/us-east-1/rds: DescribeDBInstances: AccessDenied (HTTP 403)"]
    with engine.connect() as conn:
        rows = conn.execute(select(
            findings_table.c.check_id, findings_table.c.scope, findings_table.c.region,
            findings_table.c.status, findings_table.c.resource_id)).all()
    errors = [r for r in rows if r.status == "error"]
    rds_checks = {s.id for s in AwsConnector.checks() if s.resource_type.startswith("aws.rds.")}
    assert {r.check_id for r in errors} == rds_checks
    assert {(r.scope, r.region) for r in errors} == {(denied, "us-east-1")}
    judged = {r.scope for r in rows if r.check_id.startswith("aws.rds.") and r.status != "error"}
    assert judged == {MAIN, *members} - {denied}
    kms_units = {r.scope for r in rows if r.check_id == "aws.kms.key_rotation"}
    assert kms_units <= {MAIN, *members}  # other services unaffected (no key: no finding)
    assert not [r for r in rows if r.status == "error" and r.scope != denied]


# --- cancellation --------------------------------------------------------------------


def test_cancelled_run_schedules_no_units(aws_env: str) -> None:
    ctx = CollectContext(run_id="t")
    ctx.cancel_event.set()
    assert collect(ctx=ctx, regions=["us-east-1"]) == []


def test_cancel_mid_run_schedules_no_further_units(aws_env: str) -> None:
    ctx = CollectContext(run_id="t")
    connector = AwsConnector("aws-test", AwsOptions(regions=["us-east-1", "eu-west-1"],
                                                    max_workers=1))
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
    AwsOptions(endpoint_url="http://localhost:4566", services=list(SERVICES))
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
    index = load_mappings()
    specs = AwsConnector.checks()
    assert len(specs) >= 35
    for spec in specs:
        assert spec.id.startswith("aws.") and spec.resource_type.startswith("aws.")
        assert index.controls_for(spec.id), f"{spec.id} has no control mapping"
    # encryption is cryptography (A.8.24), never data masking (A.8.11)
    assert not [s.id for s in specs if "A.8.11" in index.controls_for(s.id)]
    assert json.dumps(sorted(SERVICES))  # services are plain names

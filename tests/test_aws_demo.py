"""The AWS connector on the demo estate (``annexa demo``), planted once for the module.

A real moto server over a real socket (see TESTING.md); boto3 is pointed at it only
through the standard environment set by ``tests/aws_fixtures.py``. moto has no Access
Analyzer: that service is the local fake of ``annexa_demo.aws.fakes`` (real wire
protocol, reached through ``AWS_ENDPOINT_URL_ACCESSANALYZER``).
"""

from __future__ import annotations

import json
import os
from collections import defaultdict

import boto3
import pytest

from annexa_demo.aws.estate import MAIN_ACCOUNT, SECURE_ACCOUNT, seed_demo_estate
from connectors.aws import AwsConnector, AwsOptions
from connectors.aws.connector import SERVICES
from core.connector import CollectContext
from core.records import Coverage, Evidence, Record
from core.times import activity_time
from tests.harness import RunResult, run_engine

REGIONS = ["us-east-1", "eu-west-1"]
GLOBAL_SERVICES = {"iam", "s3", "s3control", "cloudtrail", "organizations", "cloudfront",
                   "budgets"}


def collect(name: str = "aws-test", **options) -> list[Record]:
    """Records of one run, less the scope-level ``*`` unit (asserted here, once)."""
    connector = AwsConnector(name, AwsOptions(**options))
    records = list(connector.collect(CollectContext(run_id="t")))
    whole = [r for r in records if isinstance(r, Coverage) and r.service == "*"]
    assert len(whole) == 1 and whole[0].scope == name and whole[0].ok, whole
    return [r for r in records if r is not whole[0]]


def engine(name: str = "aws-test", checks: dict | None = None, **options) -> RunResult:
    """One run through the product's run engine (tests/harness.py); the scope-level
    ``*`` unit is asserted here, once (``RunResult.records`` leaves it out)."""
    run = run_engine("aws", options, name=name, checks=checks)
    whole = [c for c in run.coverage if c.service == "*"]
    assert len(whole) == 1 and whole[0].scope == name and whole[0].ok, whole
    return run


@pytest.fixture(scope="module")
def estate(aws_module_env: str) -> dict:
    return seed_demo_estate(aws_module_env)


@pytest.fixture(scope="module")
def runs(estate: dict) -> dict[str, RunResult]:
    """One engine run per demo account (main: own credentials; secure: assumed role)."""
    return {
        account_id: engine(regions=REGIONS, role_arn=planted["role_arn"])
        for account_id, planted in estate["accounts"].items()
    }


def test_every_unit_is_read_and_every_check_judged(estate: dict, runs: dict) -> None:
    check_ids = {spec.id for spec in AwsConnector.checks()}
    assert len(check_ids) >= 35
    for account_id, run in runs.items():
        cov = [r for r in run.records if isinstance(r, Coverage)]
        units = {(c.scope, c.region, c.service) for c in cov}
        assert len(units) == len(cov), "one Coverage per unit"
        assert all(c.ok for c in cov), [c for c in cov if not c.ok]
        expected = {(account_id, "global", s) for s in GLOBAL_SERVICES} | {
            (account_id, r, s) for r in REGIONS for s in set(SERVICES) - GLOBAL_SERVICES
        }
        assert units == expected
        findings = run.findings
        assert {f.check_id for f in findings} == check_ids
        assert not [f for f in findings if f.status == "error"]


def test_each_check_fails_exactly_the_planted_resources(estate: dict, runs: dict) -> None:
    assert estate["aged"], "the moto server runs in-process: credentials aged, root row set"
    statuses: dict[str, set[str]] = defaultdict(set)
    for account_id, run in runs.items():
        planted = estate["accounts"][account_id]["fail"]
        findings = run.findings
        for spec in AwsConnector.checks():
            mine = [f for f in findings if f.check_id == spec.id]
            failing = sorted(f.resource_id for f in mine if f.status == "fail")
            assert failing == sorted(planted.get(spec.id, [])), (account_id, spec.id)
            statuses[spec.id].update(f.status for f in mine)
    # the secure account fails nothing
    assert estate["accounts"][SECURE_ACCOUNT]["fail"] == {}
    # most checks both pass and fail in the demo (the org estate covers the rest)
    both = [c for c, s in statuses.items() if {"pass", "fail"} <= s]
    assert len(both) >= 35, sorted(set(statuses) - set(both))


def test_evidence_payloads_are_the_api_answer_without_secrets(estate: dict, runs: dict) -> None:
    records = runs[MAIN_ACCOUNT].records
    evidence = {(e.resource_type, e.resource_id): e for e in records if isinstance(e, Evidence)}
    users = estate["accounts"][MAIN_ACCOUNT]["users"]

    carol = evidence[("aws.iam.user", users["carol-ci"])].payload
    key = carol["AccessKeys"][0]
    assert key["Status"] == "Active" and key["AccessKeyId"].startswith("AKIA")
    # A last use is stored to the day only while under a day old, else to the second.
    assert activity_time(key["AccessKeyLastUsed"]["LastUsedDate"]) == (
        key["AccessKeyLastUsed"]["LastUsedDate"]
    )
    assert carol["LoginProfile"] is None and carol["MFADevices"] == []
    assert carol["GroupList"] == ["annexa-demo-readers"]
    body = json.dumps([e.payload for e in records if isinstance(e, Evidence)])
    assert "SecretAccessKey" not in body and "SessionToken" not in body

    dave = evidence[("aws.iam.user", users["dave-legacy"])].payload
    (attached,) = dave["AttachedManagedPolicies"]
    assert attached["PolicyName"] == "annexa-demo-admin"
    assert attached["FullAdminStatements"] == [
        {"Effect": "Allow", "Action": "*", "Resource": "*"}
    ]

    root = evidence[("aws.iam.root_user", f"arn:aws:iam::{MAIN_ACCOUNT}:root")].payload
    assert root["CredentialReportRow"]["mfa_active"] == "true"
    used = root["CredentialReportRow"]["password_last_used"]
    assert activity_time(used) == used
    assert root["RootVirtualMFADevices"] == []

    eu = evidence[("aws.s3.bucket", "annexa-demo-eu-data")]
    assert eu.region == "eu-west-1" and eu.payload["Arn"] == "arn:aws:s3:::annexa-demo-eu-data"
    assert eu.payload["PublicAccessBlockConfiguration"] is None  # moto: not configured
    assert "_errors" not in eu.payload
    public = evidence[("aws.s3.bucket_access", "annexa-demo-public")].payload
    assert public["PolicyStatus"] == {"IsPublic": True}
    assert public["Policy"]["Statement"][0]["Principal"] == "*"

    trails = evidence[("aws.cloudtrail.trails", MAIN_ACCOUNT)].payload["trailList"]
    # the eu-west-1 single-region trail is not visible from us-east-1; multi-region ones are
    assert {t["Name"] for t in trails} == {"annexa-demo-org-wide", "annexa-demo-app"}
    status = next(t for t in trails if t["Name"] == "annexa-demo-app")["Status"]
    assert status["IsLogging"] is True
    assert not any(k.startswith("LatestDelivery") and k.endswith("Time") for k in status)

    def of_type(resource_type: str) -> list[Evidence]:
        return [e for e in records if isinstance(e, Evidence)
                and e.resource_type == resource_type]

    logs = of_type("aws.logs.log_group")
    assert logs and all("storedBytes" not in e.payload for e in logs)
    assert all(e.resource_id.startswith("arn:aws:logs:") and not e.resource_id.endswith(":*")
               for e in logs)
    instances = of_type("aws.ec2.instance")
    assert {e.payload["IMDSv2Required"] for e in instances} == {True, False}


def test_findings_carry_account_region_and_resource_arn(runs: dict) -> None:
    per_region = {"aws.ec2.ebs_encryption_by_default", "aws.guardduty.detectors",
                  "aws.config.recorders", "aws.securityhub.hub", "aws.backup.plans",
                  "aws.accessanalyzer.analyzers", "aws.config.conformance_packs",
                  "aws.backup.restore_testing", "aws.inspector2.account_status",
                  "aws.macie.status"}
    per_account = {"aws.iam.password_policy", "aws.iam.account", "aws.cloudtrail.trails",
                   "aws.s3control.account_public_access_block", "aws.budgets.budgets"}
    # a standalone account is its own (ungoverned) organisation: id = account id
    standalone = {"aws.organizations.account", "aws.organizations.organization"}
    buckets = {"aws.s3.bucket", "aws.s3.bucket_access", "aws.s3.bucket_settings"}
    for account_id, run in runs.items():
        for f in run.findings:
            assert f.scope == account_id
            assert f.region in (*REGIONS, "global")
            if f.resource_type in per_region:
                assert f.resource_id == f.region
            elif f.resource_type in per_account or (
                    f.resource_type in standalone and f.resource_id == account_id):
                assert f.resource_id == account_id and f.region == "global"
            elif f.resource_type in buckets:
                assert f.region in REGIONS  # the bucket's region; its ARN is in the payload
            else:
                assert f.resource_id.startswith("arn:aws:"), f
                assert account_id in f.resource_id, f
                if f.region != "global":
                    assert f":{f.region}:" in f.resource_id, f


def test_parameters_from_config_change_the_verdicts(estate: dict, runs: dict) -> None:
    users = estate["accounts"][MAIN_ACCOUNT]["users"]
    params = {
        "aws.iam.access_key_rotated": {"max_age_days": 0},
        "aws.iam.credentials_unused": {"max_unused_days": 150},
        "aws.logs.log_group_retention": {"min_retention_days": 30},
        "aws.iam.role_no_full_admin_policy": {"allowed_names": ["annexa-demo-*"]},
        "aws.iam.password_policy_max_age": {"max_age_days": 90},
    }
    main, secure_role = (estate["accounts"][a]["role_arn"] for a in (MAIN_ACCOUNT, SECURE_ACCOUNT))
    findings = engine(regions=REGIONS, role_arn=main, services=["iam", "logs"],
                      checks=params).findings

    def failing(check_id: str) -> set[str]:
        return {f.resource_id for f in findings if f.check_id == check_id and f.status == "fail"}

    assert failing("aws.iam.access_key_rotated") == {users["carol-ci"], users["dave-legacy"]}
    assert failing("aws.iam.credentials_unused") == {users["dave-legacy"]}  # erin: 100 < 150
    assert failing("aws.logs.log_group_retention") == set()  # 30 days now enough
    assert failing("aws.iam.role_no_full_admin_policy") == set()  # approved by name
    # expiry required: main's policy sets none, secure's expires passwords after 90 days
    assert failing("aws.iam.password_policy_max_age") == {MAIN_ACCOUNT}
    secure_run = engine(regions=REGIONS, role_arn=secure_role, services=["iam"], checks=params)
    secure = {f.status for f in secure_run.findings
              if f.check_id == "aws.iam.password_policy_max_age"}
    assert secure == {"pass"}


def test_s3control_reads_through_the_one_endpoint(runs: dict) -> None:
    """No proxy is set: S3 Control reaches moto at the endpoint's own host (the account
    id travels in its header, not in front of the host name)."""
    assert not any(os.environ.get(v) for v in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy",
                                                "https_proxy"))
    (ev,) = [
        r for r in runs[SECURE_ACCOUNT].records
        if isinstance(r, Evidence)
        and r.resource_type == "aws.s3control.account_public_access_block"
    ]
    assert ev.payload["PublicAccessBlockConfiguration"]["BlockPublicPolicy"] is True


def test_region_discovery_reads_every_enabled_region(estate: dict) -> None:
    connector = AwsConnector("aws-test", AwsOptions(max_workers=16,
                                                    services=["ec2", "cloudtrail"]))
    records = list(connector.collect(CollectContext(run_id="t")))
    cov = [r for r in records if isinstance(r, Coverage) and r.service != "*"]
    assert all(c.ok for c in cov)
    regions = {c.region for c in cov if c.service == "ec2"}
    enabled = {
        r["RegionName"]
        for r in boto3.client("ec2").describe_regions()["Regions"]
        if r["OptInStatus"] != "not-opted-in"
    }
    assert regions == enabled and len(regions) > 10
    assert {c.service for c in cov} == {"ec2", "cloudtrail"}  # only the services asked for
    assert "ec2:DescribeRegions" in connector.operations_called


def test_assume_role_reads_the_target_account(estate: dict) -> None:
    role = estate["accounts"][SECURE_ACCOUNT]["role_arn"]
    records = collect(regions=["us-east-1"], role_arn=role, external_id="annexa-ext-id",
                      services=["iam"])
    assert {r.scope for r in records} == {SECURE_ACCOUNT}

"""Organisation mode against moto's server: a management account and three members in
two regions, planted once for the module (``annexa_demo.aws.estate.seed_org_estate``).

moto's Organizations lists the accounts; ``sts:AssumeRole`` into each member returns
credentials of that member's own backend, so the fan-out is real. Access Analyzer is the
local fake of ``annexa_demo.aws.fakes`` (moto has none).
"""

from __future__ import annotations

import fnmatch
import json
from collections import defaultdict
from pathlib import Path

import pytest
from pydantic import ValidationError

from annexa_demo.aws.estate import seed_org_estate
from connectors.aws import ACTIONS, AwsConnector, AwsOptions
from connectors.aws.connector import SERVICES
from core.connector import CollectContext
from core.records import Coverage
from tests.harness import RunResult, run_built

ROOT = Path(__file__).resolve().parents[1]
REGIONS = ["us-east-1", "eu-west-1"]
GLOBAL_SERVICES = {"iam", "s3", "s3control", "cloudtrail", "organizations", "cloudfront",
                   "budgets"}

#: Action patterns of AWS's managed policy ``SecurityAudit`` that the connector relies on.
#: Source: arn:aws:iam::aws:policy/SecurityAudit, default version v47 (2024-11-22), as
#: archived by the MAMIP project (github.com/zoph-io/MAMIP, file policies/SecurityAudit);
#: the same entries appear in the policy's page of the AWS Managed Policy Reference.
SECURITY_AUDIT = (
    "access-analyzer:ListAnalyzers",
    "cloudtrail:DescribeTrails",
    "cloudtrail:GetEventSelectors",
    "cloudtrail:GetTrailStatus",
    "config:Describe*",
    "ec2:Describe*",
    "ec2:GetEbsEncryptionByDefault",
    "elasticloadbalancing:Describe*",
    "guardduty:Get*",
    "guardduty:List*",
    "iam:GenerateCredentialReport",
    "iam:Get*",
    "iam:List*",
    "kms:Describe*",
    "kms:Get*",
    "kms:List*",
    "logs:Describe*",
    "organizations:Describe*",
    "organizations:List*",
    "rds:Describe*",
    "s3:GetAccountPublicAccessBlock",
    "s3:GetBucket*",
    "s3:GetEncryptionConfiguration",
    "s3:ListAllMyBuckets",
    "securityhub:Describe*",
)
#: Read-only actions called that SecurityAudit does not grant, and why they are needed.
BEYOND_SECURITY_AUDIT = {
    # SecurityAudit grants backup:ListBackupVaults and vault policies, not the plans
    "backup:ListBackupPlans": "the only API that lists backup plans",
    "ec2:GetManagedPrefixListEntries": "the CIDR blocks a security-group rule admits through "
    "a prefix list (SecurityAudit grants ec2:Describe*, and this is a Get)",
    "s3:GetLifecycleConfiguration": "the CloudTrail log bucket's expiration rules",
    "backup:ListRestoreTestingPlans": "restore testing (like the backup plans)",
    "backup:ListRestoreTestingSelections": "restore testing (like the backup plans)",
}
#: Read-only actions of the services added with issue 15 whose presence in SecurityAudit
#: has not been checked against the policy's current version: listed, so that a role
#: built from SecurityAudit alone knows to add them (docs/permissions/aws.json has all).
NOT_CHECKED_AGAINST_SECURITY_AUDIT = {
    "budgets:ViewBudget", "cloudfront:ListDistributions",
    "config:GetConformancePackComplianceSummary", "ecr:DescribeImageScanFindings",
    "ecr:DescribeImages", "ecr:DescribeRepositories", "inspector2:BatchGetAccountStatus",
    "inspector2:ListFindings", "macie2:GetMacieSession", "macie2:ListClassificationJobs",
    "route53resolver:ListFirewallRuleGroupAssociations", "wafv2:GetWebACLForResource",
}


def org_options(**extra) -> AwsOptions:
    return AwsOptions(regions=REGIONS, organization=True, member_role_name="annexa-audit",
                      **extra)


def org_member(run: tuple) -> str:
    _, result = run
    return next(c.scope for c in result.coverage if c.service == "*"
                and c.scope not in ("aws-org", "123456789012"))


@pytest.fixture(scope="module")
def org(aws_module_env: str) -> dict:
    return seed_org_estate(aws_module_env)


@pytest.fixture(scope="module")
def run(org: dict) -> tuple[AwsConnector, RunResult]:
    """One run of the organisation through the product's run engine (tests/harness.py)."""
    connector = AwsConnector("aws-org", org_options(session_name="annexa-test",
                                                    external_id="ext-123", max_workers=12))
    return connector, run_built(connector)


def test_every_account_region_and_service_is_read(org: dict, run: tuple) -> None:
    _, result = run
    accounts = set(org["accounts"])
    assert len(accounts) == 4  # management + 3 members
    cov = result.coverage
    assert all(c.ok for c in cov), [c for c in cov if not c.ok]
    scopes = {c.scope for c in cov if c.service == "*"}
    assert scopes == accounts | {"aws-org"}  # the org listing, then every account opened
    units = {(c.scope, c.region, c.service) for c in cov if c.service != "*"}
    assert len(units) == len([c for c in cov if c.service != "*"])
    assert units == {
        (a, "global", s) for a in accounts for s in GLOBAL_SERVICES
    } | {(a, r, s) for a in accounts for r in REGIONS for s in set(SERVICES) - GLOBAL_SERVICES}


def test_each_check_fails_exactly_the_planted_resources(org: dict, run: tuple) -> None:
    assert org["aged"], "moto runs in-process: each account's root row is planted"
    _, result = run
    findings = result.findings
    assert not [f for f in findings if f.status == "error"]
    statuses: dict[str, set[str]] = defaultdict(set)
    for account_id, planted in org["accounts"].items():
        mine = [f for f in findings if f.scope == account_id]
        for spec in AwsConnector.checks():
            failing = sorted(f.resource_id for f in mine
                             if f.check_id == spec.id and f.status == "fail")
            assert failing == sorted(planted["fail"].get(spec.id, [])), (account_id, spec.id)
            statuses[spec.id].update(f.status for f in mine if f.check_id == spec.id)
    # every check passes somewhere and fails somewhere (moto cannot give root access keys;
    # password expiry is not required by default, as NIST SP 800-63B no longer asks it)
    assert statuses["aws.iam.password_policy_max_age"] == {"not_applicable"}
    # one organisation here, whose environments are separated (the demo's standalone
    # account is the failing case)
    assert statuses["aws.organizations.environments_separated"] == {"pass"}
    for check_id, seen in statuses.items():
        if check_id not in ("aws.iam.root_access_keys", "aws.iam.password_policy_max_age",
                            "aws.organizations.environments_separated"):
            assert {"pass", "fail"} <= seen, (check_id, seen)
    assert len(statuses) == len(AwsConnector.checks()) >= 35


def test_findings_carry_account_region_and_arn(org: dict, run: tuple) -> None:
    _, result = run
    arn_types = {"aws.iam.user", "aws.iam.group", "aws.iam.role", "aws.iam.root_user",
                 "aws.cloudtrail.trail", "aws.ec2.security_group", "aws.ec2.volume",
                 "aws.ec2.instance", "aws.vpc.vpc", "aws.logs.log_group", "aws.kms.key",
                 "aws.rds.db_instance", "aws.elbv2.load_balancer"}
    seen = set()
    for f in result.findings:
        assert f.scope in org["accounts"] and f.region in (*REGIONS, "global")
        if f.resource_type in arn_types:
            seen.add(f.resource_type)
            assert f.resource_id.startswith("arn:aws:") and f.scope in f.resource_id, f
    assert seen == arn_types


def test_permissions_document_is_exactly_the_actions_called(run: tuple) -> None:
    """Every API call of the full test estate was recorded by a botocore ``before-call``
    hook; each must be declared, declared calls must all happen, and the IAM policy in
    docs/permissions/aws.json must be exactly their actions."""
    connector, _ = run
    # plus region discovery (the main run names its regions)
    discovery = AwsConnector("aws-org", AwsOptions(
        organization=True, member_role_name="annexa-audit", services=["ec2"],
        include_management_account=False, include_accounts=[org_member(run)]))
    records = list(discovery.collect(CollectContext(run_id="t")))
    assert records and all(r.ok for r in records if isinstance(r, Coverage))
    called = connector.operations_called | discovery.operations_called
    assert called <= set(ACTIONS), called - set(ACTIONS)
    assert called == set(ACTIONS), set(ACTIONS) - called
    doc = json.loads((ROOT / "docs/permissions/aws.json").read_text())
    assert doc["Version"] == "2012-10-17"
    statements = {s["Sid"]: s for s in doc["Statement"]}
    assert set(statements) == {"AnnexaAwsReadOnly", "AnnexaAssumeAuditRoles"}
    assert all(s["Effect"] == "Allow" for s in statements.values())
    read_only = set(statements["AnnexaAwsReadOnly"]["Action"])
    needed = {ACTIONS[op] for op in called} - {None}
    assert read_only == needed - {"sts:AssumeRole"}
    assume = statements["AnnexaAssumeAuditRoles"]
    assert assume["Action"] == ["sts:AssumeRole"] and all(
        r.startswith("arn:aws:iam::*:role/") for r in assume["Resource"])
    assert all(
        a.split(":")[1].startswith(("Get", "List", "Describe", "GenerateCredentialReport",
                                    "BatchGet", "ViewBudget"))
        for a in read_only
    )


def test_read_actions_are_granted_by_security_audit() -> None:
    """With AWS's SecurityAudit policy alone every unit but AWS Backup can be read."""
    doc = json.loads((ROOT / "docs/permissions/aws.json").read_text())
    (read_only,) = [s["Action"] for s in doc["Statement"] if s["Sid"] == "AnnexaAwsReadOnly"]
    outside = [a for a in read_only
               if not any(fnmatch.fnmatchcase(a, p) for p in SECURITY_AUDIT)]
    assert sorted(outside) == sorted({*BEYOND_SECURITY_AUDIT,
                                      *NOT_CHECKED_AGAINST_SECURITY_AUDIT})
    # and the patterns listed are not stale: each one is used
    unused = [p for p in SECURITY_AUDIT if not any(fnmatch.fnmatchcase(a, p) for a in read_only)]
    assert not unused, unused


def test_account_selection(org: dict) -> None:
    """include/exclude lists and the management-account switch; one cheap service."""
    management = org["management"]
    members = {a for a in org["accounts"] if a != management}
    weak = next(a for a, p in org["accounts"].items() if p["name"] == "weak")

    def scopes(**options) -> set[str]:
        connector = AwsConnector("aws-org", org_options(services=["s3control"], **options))
        records = list(connector.collect(CollectContext(run_id="t")))
        assert all(r.ok for r in records if isinstance(r, Coverage)
                   and r.scope != "999999999999"), records
        return {r.scope for r in records if isinstance(r, Coverage) and r.service != "*"}

    assert scopes() == members | {management}
    assert scopes(include_management_account=False) == members
    assert scopes(exclude_accounts=[weak]) == (members | {management}) - {weak}
    connector = AwsConnector("aws-org", org_options(
        services=["s3control"], include_accounts=[weak, "999999999999"]))
    records = list(connector.collect(CollectContext(run_id="t")))
    missing = [r for r in records if isinstance(r, Coverage) and r.scope == "999999999999"]
    assert [(c.service, c.ok) for c in missing] == [("*", False)]
    assert "not an active member" in str(missing[0].error)
    assert {r.scope for r in records if isinstance(r, Coverage) and r.service != "*"} == {weak}


def test_organisation_options_are_validated() -> None:
    AwsOptions(organization=True, member_role_name="audit/annexa-audit", external_id="x",
               include_accounts=["123456789012"], exclude_accounts=["210987654321"])
    for bad in (
        {"organization": True},  # no member role
        {"member_role_name": "annexa-audit"},  # without organization
        {"exclude_accounts": ["123456789012"]},
        {"organization": True, "member_role_name": "x", "include_accounts": ["1234"]},
        {"organization": True, "member_role_name": "bad role"},
        {"organization": True, "member_role_name": "x", "include_accounts": ["123456789012"],
         "exclude_accounts": ["123456789012"]},
        {"services": ["ec2", "lambda"]},
        {"services": []},
    ):
        with pytest.raises(ValidationError):
            AwsOptions(**bad)

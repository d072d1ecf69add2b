"""The AWS checks added for issue 15, on the shapes their APIs answer with.

Three layers:

* pure checks on payloads (every enumerated value the check judges, the optional
  members real answers omit);
* the readers on answers moto cannot give, with botocore's ``Stubber`` on real clients
  (parameter validation and response parsing are botocore's own): Macie's "not enabled"
  answer, GuardDuty Malware Protection plans, conformance-pack compliance (five names a
  call), DNS Firewall associations and Backup restore testing — moto 5.2 implements
  none of these operations;
* the local fake of those operations (``annexa_demo.aws.fakes``, used by the demo and
  the estate tests): every answer it gives is validated against the operation's output
  shape in the botocore service model.

The planted good and bad resources with exact fail sets, against moto and the fake,
are in tests/test_aws_demo.py and tests/test_aws_org.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from botocore.validate import ParamValidator

import connectors.aws  # noqa: F401 - registers the checks
from connectors.aws import backup, config, guardduty, macie, route53resolver
from connectors.aws.session import Account, ClientSettings
from connectors.kit import EvidenceMissing
from core.checks import REGISTRY

pytestmark = pytest.mark.clock  # SLA and age verdicts are judged against now

MAIN = "123456789012"
REGION = "us-east-1"


def status(check_id: str, payload: dict[str, Any], **params: Any) -> str:
    spec = REGISTRY.get(check_id)
    return spec.func(payload, spec.params_with(params or None)).status


def ago(days: float) -> str:
    return (datetime.now(UTC) - timedelta(days=days)).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- pure checks --------------------------------------------------------------------------


def test_inspector_finding_sla_by_severity() -> None:
    check = "aws.inspector2.finding_within_sla"

    def finding(severity: str, days: float) -> dict[str, Any]:
        return {"severity": severity, "firstObservedAt": ago(days), "title": "CVE"}

    assert status(check, finding("CRITICAL", 16)) == "fail"
    assert status(check, finding("CRITICAL", 14)) == "pass"
    assert status(check, finding("HIGH", 31)) == "fail"
    assert status(check, finding("MEDIUM", 89)) == "pass"
    assert status(check, finding("LOW", 181)) == "fail"
    assert status(check, finding("INFORMATIONAL", 900)) == "not_applicable"
    assert status(check, finding("UNTRIAGED", 31)) == "fail"
    assert status(check, finding("CRITICAL", 16),
                  max_age_days={"CRITICAL": 30, "HIGH": 30}) == "pass"
    assert status(check, finding("NEWSEVERITY", 16)) == "fail"  # unknown: the strictest
    with pytest.raises(EvidenceMissing):
        status(check, {"severity": "HIGH"})


def test_inspector_scanning_enabled() -> None:
    check = "aws.inspector2.scanning_enabled"
    on = {"ec2": {"status": "ENABLED"}, "ecr": {"status": "ENABLED"},
          "lambda": {"status": "DISABLED"}}
    assert status(check, {"ResourceState": on}) == "pass"
    assert status(check, {"ResourceState": {**on, "ecr": {"status": "SUSPENDED"}}}) == "fail"
    assert status(check, {"ResourceState": None, "State": None}) == "fail"  # never activated
    assert status(check, {"ResourceState": {**on, "lambda": {"status": "DISABLED"}}},
                  resource_types=["ec2", "ecr", "lambda"]) == "fail"


def test_ecr_image_scan_statuses() -> None:
    check = "aws.ecr.image_scan_findings_within_sla"
    base = {"repositoryName": "app", "imageDigest": "sha256:" + "b" * 64}
    scanned = {**base, "ScanStatus": "COMPLETE", "ScanCompletedAt": ago(40),
               "FindingSeverityCounts": {"HIGH": 2, "LOW": 1}}
    assert status(check, scanned) == "fail"  # HIGH past 30 days
    assert status(check, {**scanned, "ScanCompletedAt": ago(5)}) == "pass"
    assert status(check, {**scanned, "FindingSeverityCounts": {"LOW": 3}}) == "pass"
    assert status(check, {**scanned, "FindingSeverityCounts": {"UNDEFINED": 1}}) == "fail"
    assert status(check, {**base, "ScanStatus": None}) == "fail"  # never scanned
    assert status(check, {**base, "ScanStatus": None}, require_scan=False) == "not_applicable"
    for unusable in ("FAILED", "UNSUPPORTED_IMAGE", "IMAGE_SIZE_EXCEEDED"):
        assert status(check, {**base, "ScanStatus": unusable}) == "fail"
    for enhanced in ("ACTIVE", "PENDING", "SCAN_ELIGIBILITY_EXPIRED", "FINDINGS_UNAVAILABLE",
                     "LIMIT_EXCEEDED"):
        assert status(check, {**base, "ScanStatus": enhanced}) == "not_applicable"
    assert status(check, {**base, "ScanStatus": "IN_PROGRESS"}) == "not_applicable"
    with pytest.raises(EvidenceMissing):  # findings but no scan time
        status(check, {**scanned, "ScanCompletedAt": None})


def test_guardduty_malware_protection_features_and_legacy_data_sources() -> None:
    check = "aws.guardduty.malware_protection"
    feature = {"DetectorId": "d1", "Status": "ENABLED",
               "Features": [{"Name": "EBS_MALWARE_PROTECTION", "Status": "ENABLED"}]}
    assert status(check, {"Detectors": [feature], "MalwareProtectionPlans": []}) == "pass"
    off = {**feature, "Features": [{"Name": "EBS_MALWARE_PROTECTION", "Status": "DISABLED"}]}
    assert status(check, {"Detectors": [off]}) == "fail"
    legacy = {"DetectorId": "d2", "Status": "ENABLED", "DataSources": {"MalwareProtection": {
        "ScanEc2InstanceWithFindings": {"EbsVolumes": {"Status": "ENABLED"}}}}}
    assert status(check, {"Detectors": [legacy]}) == "pass"
    assert status(check, {"Detectors": [{**feature, "Status": "DISABLED"}]}) == "fail"
    assert status(check, {"Detectors": []}) == "fail"
    assert status(check, {"Detectors": [feature], "MalwareProtectionPlans": []},
                  require_s3_protection=True) == "fail"
    plan = {"MalwareProtectionPlanId": "p", "Status": "ACTIVE",
            "ProtectedResource": {"S3Bucket": {"BucketName": "uploads"}}}
    assert status(check, {"Detectors": [feature], "MalwareProtectionPlans": [plan]},
                  require_s3_protection=True) == "pass"
    with pytest.raises(EvidenceMissing):
        status(check, {"Detectors": [feature], "_errors": {"MalwareProtectionPlans": "x"}},
               require_s3_protection=True)


def test_account_governance_rules() -> None:
    check = "aws.organizations.account_governed"
    tags = {"Owner": "payments", "Environment": "production"}  # keys in any case
    ou = [{"Id": "ou-ab12-prod", "Type": "ORGANIZATIONAL_UNIT"}]
    root = [{"Id": "r-ab12", "Type": "ROOT"}]
    assert status(check, {"Id": "1", "Status": "ACTIVE", "Tags": tags, "Parents": ou}) == "pass"
    assert status(check, {"Id": "1", "Status": "ACTIVE", "Tags": tags, "Parents": root}) == "fail"
    assert status(check, {"Id": "1", "Status": "ACTIVE", "Tags": tags, "Parents": root,
                          "IsManagementAccount": True}) == "pass"  # stays under the root
    assert status(check, {"Id": "1", "Status": "ACTIVE", "Tags": {"owner": "x"},
                          "Parents": ou}) == "fail"
    assert status(check, {"Id": "1", "Status": "SUSPENDED", "Tags": {},
                          "Parents": root}) == "not_applicable"
    assert status(check, {"Id": "1", "Organization": None}) == "fail"  # standalone


def test_environment_separation() -> None:
    check = "aws.organizations.environments_separated"
    org = {"Id": "o-1", "Arn": "arn", "MasterAccountId": "1"}

    def accounts(*envs: str | None) -> dict[str, Any]:
        return {"Organization": org, "Accounts": [
            {"Id": str(i), "Name": f"a{i}", "Status": "ACTIVE",
             "Tags": {"environment": e} if e else {}} for i, e in enumerate(envs)]}

    assert status(check, accounts("production", "dev", "Staging")) == "pass"
    assert status(check, accounts("production", "production")) == "fail"  # no non-prod
    assert status(check, accounts("production", "dev", None)) == "fail"  # untagged
    assert status(check, accounts("production", "prod,dev", "test")) == "fail"  # mixed
    assert status(check, accounts("production", "dev", "shared")) == "fail"  # unknown
    assert status(check, accounts("live", "dev"), production_values=["live"]) == "pass"
    assert status(check, {"Organization": None}) == "fail"


def test_cloudtrail_log_bucket_immutability_and_lifecycle() -> None:
    immutable, lifecycle = "aws.cloudtrail.logs_immutable", "aws.cloudtrail.bucket_lifecycle"

    def trail(**bucket: Any) -> dict[str, Any]:
        return {"Name": "t", "S3BucketAccess": {"Name": "logs", "InAccount": True, **bucket}}

    locked = {"ObjectLockEnabled": "Enabled",
              "Rule": {"DefaultRetention": {"Mode": "GOVERNANCE", "Years": 1}}}
    assert status(immutable, trail(ObjectLockConfiguration=locked)) == "pass"
    assert status(immutable, trail(ObjectLockConfiguration=locked),
                  require_compliance_mode=True) == "fail"
    no_rule = {"ObjectLockEnabled": "Enabled"}
    assert status(immutable, trail(ObjectLockConfiguration=no_rule)) == "fail"
    assert status(immutable, trail(ObjectLockConfiguration=None)) == "fail"
    foreign = {"Name": "t", "S3BucketAccess": {"Name": "archive", "InAccount": False}}
    assert status(immutable, foreign) == "pass"
    assert status(immutable, foreign, accept_other_account_bucket=False) == "fail"
    assert status(lifecycle, foreign) == "not_applicable"
    rule = {"ID": "r", "Status": "Enabled", "Expiration": {"Days": 400}}
    assert status(lifecycle, trail(LifecycleRules=[rule])) == "pass"
    assert status(lifecycle, trail(LifecycleRules=[{**rule, "Status": "Disabled"}])) == "fail"
    assert status(lifecycle, trail(LifecycleRules=[
        {"ID": "markers", "Status": "Enabled",
         "Expiration": {"ExpiredObjectDeleteMarker": True}}])) == "fail"
    assert status(lifecycle, trail(LifecycleRules=[
        {"ID": "old", "Status": "Enabled",
         "NoncurrentVersionExpiration": {"NoncurrentDays": 30}}])) == "pass"
    assert status(lifecycle, trail(LifecycleRules=[])) == "fail"
    with pytest.raises(EvidenceMissing):
        status(lifecycle, trail(_errors={"LifecycleRules": "AccessDenied"}))


def test_network_services_waf_and_tls() -> None:
    alb = "aws.elbv2.public_alb_waf"
    lb = {"Type": "application", "Scheme": "internet-facing"}
    assert status(alb, {"LoadBalancer": lb, "WebACL": {"Name": "core"}}) == "pass"
    assert status(alb, {"LoadBalancer": lb, "WebACL": None}) == "fail"
    assert status(alb, {"LoadBalancer": {"Type": "application", "Scheme": "internal"}}) == (
        "not_applicable")
    assert status(alb, {"LoadBalancer": {"Type": "network"}}) == "not_applicable"
    assert status(alb, {"LoadBalancer": {}, "WebACL": None}) == "fail"  # defaults: public ALB
    tls = "aws.cloudfront.distribution_min_tls"
    good = {"Enabled": True, "ViewerProtocolPolicies": ["redirect-to-https"],
            "ViewerCertificate": {"MinimumProtocolVersion": "TLSv1.2_2021"}}
    assert status(tls, good) == "pass"
    assert status(tls, {**good, "ViewerCertificate": {
        "MinimumProtocolVersion": "TLSv1.3_2025"}}) == "pass"
    for weak in ("SSLv3", "TLSv1", "TLSv1_2016", "TLSv1.1_2016"):
        assert status(tls, {**good, "ViewerCertificate": {
            "MinimumProtocolVersion": weak}}) == "fail"
    # the default certificate says TLSv1 whatever the field holds
    assert status(tls, {**good, "ViewerCertificate": {
        "CloudFrontDefaultCertificate": True, "MinimumProtocolVersion": "TLSv1.2_2021"}}) == (
        "fail")
    assert status(tls, {**good, "ViewerProtocolPolicies": ["https-only", "allow-all"]}) == (
        "fail")
    assert status(tls, {**good, "Enabled": False}) == "not_applicable"
    waf = "aws.cloudfront.distribution_waf"
    assert status(waf, {"Enabled": True, "WebACLId": ""}) == "fail"
    assert status(waf, {"Enabled": True, "WebACLId": "473e64fd-f30b-4765-81a0-62ad96dd167a"}) == (
        "pass")  # a WAF Classic id


def test_capacity_retention_baselines_and_passwords() -> None:
    budgets = "aws.budgets.alerts_configured"
    alerting = {"BudgetName": "m", "BudgetType": "COST", "Notifications": [
        {"NotificationType": "ACTUAL", "ComparisonOperator": "GREATER_THAN", "Threshold": 80}]}
    assert status(budgets, {"Budgets": [alerting]}) == "pass"
    assert status(budgets, {"Budgets": [{**alerting, "Notifications": []}]}) == "fail"
    assert status(budgets, {"Budgets": [{**alerting, "BudgetType": "RI_COVERAGE"}]}) == "fail"
    assert status(budgets, {"Budgets": []}) == "fail"
    logs = "aws.logs.log_group_retention_set"
    assert status(logs, {"logGroupName": "g"}) == "fail"  # retentionInDays absent: forever
    assert status(logs, {"retentionInDays": 400}) == "pass"
    assert status(logs, {"retentionInDays": 3653}, max_retention_days=365) == "fail"
    packs = "aws.config.conformance_packs_compliant"
    pack = {"ConformancePackName": "cis", "ComplianceStatus": "COMPLIANT"}
    assert status(packs, {"ConformancePacks": [pack]}) == "pass"
    assert status(packs, {"ConformancePacks": []}) == "fail"
    assert status(packs, {"ConformancePacks": [{**pack, "ComplianceStatus": "NON_COMPLIANT"}]}) == (
        "fail")
    insufficient = {"ConformancePacks": [{**pack, "ComplianceStatus": "INSUFFICIENT_DATA"}]}
    assert status(packs, insufficient) == "pass"
    assert status(packs, insufficient, allow_insufficient_data=False) == "fail"
    age = "aws.iam.password_policy_max_age"
    assert status(age, {"PasswordPolicy": {"MinimumPasswordLength": 14}}) == "not_applicable"
    assert status(age, {"PasswordPolicy": {"MinimumPasswordLength": 14}},
                  max_age_days=90) == "fail"  # MaxPasswordAge absent: never expire
    assert status(age, {"PasswordPolicy": {"MaxPasswordAge": 60}}, max_age_days=90) == "pass"
    assert status(age, {"PasswordPolicy": {"MaxPasswordAge": 365}}, max_age_days=90) == "fail"
    assert status(age, {"PasswordPolicy": None}, max_age_days=90) == "fail"
    vpc = "aws.vpc.default_vpc_unused"
    assert status(vpc, {"Vpc": {"IsDefault": True}, "NetworkInterfaces": []}) == "pass"
    assert status(vpc, {"Vpc": {"IsDefault": True}, "NetworkInterfaces": [
        {"NetworkInterfaceId": "eni-1", "InterfaceType": "lambda"}]}) == "fail"
    assert status(vpc, {"Vpc": {"IsDefault": False}, "FlowLogs": []}) == "not_applicable"
    restore = "aws.backup.restore_testing"
    assert status(restore, {"RestoreTestingPlans": []}) == "fail"
    assert status(restore, {"RestoreTestingPlans": [
        {"RestoreTestingPlanName": "p", "Selections": []}]}) == "fail"
    assert status(restore, {"RestoreTestingPlans": [
        {"RestoreTestingPlanName": "p", "Selections": [
            {"RestoreTestingSelectionName": "s", "ProtectedResourceType": "RDS"}]}]}) == "pass"


def test_dns_firewall_and_macie() -> None:
    dns = "aws.route53resolver.dns_firewall_associated"
    assoc = {"Name": "malware", "Status": "COMPLETE", "Priority": 101}
    assert status(dns, {"VpcId": "vpc-1", "FirewallRuleGroupAssociations": [assoc]}) == "pass"
    assert status(dns, {"VpcId": "vpc-1", "FirewallRuleGroupAssociations": [
        {**assoc, "Status": "DELETING"}]}) == "fail"
    assert status(dns, {"VpcId": "vpc-1", "FirewallRuleGroupAssociations": []}) == "fail"
    job = {"name": "j", "jobType": "SCHEDULED", "jobStatus": "IDLE"}
    on = {"status": "ENABLED"}
    check = "aws.macie.classification_jobs"
    assert status(check, {"Session": on, "Jobs": [job]}) == "pass"
    assert status(check, {"Session": on, "Jobs": [{**job, "jobStatus": "USER_PAUSED"}]}) == (
        "fail")
    assert status(check, {"Session": on, "Jobs": [{**job, "jobType": "ONE_TIME",
                                                   "jobStatus": "COMPLETE"}]}) == "fail"
    assert status(check, {"Session": on, "Jobs": [{**job, "jobType": "ONE_TIME"}]},
                  require_scheduled_job=False) == "pass"
    assert status(check, {"Session": {"status": "PAUSED"}, "Jobs": [job]}) == "fail"
    assert status(check, {"Session": None, "Jobs": []}) == "fail"


def test_aurora_cluster_settings() -> None:
    cluster = {"DBClusterIdentifier": "c", "StorageEncrypted": True,
               "BackupRetentionPeriod": 7, "DeletionProtection": True}
    for check in ("aws.rds.cluster_storage_encrypted", "aws.rds.cluster_backup_retention",
                  "aws.rds.cluster_deletion_protection"):
        assert status(check, cluster) == "pass"
    assert status("aws.rds.cluster_storage_encrypted", {**cluster, "StorageEncrypted": False}) == (
        "fail")
    assert status("aws.rds.cluster_backup_retention", {**cluster, "BackupRetentionPeriod": 1}) == (
        "fail")
    assert status("aws.rds.cluster_backup_retention", cluster, min_days=14) == "fail"
    assert status("aws.rds.cluster_deletion_protection",
                  {**cluster, "DeletionProtection": False}) == "fail"


# --- Stubber: the readers on the operations moto lacks ------------------------------------


@pytest.fixture
def account(aws_offline_env: None) -> Iterator[Account]:
    yield Account(MAIN, boto3.Session(), ClientSettings(), REGION)


@pytest.fixture
def stubs(account: Account) -> Iterator[dict[str, Stubber]]:
    made: dict[str, Stubber] = {}

    def stub(service: str) -> Stubber:
        client = boto3.client(service, region_name=REGION)
        account._clients[(service, REGION)] = client  # the unit reads through this client
        made[service] = Stubber(client)
        made[service].activate()
        return made[service]

    made["_"] = stub  # type: ignore[assignment]
    yield made
    for name, stubber in made.items():
        if name != "_":
            stubber.assert_no_pending_responses()


def test_macie_not_enabled_is_off_and_jobs_are_listed(account: Account, stubs: Any) -> None:
    """GetMacieSession when Macie is off: AccessDeniedException "Macie is not enabled."
    (HTTP 403); when on, the session and ListClassificationJobs."""
    s = stubs["_"]("macie2")
    s.add_client_error("get_macie_session", "AccessDeniedException", "Macie is not enabled.",
                       403)
    (off,) = macie.read(account, REGION)
    assert off.payload == {"Session": None, "Jobs": []}
    s.add_response("get_macie_session", {"status": "ENABLED",
                                         "findingPublishingFrequency": "SIX_HOURS",
                                         "createdAt": datetime(2026, 1, 5, tzinfo=UTC)})
    s.add_response("list_classification_jobs", {"items": [
        {"jobId": "j1", "name": "weekly-pii", "jobType": "SCHEDULED", "jobStatus": "IDLE",
         "createdAt": datetime(2026, 1, 5, tzinfo=UTC),
         "bucketDefinitions": [{"accountId": MAIN, "buckets": ["uploads"]}]}]})
    (on,) = macie.read(account, REGION)
    assert on.payload["Jobs"] == [{"jobId": "j1", "name": "weekly-pii", "jobType": "SCHEDULED",
                                   "jobStatus": "IDLE"}]
    assert status("aws.macie.classification_jobs", on.payload) == "pass"
    # a real permission problem is not "off": it fails the unit
    s.add_client_error("get_macie_session", "AccessDeniedException", "User is not authorized",
                       403)
    with pytest.raises(Exception, match="AccessDenied"):
        list(macie.read(account, REGION))


def test_guardduty_s3_malware_plans(account: Account, stubs: Any) -> None:
    """ListMalwareProtectionPlans (no botocore paginator: NextToken by hand) and
    GetMalwareProtectionPlan for each."""
    s = stubs["_"]("guardduty")
    s.add_response("list_detectors", {"DetectorIds": ["d1"]})
    s.add_response("get_detector", {"Status": "ENABLED", "ServiceRole": "r", "Features": [
        {"Name": "EBS_MALWARE_PROTECTION", "Status": "ENABLED"}]}, {"DetectorId": "d1"})
    s.add_response("list_threat_intel_sets", {"ThreatIntelSetIds": []},
                   {"DetectorId": "d1", "MaxResults": 50})
    pages = {"p1": ({"NextToken": "t"}, {}), "p2": ({}, {"NextToken": "t"})}
    for plan, state in (("p1", "ACTIVE"), ("p2", "ERROR")):
        more, asked = pages[plan]
        s.add_response("list_malware_protection_plans", {
            "MalwareProtectionPlans": [{"MalwareProtectionPlanId": plan}], **more}, asked)
        s.add_response("get_malware_protection_plan", {
            "Arn": f"arn:aws:guardduty:{REGION}:{MAIN}:malware-protection-plan/{plan}",
            "Status": state, "ProtectedResource": {"S3Bucket": {"BucketName": f"b-{plan}"}}},
            {"MalwareProtectionPlanId": plan})
    (ev,) = guardduty.read(account, REGION)
    assert [p["Status"] for p in ev.payload["MalwareProtectionPlans"]] == ["ACTIVE", "ERROR"]
    assert status("aws.guardduty.malware_protection", ev.payload,
                  require_s3_protection=True) == "pass"


def test_conformance_pack_compliance_five_names_a_call(account: Account, stubs: Any) -> None:
    s = stubs["_"]("config")
    s.add_response("describe_configuration_recorders", {"ConfigurationRecorders": []})
    s.add_response("describe_configuration_recorder_status",
                   {"ConfigurationRecordersStatus": []})
    names = [f"pack-{i}" for i in range(7)]
    s.add_response("describe_conformance_packs", {"ConformancePackDetails": [
        {"ConformancePackName": n, "ConformancePackArn": f"arn:{n}", "ConformancePackId": n}
        for n in names]})
    s.add_response("get_conformance_pack_compliance_summary", {
        "ConformancePackComplianceSummaryList": [
            {"ConformancePackName": n, "ConformancePackComplianceStatus": "COMPLIANT"}
            for n in names[:5]]}, {"ConformancePackNames": names[:5], "Limit": 20})
    s.add_response("get_conformance_pack_compliance_summary", {
        "ConformancePackComplianceSummaryList": [
            {"ConformancePackName": "pack-5", "ConformancePackComplianceStatus": "COMPLIANT"},
            {"ConformancePackName": "pack-6",
             "ConformancePackComplianceStatus": "NON_COMPLIANT"}]},
        {"ConformancePackNames": names[5:], "Limit": 20})
    _recorders, packs = config.read(account, REGION)
    assert [p["ComplianceStatus"] for p in packs.payload["ConformancePacks"]] == (
        ["COMPLIANT"] * 6 + ["NON_COMPLIANT"])
    assert status("aws.config.conformance_packs_compliant", packs.payload) == "fail"


def test_dns_firewall_associations_per_vpc(account: Account, stubs: Any) -> None:
    r = stubs["_"]("route53resolver")
    e = stubs["_"]("ec2")
    r.add_response("list_firewall_rule_group_associations", {"FirewallRuleGroupAssociations": [
        {"Id": "rslvr-frgassoc-1", "VpcId": "vpc-a", "Name": "malware", "Priority": 101,
         "FirewallRuleGroupId": "rslvr-frg-1", "Status": "COMPLETE",
         "ManagedOwnerName": "Route 53 Resolver DNS Firewall"}]})
    e.add_response("describe_vpcs", {"Vpcs": [{"VpcId": "vpc-a", "IsDefault": False},
                                              {"VpcId": "vpc-b", "IsDefault": True}]})
    verdicts = {ev.payload["VpcId"]: status("aws.route53resolver.dns_firewall_associated",
                                            ev.payload)
                for ev in route53resolver.read(account, REGION)}
    assert verdicts == {"vpc-a": "pass", "vpc-b": "fail"}


def test_restore_testing_plans_and_selections(account: Account, stubs: Any) -> None:
    s = stubs["_"]("backup")
    s.add_response("list_backup_plans", {"BackupPlansList": []})
    s.add_response("list_restore_testing_plans", {"RestoreTestingPlans": [
        {"RestoreTestingPlanName": "weekly", "RestoreTestingPlanArn": "arn:p",
         "ScheduleExpression": "cron(0 5 ? * 1 *)",
         "CreationTime": datetime(2026, 1, 5, tzinfo=UTC),
         "LastExecutionTime": datetime(2026, 11, 30, tzinfo=UTC)}]})
    s.add_response("list_restore_testing_selections", {"RestoreTestingSelections": [
        {"RestoreTestingPlanName": "weekly", "RestoreTestingSelectionName": "dbs",
         "ProtectedResourceType": "RDS", "IamRoleArn": "arn:role",
         "CreationTime": datetime(2026, 1, 5, tzinfo=UTC)}]})
    _plans, testing = backup.read(account, REGION)
    assert testing.payload == {"RestoreTestingPlans": [{
        "RestoreTestingPlanName": "weekly", "RestoreTestingPlanArn": "arn:p",
        "ScheduleExpression": "cron(0 5 ? * 1 *)",
        "Selections": [{"RestoreTestingSelectionName": "dbs", "ProtectedResourceType": "RDS"}]}]}
    assert status("aws.backup.restore_testing", testing.payload) == "pass"


# --- the fake of moto's gaps answers in the models' shapes --------------------------------


def test_fake_answers_validate_against_the_botocore_output_shapes(aws_env: str) -> None:
    """Create through the fake, then list: each parsed answer is valid for the output
    shape of its operation (botocore's own validator, as Stubber uses)."""
    validator = ParamValidator()
    checked: list[str] = []

    def call(client: Any, operation: str, **kwargs: Any) -> dict[str, Any]:
        answer = getattr(client, operation)(**kwargs)
        answer.pop("ResponseMetadata", None)
        name = client.meta.method_to_api_mapping[operation]
        shape = client.meta.service_model.operation_model(name).output_shape
        report = validator.validate(answer, shape)
        assert not report.has_errors(), (operation, report.generate_report())
        checked.append(name)
        return answer

    gd = boto3.client("guardduty", region_name=REGION)
    plan = call(gd, "create_malware_protection_plan", Role="arn:aws:iam::1:role/r",
                ProtectedResource={"S3Bucket": {"BucketName": "uploads"}})
    call(gd, "list_malware_protection_plans")
    call(gd, "get_malware_protection_plan",
         MalwareProtectionPlanId=plan["MalwareProtectionPlanId"])
    m2 = boto3.client("macie2", region_name=REGION)
    call(m2, "create_classification_job", clientToken="t", jobType="ONE_TIME", name="j",
         s3JobDefinition={"bucketDefinitions": [{"accountId": MAIN, "buckets": ["b"]}]})
    call(m2, "list_classification_jobs")
    rr = boto3.client("route53resolver", region_name=REGION)
    call(rr, "associate_firewall_rule_group", CreatorRequestId="c",
         FirewallRuleGroupId="rslvr-frg-1", VpcId="vpc-1", Priority=101, Name="n")
    call(rr, "list_firewall_rule_group_associations")
    cfg = boto3.client("config", region_name=REGION)
    call(cfg, "put_conformance_pack", ConformancePackName="p", TemplateBody="Resources: {}")
    call(cfg, "describe_conformance_packs")
    call(cfg, "get_conformance_pack_compliance_summary", ConformancePackNames=["p"])
    bk = boto3.client("backup", region_name=REGION)
    call(bk, "create_restore_testing_plan", RestoreTestingPlan={
        "RestoreTestingPlanName": "weekly", "ScheduleExpression": "cron(0 5 ? * 1 *)",
        "RecoveryPointSelection": {"Algorithm": "LATEST_WITHIN_WINDOW", "IncludeVaults": ["*"],
                                   "RecoveryPointTypes": ["SNAPSHOT"]}})
    call(bk, "list_restore_testing_plans")
    call(bk, "create_restore_testing_selection", RestoreTestingPlanName="weekly",
         RestoreTestingSelection={"RestoreTestingSelectionName": "dbs",
                                  "ProtectedResourceType": "RDS", "IamRoleArn": "arn:r",
                                  "ProtectedResourceArns": ["*"]})
    call(bk, "list_restore_testing_selections", RestoreTestingPlanName="weekly")
    aa = boto3.client("accessanalyzer", region_name=REGION)
    call(aa, "create_analyzer", analyzerName="a", type="ACCOUNT")
    call(aa, "list_analyzers")
    assert len(checked) == 16
    # and what the fake does not serve still reaches moto
    assert gd.create_detector(Enable=True)["DetectorId"]

"""Planting, for the simulated estates, of the security and governance services: Amazon
Inspector and ECR scan findings, GuardDuty malware protection, Macie, DNS Firewall,
Config conformance packs, Backup restore testing, Aurora clusters, CloudFront, WAF,
budgets and AWS Organizations governance.

Called by :mod:`annexa_demo.aws.estate` with its ``_Plan`` (``p``: ``p.estate.client()``,
``p.bad(check, *ids)``, ``p.account_id``). Operations moto lacks go to the local fake
(:mod:`annexa_demo.aws.fakes`) through the standard per-service endpoint variables;
Inspector findings and ECR scan results are queued through moto's own API
(``/moto-api/static/…``), which moto answers from then on.
"""

from __future__ import annotations

import http.client
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

#: A vulnerability finding to plant: (severity, days since first observed).
Finding = tuple[str, int]
_SLA = {"CRITICAL": 15, "HIGH": 30, "MEDIUM": 90, "LOW": 180, "UNTRIAGED": 30}


def _moto_api(p: Any, path: str, body: dict[str, Any]) -> None:
    parts = urlsplit(p.estate.endpoint_url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        conn.request("POST", path, body=json.dumps(body),
                     headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        response.read()
        if response.status >= 300:
            raise RuntimeError(f"moto API {path}: HTTP {response.status}")
    finally:
        conn.close()


def _ago(days: int) -> str:
    return (datetime.now(UTC) - timedelta(days=days)).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- vulnerabilities -------------------------------------------------------------------


def inspector(p: Any, region: str, *, scanning: bool, findings: list[Finding]) -> None:
    """Activate Inspector (or not) and queue the region's open findings."""
    if scanning:
        p.estate.client("inspector2", region).enable(resourceTypes=["EC2", "ECR"],
                                                     accountIds=[p.account_id])
    else:
        p.bad("aws.inspector2.scanning_enabled", region)
    planted = []
    for severity, days in findings:
        arn = f"arn:aws:inspector2:{region}:{p.account_id}:finding/{uuid.uuid4().hex}"
        planted.append({
            "findingArn": arn, "awsAccountId": p.account_id, "type": "PACKAGE_VULNERABILITY",
            "title": f"CVE-2026-{len(planted) + 1000} - openssl", "severity": severity,
            "status": "ACTIVE", "firstObservedAt": _ago(days), "fixAvailable": "YES",
            "resources": [{"type": "AWS_EC2_INSTANCE", "id": "i-0annexa", "region": region}],
            "packageVulnerabilityDetails": {"vulnerabilityId": f"CVE-2026-{len(planted) + 1000}",
                                            "source": "NVD"},
        })
        if days > _SLA[severity]:
            p.bad("aws.inspector2.finding_within_sla", arn)
    _moto_api(p, "/moto-api/static/inspector2/findings-results",
              {"results": [planted], "account_id": p.account_id, "region": region})


def ecr_image(p: Any, region: str, repository: str, *, scanned_days_ago: int | None,
              high: int = 1) -> None:
    """One image in its own repository (moto gives every image of a repository the same
    digest); scanned that many days ago with ``high`` HIGH findings, or never scanned."""
    ecr = p.estate.client("ecr", region)
    repo = ecr.create_repository(repositoryName=repository,
                                 imageScanningConfiguration={"scanOnPush": True})["repository"]
    manifest = {"schemaVersion": 2,
                "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                "config": {"digest": "sha256:" + "a" * 64, "size": 1,
                           "mediaType": "application/vnd.docker.container.image.v1+json"},
                "layers": []}
    ecr.put_image(repositoryName=repository, imageManifest=json.dumps(manifest),
                  imageTag="v1")
    digest = ecr.describe_images(repositoryName=repository)["imageDetails"][0]["imageDigest"]
    image_id = f"{repo['repositoryArn']}@{digest}"
    if scanned_days_ago is None:
        p.bad("aws.ecr.image_scan_findings_within_sla", image_id)
        return
    ecr.start_image_scan(repositoryName=repository, imageId={"imageDigest": digest})
    _moto_api(p, "/moto-api/static/ecr/scan-finding-results", {
        "results": [{
            "registryId": p.account_id, "repositoryName": repository,
            "imageId": {"imageDigest": digest},
            "imageScanStatus": {"status": "COMPLETE", "description": "complete"},
            "imageScanFindings": {"imageScanCompletedAt": _ago(scanned_days_ago),
                                  "findingSeverityCounts": {"HIGH": high} if high else {},
                                  "findings": []}}],
        "account_id": p.account_id, "region": region})
    if high and scanned_days_ago > _SLA["HIGH"]:
        p.bad("aws.ecr.image_scan_findings_within_sla", image_id)


# --- detection and data protection ---------------------------------------------------------


def s3_malware_plan(p: Any, region: str, bucket: str) -> None:
    p.estate.client("guardduty", region).create_malware_protection_plan(
        Role=f"arn:aws:iam::{p.account_id}:role/guardduty-malware",
        ProtectedResource={"S3Bucket": {"BucketName": bucket}})


def macie(p: Any, region: str, *, enabled: bool, scheduled_job: bool) -> None:
    if not enabled:
        p.bad("aws.macie.classification_jobs", region)
        return
    client = p.estate.client("macie2", region)
    client.enable_macie(status="ENABLED")
    job_type = "SCHEDULED" if scheduled_job else "ONE_TIME"
    extra: dict[str, Any] = {"scheduleFrequency": {"dailySchedule": {}}} if scheduled_job else {}
    client.create_classification_job(
        clientToken=uuid.uuid4().hex, jobType=job_type, name=f"annexa-{job_type.lower()}",
        s3JobDefinition={"bucketDefinitions": [{"accountId": p.account_id,
                                                "buckets": ["annexa-data"]}]}, **extra)
    if not scheduled_job:
        p.bad("aws.macie.classification_jobs", region)


def dns_firewall(p: Any, region: str, *, associate: bool) -> None:
    """Associate a rule group with every VPC of the region (call after the VPCs exist)."""
    ec2 = p.estate.client("ec2", region)
    resolver = p.estate.client("route53resolver", region)
    for vpc in ec2.describe_vpcs()["Vpcs"]:
        if associate:
            resolver.associate_firewall_rule_group(
                CreatorRequestId=uuid.uuid4().hex, FirewallRuleGroupId="rslvr-frg-annexa",
                VpcId=vpc["VpcId"], Priority=101, Name="annexa-malware-domains")
        else:
            p.bad("aws.route53resolver.dns_firewall_associated",
                  p.estate.arn("ec2", region, f"vpc/{vpc['VpcId']}"))


# --- baselines, backups, databases -----------------------------------------------------


def conformance_pack(p: Any, region: str, compliance: str | None) -> None:
    """A pack whose compliance (the fake's convention) is ``compliance``; None: none."""
    if compliance is None:
        p.bad("aws.config.conformance_packs_compliant", region)
        return
    p.estate.client("config", region).put_conformance_pack(
        ConformancePackName="annexa-operational-best-practices",
        TemplateBody="Resources: {}",
        ConformancePackInputParameters=[{"ParameterName": "AnnexaFakeCompliance",
                                         "ParameterValue": compliance}])
    if compliance != "COMPLIANT":
        p.bad("aws.config.conformance_packs_compliant", region)


def restore_testing(p: Any, region: str, *, plan: bool, selection: bool) -> None:
    if not plan:
        p.bad("aws.backup.restore_testing", region)
        return
    backup = p.estate.client("backup", region)
    backup.create_restore_testing_plan(RestoreTestingPlan={
        "RestoreTestingPlanName": "annexa_weekly", "ScheduleExpression": "cron(0 5 ? * 1 *)",
        "RecoveryPointSelection": {"Algorithm": "LATEST_WITHIN_WINDOW",
                                   "IncludeVaults": ["*"],
                                   "RecoveryPointTypes": ["SNAPSHOT"]}})
    if selection:
        backup.create_restore_testing_selection(
            RestoreTestingPlanName="annexa_weekly", RestoreTestingSelection={
                "RestoreTestingSelectionName": "annexa_databases",
                "ProtectedResourceType": "RDS",
                "IamRoleArn": f"arn:aws:iam::{p.account_id}:role/backup-restore-testing",
                "ProtectedResourceArns": ["*"]})
    else:
        p.bad("aws.backup.restore_testing", region)


def aurora_cluster(p: Any, region: str, name: str, *, good: bool) -> None:
    rds = p.estate.client("rds", region)
    arn = rds.create_db_cluster(
        DBClusterIdentifier=name, Engine="aurora-postgresql", MasterUsername="annexa",
        MasterUserPassword="Annexa-" + uuid.uuid4().hex[:12], StorageEncrypted=good,
        BackupRetentionPeriod=14 if good else 1, DeletionProtection=good,
    )["DBCluster"]["DBClusterArn"]
    if not good:
        for check_id in ("cluster_storage_encrypted", "cluster_backup_retention",
                         "cluster_deletion_protection"):
            p.bad(f"aws.rds.{check_id}", arn)


# --- network services and capacity ---------------------------------------------------------


def web_acl(p: Any, region: str, load_balancer_arn: str) -> None:
    waf = p.estate.client("wafv2", region)
    acl = waf.create_web_acl(
        Name=f"annexa-{uuid.uuid4().hex[:8]}", Scope="REGIONAL", DefaultAction={"Allow": {}},
        VisibilityConfig={"SampledRequestsEnabled": True, "CloudWatchMetricsEnabled": True,
                          "MetricName": "annexa"})["Summary"]
    waf.associate_web_acl(WebACLArn=acl["ARN"], ResourceArn=load_balancer_arn)


def distribution(p: Any, *, good: bool) -> None:
    config: dict[str, Any] = {
        "CallerReference": uuid.uuid4().hex, "Comment": "annexa", "Enabled": True,
        "Origins": {"Quantity": 1, "Items": [{
            "Id": "app", "DomainName": "app.example.com",
            "CustomOriginConfig": {"HTTPPort": 80, "HTTPSPort": 443,
                                   "OriginProtocolPolicy": "https-only"}}]},
        "DefaultCacheBehavior": {
            "TargetOriginId": "app",
            "ViewerProtocolPolicy": "redirect-to-https" if good else "allow-all",
            "CachePolicyId": "658327ea-f89d-4fab-a63d-7e88639e58f6"},
    }
    if good:
        config["ViewerCertificate"] = {
            "CloudFrontDefaultCertificate": False, "SSLSupportMethod": "sni-only",
            "ACMCertificateArn": f"arn:aws:acm:us-east-1:{p.account_id}:certificate/annexa",
            "MinimumProtocolVersion": "TLSv1.2_2021"}
        config["WebACLId"] = f"arn:aws:wafv2:us-east-1:{p.account_id}:global/webacl/edge/1"
    else:
        config["ViewerCertificate"] = {"CloudFrontDefaultCertificate": True}
    arn = p.estate.client("cloudfront").create_distribution(DistributionConfig=config)[
        "Distribution"]["ARN"]
    if not good:
        p.bad("aws.cloudfront.distribution_waf", arn)
        p.bad("aws.cloudfront.distribution_min_tls", arn)


def budget(p: Any, *, alerts: bool) -> None:
    if not alerts:
        p.bad("aws.budgets.alerts_configured", p.account_id)
        return
    p.estate.client("budgets").create_budget(
        AccountId=p.account_id,
        Budget={"BudgetName": "monthly-cost", "BudgetLimit": {"Amount": "1000", "Unit": "USD"},
                "TimeUnit": "MONTHLY", "BudgetType": "COST"},
        NotificationsWithSubscribers=[{
            "Notification": {"NotificationType": "FORECASTED",
                             "ComparisonOperator": "GREATER_THAN", "Threshold": 90},
            "Subscribers": [{"SubscriptionType": "EMAIL",
                             "Address": "finops@example.com"}]}])


# --- AWS Organizations ---------------------------------------------------------------------


def standalone(p: Any) -> None:
    """The account belongs to no organisation: both organisation checks fail on it."""
    p.bad("aws.organizations.account_governed", p.account_id)
    p.bad("aws.organizations.environments_separated", p.account_id)


def organization(p: Any, accounts: dict[str, tuple[dict[str, str], str | None]],
                 *, create: bool) -> None:
    """Tag accounts and place them in OUs, in ``p``'s organisation (created if asked).

    ``accounts``: account id (or "new:<name>" for an account created here) →
    (tags, OU name or None for directly under the root). Expectations follow the
    checks' documented rules (management account exempt from the OU rule).
    """
    org = p.estate.client("organizations")
    if create:
        org.create_organization(FeatureSet="ALL")
    info = org.describe_organization()["Organization"]
    root = org.list_roots()["Roots"][0]["Id"]
    ous: dict[str, str] = {}
    ids: dict[str, tuple[dict[str, str], str | None]] = {}
    for key, (tags, ou) in accounts.items():
        account_id = key
        if key.startswith("new:"):
            account_id = org.create_account(Email=f"{key[4:]}@example.com",
                                            AccountName=key[4:])["CreateAccountStatus"][
                "AccountId"]
        ids[account_id] = (tags, ou)
        if tags:
            org.tag_resource(ResourceId=account_id,
                             Tags=[{"Key": k, "Value": v} for k, v in tags.items()])
        if ou:
            if ou not in ous:
                ous[ou] = org.create_organizational_unit(ParentId=root, Name=ou)[
                    "OrganizationalUnit"]["Id"]
            org.move_account(AccountId=account_id, SourceParentId=root,
                             DestinationParentId=ous[ou])
    arns = {a["Id"]: a["Arn"] for a in org.list_accounts()["Accounts"]}
    kinds = set()
    separated = True
    for account_id, (tags, ou) in ids.items():
        governed = {"owner", "environment"} <= set(tags) and (
            ou is not None or account_id == info["MasterAccountId"])
        if not governed:
            p.bad("aws.organizations.account_governed", arns[account_id])
        env = tags.get("environment")
        kinds.add("production" if env in ("production", "prod") else "non-production"
                  if env else None)
        separated = separated and env is not None
    if not (separated and {"production", "non-production"} <= kinds):
        p.bad("aws.organizations.environments_separated", info["Arn"])

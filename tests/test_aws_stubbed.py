"""Answers moto cannot give, tested with botocore's ``Stubber`` on real boto3 clients.

moto has no ``<root_account>`` row in its credential report and cannot assign a virtual
MFA device to root; it answers "not configured" where current AWS turns default
encryption and the public access block on for new buckets, and it never includes
``BucketRegion`` in ``ListBuckets``; it has no Access Analyzer (the moto-based tests use
the local fake of ``annexa_demo.aws.fakes``). Each test here stubs the real AWS response
shapes (taken from the API references) on a real client — parameter validation and
response parsing are botocore's own — and runs the connector's read and transform code
on them. ``GetEbsDefaultKmsKeyId`` (unimplemented in moto) is not called by the
connector: the EBS default-encryption check needs only ``GetEbsEncryptionByDefault``.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from botocore.stub import Stubber

import connectors.aws  # noqa: F401 - registers the checks
from connectors.aws import accessanalyzer, iam_root, kms, s3, securityhub
from connectors.aws.session import Account, ClientSettings
from core.checks import REGISTRY

ACCOUNT = "123456789012"
ROOT_ARN = f"arn:aws:iam::{ACCOUNT}:root"

REPORT = (
    "user,arn,user_creation_time,password_enabled,password_last_used,password_last_changed,"
    "password_next_rotation,mfa_active,access_key_1_active,access_key_1_last_rotated,"
    "access_key_1_last_used_date,access_key_1_last_used_region,access_key_1_last_used_service,"
    "access_key_2_active,access_key_2_last_rotated,access_key_2_last_used_date,"
    "access_key_2_last_used_region,access_key_2_last_used_service,cert_1_active,"
    "cert_1_last_rotated,cert_2_active,cert_2_last_rotated\n"
    f"<root_account>,{ROOT_ARN},2019-01-06T09:00:00+00:00,not_supported,"
    "{used},not_supported,not_supported,true,false,N/A,N/A,N/A,N/A,false,N/A,N/A,N/A,N/A,"
    "false,N/A,false,N/A\n"
    f"alice,arn:aws:iam::{ACCOUNT}:user/alice,2020-02-01T10:00:00+00:00,true,"
    "2026-11-01T08:00:00+00:00,2020-02-01T10:00:00+00:00,N/A,true,false,N/A,N/A,N/A,N/A,"
    "false,N/A,N/A,N/A,N/A,false,N/A,false,N/A\n"
)


@pytest.fixture
def offline(aws_offline_env: None) -> None:
    """Fake credentials, no endpoint: a stubbed client never reaches the network."""


def client(service: str, region: str = "us-east-1") -> Any:
    return boto3.client(service, region_name=region)


@pytest.fixture
def account(offline: None) -> Account:
    return Account(ACCOUNT, boto3.Session(), ClientSettings(), "us-east-1")


def judge(check_id: str, payload: dict[str, Any]) -> str:
    spec = REGISTRY.get(check_id)
    try:
        return spec.func(payload, spec.parameters).status
    except KeyError:
        return "error"


@pytest.fixture
def stubbed() -> Iterator[list[Stubber]]:
    """Stubbers created by the test; each must have been fully used."""
    made: list[Stubber] = []
    yield made
    for stubber in made:
        stubber.assert_no_pending_responses()
        stubber.deactivate()


def stub(made: list[Stubber], c: Any) -> Stubber:
    s = Stubber(c)
    s.activate()
    made.append(s)
    return s


def test_root_with_virtual_mfa_and_recent_use(account: Account, stubbed: list) -> None:
    """Real AWS: the report is generated (STARTED, then COMPLETE), has a root row, and a
    virtual device assigned to root appears in ListVirtualMFADevices."""
    iam = client("iam")
    s = stub(stubbed, iam)
    s.add_response("generate_credential_report", {"State": "STARTED",
                                                  "Description": "started"})
    s.add_response("generate_credential_report", {"State": "COMPLETE"})
    used = datetime.now(UTC).replace(microsecond=0).isoformat()
    s.add_response("get_credential_report", {
        "Content": REPORT.format(used=used).encode(), "ReportFormat": "text/csv",
        "GeneratedTime": datetime(2026, 11, 27, tzinfo=UTC)})
    s.add_response("list_virtual_mfa_devices", {"VirtualMFADevices": [
        {"SerialNumber": f"arn:aws:iam::{ACCOUNT}:mfa/root-account-mfa-device",
         "User": {"Path": "/", "UserName": ACCOUNT, "UserId": f"{ACCOUNT}0000", "Arn": ROOT_ARN,
                  "CreateDate": datetime(2019, 1, 6, tzinfo=UTC)},
         "EnableDate": datetime(2019, 1, 6, tzinfo=UTC)},
        {"SerialNumber": f"arn:aws:iam::{ACCOUNT}:mfa/alice",
         "User": {"Path": "/", "UserName": "alice", "UserId": "AIDAALICEEXAMPLE1",
                  "Arn": f"arn:aws:iam::{ACCOUNT}:user/alice",
                  "CreateDate": datetime(2020, 2, 1, tzinfo=UTC)}},
    ], "IsTruncated": False}, {"AssignmentStatus": "Assigned", "MaxItems": 1000})
    payload = iam_root.root_payload(iam, account, {"AccountMFAEnabled": 1}, poll=(0.0,))
    assert payload["CredentialReportRow"]["mfa_active"] == "true"
    assert payload["CredentialReportRow"]["password_last_used"] == used[:10]
    assert payload["RootVirtualMFADevices"] == [
        f"arn:aws:iam::{ACCOUNT}:mfa/root-account-mfa-device"]
    assert judge("aws.iam.root_mfa", payload) == "pass"
    assert judge("aws.iam.root_hardware_mfa", payload) == "fail"
    assert judge("aws.iam.root_recent_use", payload) == "fail"


def test_credential_report_never_ready_is_an_error_not_a_verdict(
    account: Account, stubbed: list
) -> None:
    iam = client("iam")
    s = stub(stubbed, iam)
    for _ in range(3):
        s.add_response("generate_credential_report", {"State": "INPROGRESS"})
    s.add_response("list_virtual_mfa_devices", {"VirtualMFADevices": [], "IsTruncated": False},
                   {"AssignmentStatus": "Assigned", "MaxItems": 1000})
    payload = iam_root.root_payload(iam, account, {"AccountMFAEnabled": 1}, poll=(0.0, 0.0))
    assert payload["_errors"] == {"CredentialReportRow": "ReportNotReady"}
    assert judge("aws.iam.root_recent_use", payload) == "error"
    assert judge("aws.iam.root_mfa", payload) == "pass"  # the summary still answers
    assert judge("aws.iam.root_hardware_mfa", payload) == "pass"


def test_current_aws_bucket_defaults(account: Account, stubbed: list) -> None:
    """A bucket created today: ListBuckets gives its region (no GetBucketLocation), and
    SSE-S3 plus all four public-access-block flags are on by default."""
    eu = client("s3", "eu-west-1")
    account._clients[("s3", "eu-west-1")] = eu  # the stubbed client serves the bucket
    s = stub(stubbed, eu)
    s.add_response("get_bucket_encryption", {"ServerSideEncryptionConfiguration": {"Rules": [
        {"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"},
         "BucketKeyEnabled": True}]}}, {"Bucket": "new-bucket"})
    s.add_response("get_public_access_block", {"PublicAccessBlockConfiguration": {
        "BlockPublicAcls": True, "IgnorePublicAcls": True, "BlockPublicPolicy": True,
        "RestrictPublicBuckets": True}}, {"Bucket": "new-bucket"})
    s.add_client_error("get_bucket_policy", "NoSuchBucketPolicy", "none", 404,
                       expected_params={"Bucket": "new-bucket"})
    s.add_client_error("get_bucket_policy_status", "NoSuchBucketPolicy", "none", 404,
                       expected_params={"Bucket": "new-bucket"})
    s.add_response("get_bucket_acl", {"Owner": {"ID": "abc"}, "Grants": [
        {"Grantee": {"ID": "abc", "Type": "CanonicalUser"}, "Permission": "FULL_CONTROL"}]},
        {"Bucket": "new-bucket"})
    s.add_response("get_bucket_versioning", {}, {"Bucket": "new-bucket"})
    s.add_response("get_bucket_logging", {}, {"Bucket": "new-bucket"})
    bucket = {"Name": "new-bucket", "CreationDate": datetime(2026, 11, 1, tzinfo=UTC),
              "BucketRegion": "eu-west-1", "BucketArn": "arn:aws:s3:::new-bucket"}
    base, access, settings = list(s3.bucket_evidence(account, bucket, (None, {})))
    assert base.region == "eu-west-1" and "_errors" not in base.payload
    assert judge("aws.s3.bucket_default_encryption", base.payload) == "pass"
    assert judge("aws.s3.bucket_public_access_block", base.payload) == "pass"
    assert access.payload["Policy"] is None
    assert judge("aws.s3.bucket_not_public", access.payload) == "pass"
    assert judge("aws.s3.bucket_tls_only", access.payload) == "fail"
    assert judge("aws.s3.bucket_versioning", settings.payload) == "fail"


def test_security_hub_not_subscribed_is_off_other_errors_fail_the_unit(stubbed: list,
                                                                        offline: None) -> None:
    hub = client("securityhub")
    s = stub(stubbed, hub)
    s.add_client_error("describe_hub", "InvalidAccessException", "Account 123456789012 is not "
                       "subscribed to AWS Security Hub", 401)
    assert securityhub.get_hub(hub) is None
    s.add_response("describe_hub", {"HubArn": "arn:aws:securityhub:us-east-1:1:hub/default",
                                    "SubscribedAt": "2026-01-05T09:00:00.000Z",
                                    "AutoEnableControls": True})
    assert securityhub.get_hub(hub)["AutoEnableControls"] is True
    s.add_client_error("describe_hub", "AccessDeniedException", "no", 403)
    with pytest.raises(ClientError):
        securityhub.get_hub(hub)


def test_kms_reads_rotation_only_where_the_customer_controls_it(stubbed: list,
                                                                 offline: None) -> None:
    """An AWS managed key gets no GetKeyRotationStatus call (Stubber refuses any call
    not queued); a customer key gets one, with the newer RotationPeriodInDays kept."""
    c = client("kms")
    s = stub(stubbed, c)
    managed = {"KeyId": "k1", "Arn": "arn:aws:kms:us-east-1:1:key/k1", "KeyManager": "AWS",
               "KeyState": "Enabled", "KeySpec": "SYMMETRIC_DEFAULT", "Origin": "AWS_KMS"}
    s.add_response("describe_key", {"KeyMetadata": managed}, {"KeyId": "k1"})
    payload = kms.key_payload(c, "k1")
    assert "KeyRotationEnabled" not in payload
    assert judge("aws.kms.key_rotation", payload) == "not_applicable"
    customer = {**managed, "KeyId": "k2", "KeyManager": "CUSTOMER"}
    s.add_response("describe_key", {"KeyMetadata": customer}, {"KeyId": "k2"})
    s.add_response("get_key_rotation_status", {"KeyRotationEnabled": True,
                                               "RotationPeriodInDays": 180}, {"KeyId": "k2"})
    payload = kms.key_payload(c, "k2")
    assert payload["RotationPeriodInDays"] == 180
    assert judge("aws.kms.key_rotation", payload) == "pass"


def test_access_analyzer_real_shapes(account: Account, stubbed: list) -> None:
    c = client("accessanalyzer", "eu-west-1")
    account._clients[("accessanalyzer", "eu-west-1")] = c
    s = stub(stubbed, c)
    s.add_response("list_analyzers", {"analyzers": [
        {"arn": "arn:aws:access-analyzer:eu-west-1:1:analyzer/org", "name": "org",
         "type": "ORGANIZATION", "createdAt": datetime(2026, 1, 5, tzinfo=UTC),
         "lastResourceAnalyzed": "arn:aws:s3:::x", "status": "ACTIVE",
         "lastResourceAnalyzedAt": datetime(2026, 11, 27, tzinfo=UTC)},
        {"arn": "arn:aws:access-analyzer:eu-west-1:1:analyzer/unused", "name": "unused",
         "type": "ACCOUNT_UNUSED_ACCESS", "createdAt": datetime(2026, 1, 5, tzinfo=UTC),
         "status": "ACTIVE"},
    ]}, {})
    (evidence,) = list(accessanalyzer.read(account, "eu-west-1"))
    assert evidence.resource_id == "eu-west-1"
    assert not any("lastResourceAnalyzed" in a for a in evidence.payload["analyzers"])
    assert judge("aws.accessanalyzer.enabled", evidence.payload) == "pass"


def test_list_buckets_without_region_asks_for_the_location(account: Account,
                                                           stubbed: list) -> None:
    """moto (and AWS without MaxBuckets) omit BucketRegion: GetBucketLocation is used,
    with its legacy answers (None = us-east-1, "EU" = eu-west-1)."""
    home = client("s3")
    account._clients[("s3", "us-east-1")] = home
    s = stub(stubbed, home)
    s.add_response("get_bucket_location", {"LocationConstraint": "EU"}, {"Bucket": "old"})
    assert s3.get_bucket_region(home, "old") == "eu-west-1"
    s.add_response("get_bucket_location", {}, {"Bucket": "older"})
    assert s3.get_bucket_region(home, "older") == "us-east-1"

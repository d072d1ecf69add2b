"""AWS checks on hand-written payloads: pure functions, no network.

Payloads are shaped like the connector's evidence (normalised API answers: ISO
timestamps), including real AWS's current defaults (SSE-S3 and the public access block
on for new buckets) and moto's older "not configured" answers.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

import connectors.aws  # noqa: F401 - registers the checks
from connectors.kit import EvidenceMissing
from core.checks import REGISTRY, evaluate
from core.records import Evidence
from core.times import activity_time

pytestmark = pytest.mark.clock

ACCOUNT = "123456789012"
USER_ARN = f"arn:aws:iam::{ACCOUNT}:user/alice"


def run(check_id: str, payload: dict[str, Any], **params: Any) -> tuple[str, str]:
    spec = REGISTRY.get(check_id)
    verdict = spec.func(payload, spec.params_with(params))
    return verdict.status, verdict.message


def status(check_id: str, payload: dict[str, Any], **params: Any) -> str:
    return run(check_id, payload, **params)[0]


def ago(days: float) -> str:
    return (datetime.now(UTC) - timedelta(days=days)).isoformat().replace("+00:00", "Z")


def day_ago(days: int) -> str:
    """A last-use timestamp as the connector stores it (``activity_time``)."""
    return activity_time(datetime.now(UTC) - timedelta(days=days))


def test_every_check_has_complete_metadata() -> None:
    specs = [s for s in REGISTRY if s.id.startswith("aws.")]
    assert {s.id for s in specs} >= {
        "aws.iam.password_policy_min_length",
        "aws.iam.password_policy_reuse",
        "aws.iam.password_policy_complexity",
        "aws.iam.user_console_mfa",
        "aws.iam.access_key_rotated",
        "aws.iam.credentials_unused",
        "aws.iam.root_access_keys",
        "aws.s3.bucket_default_encryption",
        "aws.s3.bucket_public_access_block",
        "aws.s3control.account_public_access_block",
        "aws.cloudtrail.multi_region_logging",
        "aws.cloudtrail.log_file_validation",
        "aws.ec2.ebs_default_encryption",
    }
    assert len(specs) >= 35
    for spec in specs:
        assert spec.title and spec.rationale and spec.remediation, spec.id
        assert spec.severity in ("info", "low", "medium", "high", "critical"), spec.id
        # the check's service is its resource type's service (unit errors rely on it),
        # except the shared network names, judged on EC2 security groups
        if spec.id.startswith("aws.network."):
            assert spec.resource_type == "aws.ec2.security_group", spec.id
        else:
            assert spec.id.split(".")[1] == spec.resource_type.split(".")[1], spec.id


# --- IAM password policy -------------------------------------------------------------

STRONG = {
    "PasswordPolicy": {
        "MinimumPasswordLength": 16,
        "RequireSymbols": True,
        "RequireNumbers": True,
        "RequireUppercaseCharacters": True,
        "RequireLowercaseCharacters": True,
        "AllowUsersToChangePassword": True,
        "ExpirePasswords": False,
        "PasswordReusePrevention": 24,
    }
}
WEAK = {
    "PasswordPolicy": {
        "MinimumPasswordLength": 8,
        "RequireSymbols": False,
        "RequireNumbers": True,
        "RequireUppercaseCharacters": False,
        "RequireLowercaseCharacters": True,
        "AllowUsersToChangePassword": True,
        "ExpirePasswords": False,
    }
}
NO_POLICY = {"PasswordPolicy": None}
UNREADABLE_POLICY = {"_errors": {"PasswordPolicy": "AccessDenied"}}


def test_password_min_length() -> None:
    check = "aws.iam.password_policy_min_length"
    assert status(check, STRONG) == "pass"
    assert run(check, WEAK) == ("fail", "Minimum password length is 8, below the required 14")
    assert status(check, WEAK, min_length=8) == "pass"
    assert status(check, NO_POLICY) == "fail"
    with pytest.raises(EvidenceMissing, match="PasswordPolicy could not be read: AccessDenied"):
        run(check, UNREADABLE_POLICY)


def test_password_reuse() -> None:
    check = "aws.iam.password_policy_reuse"
    assert status(check, STRONG) == "pass"
    assert run(check, WEAK) == ("fail", "Password reuse prevention is not set")
    some = {"PasswordPolicy": {**WEAK["PasswordPolicy"], "PasswordReusePrevention": 5}}
    assert status(check, some) == "fail"
    assert status(check, some, min_reuse_prevention=5) == "pass"
    assert status(check, NO_POLICY) == "fail"
    with pytest.raises(EvidenceMissing):
        run(check, UNREADABLE_POLICY)


def test_password_complexity() -> None:
    check = "aws.iam.password_policy_complexity"
    assert status(check, STRONG) == "pass"
    verdict, message = run(check, WEAK)
    assert verdict == "fail" and "symbols" in message and "uppercase" in message
    assert "numbers" not in message
    assert status(check, WEAK, require_symbols=False, require_uppercase=False) == "pass"
    assert status(check, NO_POLICY) == "fail"
    with pytest.raises(EvidenceMissing):
        run(check, UNREADABLE_POLICY)


def test_password_parameters_are_type_checked() -> None:
    spec = REGISTRY.get("aws.iam.password_policy_complexity")
    with pytest.raises(ValueError, match="must be bool"):
        spec.params_with({"require_symbols": 1})
    with pytest.raises(ValueError, match="no parameter"):
        spec.params_with({"require_emoji": True})


# --- IAM users -----------------------------------------------------------------------


def user(**parts: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "User": {"UserName": "alice", "Arn": USER_ARN, "CreateDate": ago(400)},
        "LoginProfile": None,
        "MFADevices": [],
        "AccessKeys": [],
    }
    payload.update(parts)
    return payload


def key(
    created_days: float,
    *,
    status: str = "Active",
    used_days: int | None = None,
    key_id: str = "AKIAEXAMPLE1",
) -> dict[str, Any]:
    last_used: dict[str, Any] = {"ServiceName": "N/A", "Region": "N/A"}
    if used_days is not None:
        last_used = {"LastUsedDate": day_ago(used_days), "ServiceName": "s3", "Region": "eu-west-1"}
    return {
        "UserName": "alice",
        "AccessKeyId": key_id,
        "Status": status,
        "CreateDate": ago(created_days),
        "AccessKeyLastUsed": last_used,
    }


CONSOLE = {"UserName": "alice", "CreateDate": ago(400), "PasswordResetRequired": False}
MFA = [
    {
        "UserName": "alice",
        "SerialNumber": f"arn:aws:iam::{ACCOUNT}:mfa/alice",
        "EnableDate": ago(300),
    }
]


def test_console_mfa() -> None:
    check = "aws.iam.user_console_mfa"
    assert status(check, user(LoginProfile=CONSOLE, MFADevices=MFA)) == "pass"
    assert run(check, user(LoginProfile=CONSOLE)) == ("fail", "Console user has no MFA device")
    assert status(check, user()) == "not_applicable"
    assert status(check, user(MFADevices=MFA)) == "not_applicable"


def test_console_mfa_missing_inputs_raise() -> None:
    check = "aws.iam.user_console_mfa"
    no_profile = user()
    del no_profile["LoginProfile"]
    no_profile["_errors"] = {"LoginProfile": "AccessDenied"}
    with pytest.raises(EvidenceMissing, match="LoginProfile could not be read: AccessDenied"):
        run(check, no_profile)
    no_devices = user(LoginProfile=CONSOLE)
    del no_devices["MFADevices"]
    with pytest.raises(EvidenceMissing, match="MFADevices"):
        run(check, no_devices)


def test_access_key_rotated() -> None:
    check = "aws.iam.access_key_rotated"
    assert status(check, user(AccessKeys=[key(10)])) == "pass"
    verdict, message = run(check, user(AccessKeys=[key(10), key(120, key_id="AKIAOLD")]))
    assert verdict == "fail" and "AKIAOLD (120 days)" in message
    assert status(check, user(AccessKeys=[key(500, status="Inactive")])) == "not_applicable"
    assert status(check, user()) == "not_applicable"
    assert status(check, user(AccessKeys=[key(10)]), max_age_days=5) == "fail"
    assert status(check, user(AccessKeys=[key(0.01)]), max_age_days=0) == "fail"
    no_keys = user()
    del no_keys["AccessKeys"]
    no_keys["_errors"] = {"AccessKeys": "Throttling"}
    with pytest.raises(EvidenceMissing, match="Throttling"):
        run(check, no_keys)


def test_credentials_unused_keys() -> None:
    check = "aws.iam.credentials_unused"
    assert status(check, user(AccessKeys=[key(400, used_days=1)])) == "pass"
    verdict, message = run(check, user(AccessKeys=[key(400, used_days=60)]))
    assert verdict == "fail" and "last used 60 days ago" in message
    # never used: judged by its creation
    assert status(check, user(AccessKeys=[key(10)])) == "pass"
    verdict, message = run(check, user(AccessKeys=[key(50)]))
    assert verdict == "fail" and "never used, created 50 days ago" in message
    # inactive keys do not count
    assert status(check, user(AccessKeys=[key(400, status="Inactive")])) == "not_applicable"
    assert status(check, user(AccessKeys=[key(400, used_days=60)]), max_unused_days=90) == "pass"


def test_credentials_unused_console_password() -> None:
    check = "aws.iam.credentials_unused"
    used = user(LoginProfile=CONSOLE)
    used["User"]["PasswordLastUsed"] = day_ago(3)
    assert status(check, used) == "pass"
    stale = user(LoginProfile=CONSOLE)
    stale["User"]["PasswordLastUsed"] = day_ago(100)
    assert status(check, stale) == "fail"
    never = user(LoginProfile={**CONSOLE, "CreateDate": ago(100)})
    verdict, message = run(check, never)
    assert verdict == "fail" and "console password (never used" in message
    fresh = user(LoginProfile={**CONSOLE, "CreateDate": ago(2)})
    assert status(check, fresh) == "pass"
    assert status(check, user()) == "not_applicable"


def test_credentials_unused_missing_inputs_raise() -> None:
    check = "aws.iam.credentials_unused"
    unread = key(400)
    del unread["AccessKeyLastUsed"]
    unread["_errors"] = {"AccessKeyLastUsed": "AccessDenied"}
    with pytest.raises(EvidenceMissing, match="AKIAEXAMPLE1 could not be read: AccessDenied"):
        run(check, user(AccessKeys=[unread]))
    # an inactive key's unreadable last use does not matter
    assert status(check, user(AccessKeys=[{**unread, "Status": "Inactive"}])) == "not_applicable"
    no_profile = user()
    del no_profile["LoginProfile"]
    with pytest.raises(EvidenceMissing):
        run(check, no_profile)


def test_root_access_keys() -> None:
    check = "aws.iam.root_access_keys"
    assert status(check, {"SummaryMap": {"AccountAccessKeysPresent": 0, "Users": 3}}) == "pass"
    assert status(check, {"SummaryMap": {"AccountAccessKeysPresent": 1}}) == "fail"
    with pytest.raises(EvidenceMissing):
        run(check, {"SummaryMap": {"Users": 3}})
    with pytest.raises(EvidenceMissing, match="AccessDenied"):
        run(check, {"_errors": {"SummaryMap": "AccessDenied"}})


# --- S3 ------------------------------------------------------------------------------

ALL_ON = {
    "BlockPublicAcls": True,
    "IgnorePublicAcls": True,
    "BlockPublicPolicy": True,
    "RestrictPublicBuckets": True,
}
# What current AWS answers for a bucket created today (defaults on).
AWS_DEFAULT_BUCKET = {
    "Name": "new-bucket",
    "CreationDate": "2026-01-05T10:00:00Z",
    "Region": "eu-west-1",
    "ServerSideEncryptionConfiguration": {
        "Rules": [
            {
                "ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"},
                "BucketKeyEnabled": False,
            }
        ]
    },
    "PublicAccessBlockConfiguration": dict(ALL_ON),
}
# What moto (and AWS for buckets from before 2023) answers: nothing configured.
UNCONFIGURED_BUCKET = {
    "Name": "old-bucket",
    "CreationDate": "2019-03-01T10:00:00Z",
    "Region": "us-east-1",
    "ServerSideEncryptionConfiguration": None,
    "PublicAccessBlockConfiguration": None,
    "AccountPublicAccessBlock": None,
}


def test_bucket_default_encryption() -> None:
    check = "aws.s3.bucket_default_encryption"
    assert run(check, AWS_DEFAULT_BUCKET) == (
        "pass",
        "Bucket encrypts objects by default with SSE-S3",
    )
    assert status(check, UNCONFIGURED_BUCKET) == "fail"
    assert status(check, AWS_DEFAULT_BUCKET, require_kms=True) == "fail"
    kms = {
        **AWS_DEFAULT_BUCKET,
        "ServerSideEncryptionConfiguration": {
            "Rules": [
                {
                    "ApplyServerSideEncryptionByDefault": {
                        "SSEAlgorithm": "aws:kms",
                        "KMSMasterKeyID": "alias/data",
                    },
                    "BucketKeyEnabled": True,
                }
            ]
        },
    }
    assert status(check, kms, require_kms=True) == "pass"
    empty_rules = {**AWS_DEFAULT_BUCKET, "ServerSideEncryptionConfiguration": {"Rules": []}}
    assert status(check, empty_rules) == "fail"


def test_bucket_encryption_unreadable_is_an_error_not_a_verdict() -> None:
    payload = {
        k: v for k, v in AWS_DEFAULT_BUCKET.items() if k != "ServerSideEncryptionConfiguration"
    }
    payload["_errors"] = {"ServerSideEncryptionConfiguration": "AccessDenied"}
    with pytest.raises(EvidenceMissing, match="could not be read: AccessDenied"):
        run("aws.s3.bucket_default_encryption", payload)
    ev = Evidence(
        scope=ACCOUNT,
        region="eu-west-1",
        resource_type="aws.s3.bucket",
        resource_id="new-bucket",
        payload=payload,
    )
    findings = {f.check_id: f for f in evaluate(ev, REGISTRY.for_type("aws.s3.bucket"), {})}
    assert findings["aws.s3.bucket_default_encryption"].status == "error"
    assert "AccessDenied" in findings["aws.s3.bucket_default_encryption"].message
    assert findings["aws.s3.bucket_public_access_block"].status == "pass"


def test_bucket_public_access_block() -> None:
    check = "aws.s3.bucket_public_access_block"
    assert status(check, AWS_DEFAULT_BUCKET) == "pass"
    assert status(check, UNCONFIGURED_BUCKET) == "fail"
    partial = {
        **AWS_DEFAULT_BUCKET,
        "PublicAccessBlockConfiguration": {**ALL_ON, "BlockPublicPolicy": False},
        "AccountPublicAccessBlock": None,
    }
    verdict, message = run(check, partial)
    assert verdict == "fail" and message.endswith("leaves off: BlockPublicPolicy")
    with pytest.raises(EvidenceMissing):
        run(check, {"Name": "x", "_errors": {"PublicAccessBlockConfiguration": "AccessDenied"}})


def test_account_public_access_block() -> None:
    check = "aws.s3control.account_public_access_block"
    assert status(check, {"PublicAccessBlockConfiguration": dict(ALL_ON)}) == "pass"
    assert status(check, {"PublicAccessBlockConfiguration": None}) == "fail"
    off = {"PublicAccessBlockConfiguration": {**ALL_ON, "IgnorePublicAcls": False}}
    assert status(check, off) == "fail"
    with pytest.raises(EvidenceMissing):
        run(check, {})


# --- CloudTrail ----------------------------------------------------------------------


def trail(
    name: str = "main",
    *,
    multi: bool = True,
    logging: bool = True,
    validation: bool = True,
    **extra: Any,
) -> dict[str, Any]:
    t = {
        "Name": name,
        "TrailARN": f"arn:aws:cloudtrail:us-east-1:{ACCOUNT}:trail/{name}",
        "HomeRegion": "us-east-1",
        "IsMultiRegionTrail": multi,
        "IsOrganizationTrail": False,
        "LogFileValidationEnabled": validation,
        "HasCustomEventSelectors": False,
        "Status": {"IsLogging": logging},
        "EventSelectors": [],
    }
    t.update(extra)
    return t


def test_multi_region_logging() -> None:
    check = "aws.cloudtrail.multi_region_logging"
    assert status(check, {"trailList": [trail()]}) == "pass"
    assert run(check, {"trailList": []}) == ("fail", "No multi-region trail exists")
    assert status(check, {"trailList": [trail(multi=False)]}) == "fail"
    verdict, message = run(check, {"trailList": [trail(logging=False)]})
    assert verdict == "fail" and "main is not logging" in message
    mixed = {"trailList": [trail("off", logging=False), trail("app", multi=False), trail("on")]}
    assert run(check, mixed) == ("pass", "Multi-region trail on is logging")


def test_multi_region_logging_event_selectors() -> None:
    check = "aws.cloudtrail.multi_region_logging"
    write_only = trail(
        HasCustomEventSelectors=True,
        EventSelectors=[
            {"ReadWriteType": "WriteOnly", "IncludeManagementEvents": True, "DataResources": []}
        ],
    )
    assert status(check, {"trailList": [write_only]}) == "fail"
    assert status(check, {"trailList": [write_only]}, require_management_events=False) == "pass"
    all_events = trail(
        HasCustomEventSelectors=True,
        EventSelectors=[
            {"ReadWriteType": "All", "IncludeManagementEvents": True, "DataResources": []}
        ],
    )
    assert status(check, {"trailList": [all_events]}) == "pass"
    advanced = trail(
        HasCustomEventSelectors=True,
        EventSelectors=[],
        AdvancedEventSelectors=[
            {
                "Name": "management",
                "FieldSelectors": [{"Field": "eventCategory", "Equals": ["Management"]}],
            }
        ],
    )
    assert status(check, {"trailList": [advanced]}) == "pass"
    advanced_read_only = trail(
        HasCustomEventSelectors=True,
        AdvancedEventSelectors=[
            {
                "FieldSelectors": [
                    {"Field": "eventCategory", "Equals": ["Management"]},
                    {"Field": "readOnly", "Equals": ["true"]},
                ]
            }
        ],
    )
    assert status(check, {"trailList": [advanced_read_only]}) == "fail"


def test_multi_region_logging_unreadable_status() -> None:
    check = "aws.cloudtrail.multi_region_logging"
    unread = trail("org")
    del unread["Status"]
    unread["_errors"] = {"Status": "AccessDeniedException"}
    with pytest.raises(EvidenceMissing, match="org status \\(AccessDeniedException\\)"):
        run(check, {"trailList": [unread]})
    # another trail proves the point: what could not be read does not matter
    assert status(check, {"trailList": [unread, trail("ok")]}) == "pass"
    # unknown selectors of a custom-selector trail: cannot tell
    selectors = trail(HasCustomEventSelectors=True)
    del selectors["EventSelectors"]
    selectors["_errors"] = {"EventSelectors": "AccessDenied"}
    with pytest.raises(EvidenceMissing):
        run(check, {"trailList": [selectors]})
    with pytest.raises(EvidenceMissing):
        run(check, {})


def test_log_file_validation() -> None:
    check = "aws.cloudtrail.log_file_validation"
    assert status(check, trail()) == "pass"
    assert status(check, trail(validation=False)) == "fail"
    with pytest.raises(EvidenceMissing):
        run(check, {"Name": "x"})


# --- EC2 -----------------------------------------------------------------------------


def test_ebs_default_encryption() -> None:
    check = "aws.ec2.ebs_default_encryption"
    assert status(check, {"EbsEncryptionByDefault": True}) == "pass"
    assert status(check, {"EbsEncryptionByDefault": False}) == "fail"
    with pytest.raises(EvidenceMissing):
        run(check, {})


# --- IAM principals and root ---------------------------------------------------------

ADMIN = {"Effect": "Allow", "Action": "*", "Resource": "*"}
READ = {"Effect": "Allow", "Action": ["s3:Get*"], "Resource": "*"}


def principal(kind: str, name: str, *, inline: list | None = None, managed: list | None = None
              ) -> dict[str, Any]:
    inline_key = {"user": "UserPolicyList", "group": "GroupPolicyList",
                  "role": "RolePolicyList"}[kind]
    payload: dict[str, Any] = {
        inline_key: [{"PolicyName": f"p{i}", "PolicyDocument": {"Statement": [s]}}
                     for i, s in enumerate(inline or [])],
        "AttachedManagedPolicies": managed or [],
    }
    if kind == "user":
        payload["User"] = {"UserName": name}
    else:
        payload[f"{kind.capitalize()}Name"] = name
    return payload


@pytest.mark.parametrize("kind", ["user", "group", "role"])
def test_full_admin_policies(kind: str) -> None:
    check = f"aws.iam.{kind}_no_full_admin_policy"
    assert status(check, principal(kind, "ops", inline=[READ])) == "pass"
    verdict, message = run(check, principal(kind, "ops", inline=[READ, ADMIN]))
    assert verdict == "fail" and "inline policy p1" in message
    listed = {**ADMIN, "Action": ["s3:*", "*"], "Resource": ["*"]}
    assert status(check, principal(kind, "ops", inline=[listed])) == "fail"
    deny = {**ADMIN, "Effect": "Deny"}
    assert status(check, principal(kind, "ops", inline=[deny])) == "pass"
    admin_managed = [{"PolicyName": "AdministratorAccess",
                      "PolicyArn": "arn:aws:iam::aws:policy/AdministratorAccess",
                      "FullAdminStatements": [ADMIN]}]
    assert status(check, principal(kind, "ops", managed=admin_managed)) == "fail"
    assert status(check, principal(kind, "ops", managed=admin_managed),
                  allowed_names=["op*"]) == "pass"
    unreadable = [{"PolicyArn": "arn:aws:iam::aws:policy/X",
                   "_errors": {"Document": "AccessDenied"}}]
    with pytest.raises(EvidenceMissing, match="AccessDenied"):
        run(check, principal(kind, "ops", managed=unreadable))
    # an unreadable document does not hide a known admin grant
    assert status(check, principal(kind, "ops", managed=unreadable + admin_managed)) == "fail"
    with pytest.raises(EvidenceMissing, match="not in GetAccountAuthorizationDetails"):
        run(check, {"_errors": {"Policies": "user not in GetAccountAuthorizationDetails"}})


def test_policy_documents_may_be_url_encoded() -> None:
    from connectors.aws.iam_principals import full_admin_statements

    encoded = ("%7B%22Statement%22%3A%5B%7B%22Effect%22%3A%22Allow%22%2C%22Action%22%3A%22*"
               "%22%2C%22Resource%22%3A%22*%22%7D%5D%7D")
    assert full_admin_statements(encoded) == [ADMIN]
    assert full_admin_statements({"Statement": ADMIN}) == [ADMIN]  # a single statement
    assert full_admin_statements(None) == []


def root(row: dict[str, str] | None = None, **extra: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {"Arn": f"arn:aws:iam::{ACCOUNT}:root",
                               "RootVirtualMFADevices": [], "AccountMFAEnabled": 1}
    payload["CredentialReportRow"] = None if row is None else {
        "user": "<root_account>", "mfa_active": "true", "password_last_used": "N/A",
        "access_key_1_last_used_date": "N/A", "access_key_2_last_used_date": "N/A", **row}
    payload.update(extra)
    return payload


def test_root_mfa() -> None:
    check = "aws.iam.root_mfa"
    assert run(check, root({})) == ("pass", "The root user has MFA (credential report)")
    assert status(check, root({"mfa_active": "false"})) == "fail"
    # moto: no root row in the report; the account summary decides
    assert run(check, root(None)) == ("pass", "The root user has MFA (account summary)")
    assert status(check, root(None, AccountMFAEnabled=0)) == "fail"
    with pytest.raises(EvidenceMissing, match="ReportNotReady"):
        run(check, {"Arn": "x", "_errors": {"CredentialReportRow": "ReportNotReady",
                                            "AccountMFAEnabled": "account summary not read"}})


def test_root_hardware_mfa() -> None:
    check = "aws.iam.root_hardware_mfa"
    assert status(check, root({})) == "pass"
    serial = f"arn:aws:iam::{ACCOUNT}:mfa/root-account-mfa-device"
    virtual = root({}, RootVirtualMFADevices=[serial])
    verdict, message = run(check, virtual)
    assert verdict == "fail" and "virtual MFA" in message
    assert status(check, root({"mfa_active": "false"})) == "fail"
    unreadable = {k: v for k, v in root({}).items() if k != "RootVirtualMFADevices"}
    unreadable["_errors"] = {"RootVirtualMFADevices": "AccessDenied"}
    with pytest.raises(EvidenceMissing, match="AccessDenied"):
        run(check, unreadable)


def test_root_recent_use() -> None:
    check = "aws.iam.root_recent_use"
    assert status(check, root({"password_last_used": day_ago(400)})) == "pass"
    assert status(check, root({})) == "pass"  # never used ("N/A")
    verdict, message = run(check, root({"access_key_2_last_used_date": day_ago(3)}))
    assert verdict == "fail" and "access key 2 last used date" in message
    assert status(check, root({"password_last_used": day_ago(40)})) == "pass"
    assert status(check, root({"password_last_used": day_ago(40)}), window_days=60) == "fail"
    with pytest.raises(EvidenceMissing, match="no <root_account> row"):
        run(check, root(None))


def test_credential_report_parsing_handles_real_and_moto_answers() -> None:
    from connectors.aws.iam_root import root_row

    header = ("user,arn,user_creation_time,password_enabled,password_last_used,"
              "password_last_changed,password_next_rotation,mfa_active,access_key_1_active,"
              "access_key_1_last_rotated,access_key_1_last_used_date,"
              "access_key_1_last_used_region,access_key_1_last_used_service\n")
    row = ("<root_account>,arn:aws:iam::123456789012:root,2019-01-01T00:00:00+00:00,"
           "not_supported,2026-11-20T13:14:15+00:00,not_supported,not_supported,true,false,"
           "N/A,N/A,N/A,N/A\n")
    alice = ("alice,arn:aws:iam::123456789012:user/alice,2020-01-01T00:00:00+00:00,true,"
             "N/A,N/A,N/A,false,false,N/A,N/A,N/A,N/A\n")
    real = (header + row + alice).encode()
    parsed = root_row(real)
    # Older than a day: stored to the second, so verdicts near a limit are exact.
    assert parsed is not None and parsed["password_last_used"] == "2026-11-20T13:14:15Z"
    assert parsed["mfa_active"] == "true" and "access_key_1_last_used_region" not in parsed
    moto = repr(header.encode() + alice.encode()).encode()  # b'...' around the CSV
    assert root_row(moto) is None
    assert root_row(repr(real).encode()) == parsed


def test_access_analyzer_enabled() -> None:
    check = "aws.accessanalyzer.enabled"
    active = {"name": "a", "type": "ACCOUNT", "status": "ACTIVE"}
    assert status(check, {"analyzers": [active]}) == "pass"
    assert status(check, {"analyzers": [{**active, "type": "ORGANIZATION"}]}) == "pass"
    assert run(check, {"analyzers": []})[0] == "fail"
    unused_only = {"analyzers": [{**active, "type": "ACCOUNT_UNUSED_ACCESS"}]}
    assert status(check, unused_only) == "fail"
    assert status(check, {"analyzers": [{**active, "status": "DISABLED"}]}) == "fail"


# --- S3 policies, ACLs and settings --------------------------------------------------

PUBLIC_ACL = {"Grants": [{"Grantee": {"Type": "Group",
                                      "URI": "http://acs.amazonaws.com/groups/global/AllUsers"},
                          "Permission": "READ"}]}
PRIVATE_ACL = {"Grants": [{"Grantee": {"Type": "CanonicalUser", "ID": "abc"},
                           "Permission": "FULL_CONTROL"}]}


def access(**parts: Any) -> dict[str, Any]:
    payload = {"Name": "b", "Policy": None, "PolicyStatus": None, "Acl": PRIVATE_ACL,
               "PublicAccessBlockConfiguration": None, "AccountPublicAccessBlock": None}
    payload.update(parts)
    return payload


def test_bucket_not_public() -> None:
    check = "aws.s3.bucket_not_public"
    assert status(check, access()) == "pass"
    assert run(check, access(Acl=PUBLIC_ACL))[1] == ("Bucket is public: the ACL grants READ to "
                                                    "everyone")
    assert status(check, access(PolicyStatus={"IsPublic": True})) == "fail"
    blocked = access(Acl=PUBLIC_ACL, PolicyStatus={"IsPublic": True},
                     PublicAccessBlockConfiguration=dict(ALL_ON))
    verdict, message = run(check, blocked)
    assert verdict == "pass" and "neutralised" in message
    only_acls = access(PolicyStatus={"IsPublic": True},
                       PublicAccessBlockConfiguration={**ALL_ON, "RestrictPublicBuckets": False})
    assert status(check, only_acls) == "fail"
    with pytest.raises(EvidenceMissing, match="AccessDenied"):
        run(check, {"Name": "b", "Acl": PRIVATE_ACL, "PublicAccessBlockConfiguration": None,
                    "_errors": {"PolicyStatus": "AccessDenied"}})


def tls_statement(**changes: Any) -> dict[str, Any]:
    statement = {"Effect": "Deny", "Principal": "*", "Action": "s3:*",
                 "Resource": ["arn:aws:s3:::b", "arn:aws:s3:::b/*"],
                 "Condition": {"Bool": {"aws:SecureTransport": "false"}}}
    statement.update(changes)
    return statement


def test_bucket_tls_only() -> None:
    check = "aws.s3.bucket_tls_only"
    assert status(check, access(Policy={"Statement": [tls_statement()]})) == "pass"
    assert status(check, access(Policy={"Statement": tls_statement(
        Principal={"AWS": "*"}, Action=["*"],
        Condition={"bool": {"AWS:SecureTransport": [False]}})})) == "pass"
    assert status(check, access()) == "fail"  # no policy
    for wrong in ({"Effect": "Allow"}, {"Principal": {"AWS": "arn:aws:iam::1:root"}},
                  {"Action": "s3:GetObject"},
                  {"Condition": {"Bool": {"aws:SecureTransport": "true"}}}):
        assert status(check, access(Policy={"Statement": [tls_statement(**wrong)]})) == "fail"


def test_bucket_versioning_and_logging() -> None:
    assert status("aws.s3.bucket_versioning", {"Versioning": {"Status": "Enabled"}}) == "pass"
    assert run("aws.s3.bucket_versioning", {"Versioning": {"Status": "Suspended"}})[1] == (
        "Versioning is suspended")
    assert status("aws.s3.bucket_versioning", {"Versioning": {}}) == "fail"
    logging = {"Logging": {"LoggingEnabled": {"TargetBucket": "logs", "TargetPrefix": "b/"}}}
    assert status("aws.s3.bucket_access_logging", logging) == "pass"
    assert status("aws.s3.bucket_access_logging", {"Logging": {}}) == "fail"
    with pytest.raises(EvidenceMissing):
        run("aws.s3.bucket_access_logging", {"_errors": {"Logging": "AccessDenied"}})


# --- CloudTrail trail details ----------------------------------------------------------


def test_trail_kms_cloudwatch_and_bucket() -> None:
    assert status("aws.cloudtrail.kms_encryption", trail(KmsKeyId="arn:aws:kms:k")) == "pass"
    assert status("aws.cloudtrail.kms_encryption", trail()) == "fail"
    group = "arn:aws:logs:us-east-1:1:log-group:trail:*"
    assert status("aws.cloudtrail.cloudwatch_delivery",
                  trail(CloudWatchLogsLogGroupArn=group)) == "pass"
    failing = trail(CloudWatchLogsLogGroupArn=group,
                    Status={"IsLogging": True, "LatestCloudWatchLogsDeliveryError": "denied"})
    assert status("aws.cloudtrail.cloudwatch_delivery", failing) == "fail"
    assert status("aws.cloudtrail.cloudwatch_delivery", trail()) == "fail"
    check = "aws.cloudtrail.bucket_not_public"
    own = {"Name": "logs", "InAccount": True, "Acl": PRIVATE_ACL, "PolicyStatus": None,
           "PublicAccessBlockConfiguration": None, "AccountPublicAccessBlock": None}
    assert status(check, trail(S3BucketAccess=own)) == "pass"
    assert status(check, trail(S3BucketAccess={**own, "Acl": PUBLIC_ACL})) == "fail"
    foreign = {"Name": "central-logs", "InAccount": False}
    assert status(check, trail(S3BucketAccess=foreign)) == "not_applicable"
    with pytest.raises(EvidenceMissing, match="AccessDenied"):
        run(check, trail(S3BucketAccess={"Name": "x", "_errors": {"S3BucketAccess":
                                                                  "AccessDenied"}}))


# --- logs, KMS ------------------------------------------------------------------------


def test_log_group_retention() -> None:
    check = "aws.logs.log_group_retention"
    assert status(check, {"logGroupName": "g"}) == "pass"  # never expires
    assert status(check, {"retentionInDays": 400}) == "pass"
    assert run(check, {"retentionInDays": 30})[1] == (
        "Events are kept only 30 days (required: 365)")
    assert status(check, {"retentionInDays": 30}, min_retention_days=30) == "pass"


def kms_key(**meta: Any) -> dict[str, Any]:
    metadata = {"KeyManager": "CUSTOMER", "KeyState": "Enabled", "KeySpec": "SYMMETRIC_DEFAULT",
                "Origin": "AWS_KMS"}
    metadata.update(meta)
    return {"KeyMetadata": metadata}


def test_kms_key_rotation() -> None:
    check = "aws.kms.key_rotation"
    assert status(check, {**kms_key(), "KeyRotationEnabled": True}) == "pass"
    assert status(check, {**kms_key(), "KeyRotationEnabled": False}) == "fail"
    for meta in ({"KeyManager": "AWS"}, {"KeyState": "PendingDeletion"},
                 {"KeySpec": "RSA_2048"}, {"Origin": "EXTERNAL"}):
        assert status(check, kms_key(**meta)) == "not_applicable", meta
    with pytest.raises(EvidenceMissing):
        run(check, {**kms_key(), "_errors": {"KeyRotationEnabled": "AccessDeniedException"}})


# --- EC2, network, VPC --------------------------------------------------------------------


def sg(*rules: dict[str, Any]) -> dict[str, Any]:
    return {"GroupId": "sg-1", "GroupName": "web", "IpPermissions": list(rules)}


def rule(protocol: str, low: int | None, high: int | None, cidr: str = "0.0.0.0/0"
         ) -> dict[str, Any]:
    out: dict[str, Any] = {"IpProtocol": protocol, "IpRanges": [], "Ipv6Ranges": []}
    if low is not None:
        out.update(FromPort=low, ToPort=high)
    if ":" in cidr:
        out["Ipv6Ranges"] = [{"CidrIpv6": cidr}]
    else:
        out["IpRanges"] = [{"CidrIp": cidr}]
    return out


@pytest.mark.parametrize(
    ("rules", "ssh", "rdp", "all_ports"),
    [
        ([rule("tcp", 443, 443)], "pass", "pass", "pass"),
        ([rule("tcp", 22, 22)], "fail", "pass", "pass"),
        ([rule("tcp", 22, 22, "10.0.0.0/8")], "pass", "pass", "pass"),
        ([rule("tcp", 3389, 3389, "::/0")], "pass", "fail", "pass"),
        # the RDP check is the shared one of every cloud (connectors.exposure_checks): TCP
        ([rule("udp", 3389, 3389)], "pass", "pass", "pass"),
        ([rule("udp", 22, 22)], "pass", "pass", "pass"),  # SSH is TCP
        ([rule("tcp", 0, 65535)], "fail", "fail", "fail"),
        ([rule("tcp", 20, 25)], "fail", "pass", "pass"),
        ([rule("-1", None, None, "::/0")], "fail", "fail", "fail"),
        ([rule("icmp", -1, -1)], "pass", "pass", "pass"),
    ],
)
def test_security_groups_open_to_the_internet(
    rules: list[dict[str, Any]], ssh: str, rdp: str, all_ports: str
) -> None:
    payload = sg(*rules)
    assert status("aws.network.ssh_open_to_internet", payload) == ssh
    assert status("aws.network.rdp_open_to_internet", payload) == rdp
    assert status("aws.network.all_ports_open_to_internet", payload) == all_ports


def test_volume_and_instance_checks() -> None:
    assert status("aws.ec2.volume_encrypted", {"Encrypted": True, "KmsKeyId": "k"}) == "pass"
    assert status("aws.ec2.volume_encrypted", {"Encrypted": False}) == "fail"
    check = "aws.ec2.instance_imdsv2"
    running = {"State": {"Name": "running"}}
    assert status(check, {**running, "MetadataOptions": {"HttpTokens": "required"}}) == "pass"
    assert status(check, {**running, "MetadataOptions": {"HttpTokens": "optional"}}) == "fail"
    # the stored form: HttpTokens redacted by normalisation, IMDSv2Required kept
    stored = {**running, "MetadataOptions": {"HttpTokens": "[REDACTED]"},
              "IMDSv2Required": True}
    assert status(check, stored) == "pass"
    assert status(check, {**running, "MetadataOptions": {"HttpEndpoint": "disabled"}}) == "pass"
    assert status(check, {"State": {"Name": "terminated"}}) == "not_applicable"


def test_vpc_flow_logs() -> None:
    check = "aws.vpc.flow_logs_enabled"
    active = {"FlowLogId": "fl-1", "FlowLogStatus": "ACTIVE", "TrafficType": "REJECT"}
    assert status(check, {"FlowLogs": [active]}) == "pass"
    assert status(check, {"FlowLogs": [active]}, require_all_traffic=True) == "fail"
    assert status(check, {"FlowLogs": []}) == "fail"
    assert status(check, {"FlowLogs": [{**active, "FlowLogStatus": "FAILED"}]}) == "fail"


# --- RDS --------------------------------------------------------------------------------

GOOD_DB = {"DBInstanceIdentifier": "db", "StorageEncrypted": True, "KmsKeyId": "k",
           "BackupRetentionPeriod": 7, "PubliclyAccessible": False, "MultiAZ": True,
           "DeletionProtection": True}


def test_rds_checks() -> None:
    checks = ("storage_encrypted", "backup_retention", "not_publicly_accessible", "multi_az",
              "deletion_protection")
    for name in checks:
        assert status(f"aws.rds.{name}", GOOD_DB) == "pass", name
    bad = {**GOOD_DB, "StorageEncrypted": False, "BackupRetentionPeriod": 0,
           "PubliclyAccessible": True, "MultiAZ": False, "DeletionProtection": False}
    for name in checks:
        assert status(f"aws.rds.{name}", bad) == "fail", name
    assert run("aws.rds.backup_retention", bad)[1] == "Automated backups are disabled"
    assert status("aws.rds.backup_retention", {**GOOD_DB, "BackupRetentionPeriod": 3}) == "fail"
    assert status("aws.rds.backup_retention", {**GOOD_DB, "BackupRetentionPeriod": 3},
                  min_days=3) == "pass"
    aurora = {**bad, "DBClusterIdentifier": "cluster-1"}
    assert status("aws.rds.multi_az", aurora) == "not_applicable"
    assert status("aws.rds.deletion_protection", aurora) == "not_applicable"
    without_flag = {k: v for k, v in GOOD_DB.items() if k != "PubliclyAccessible"}
    with pytest.raises(EvidenceMissing):  # real AWS always answers it; never guess
        run("aws.rds.not_publicly_accessible", without_flag)


# --- regional account settings ----------------------------------------------------------


def test_guardduty_config_securityhub_backup() -> None:
    assert status("aws.guardduty.enabled", {"Detectors": [
        {"DetectorId": "d1", "Status": "ENABLED"}]}) == "pass"
    assert status("aws.guardduty.enabled", {"Detectors": []}) == "fail"
    assert status("aws.guardduty.enabled", {"Detectors": [
        {"DetectorId": "d1", "Status": "DISABLED"}]}) == "fail"
    with pytest.raises(EvidenceMissing):
        run("aws.guardduty.enabled", {"Detectors": [
            {"DetectorId": "d1", "_errors": {"Status": "AccessDeniedException"}}]})

    recorder = {"name": "default", "recordingGroup": {"allSupported": True}}
    check = "aws.config.recorder_enabled"
    assert status(check, {"ConfigurationRecorders": [recorder],
                          "Status": [{"name": "default", "recording": True}]}) == "pass"
    assert status(check, {"ConfigurationRecorders": [],
                          "Status": []}) == "fail"
    assert status(check, {"ConfigurationRecorders": [recorder],
                          "Status": [{"name": "default", "recording": False}]}) == "fail"
    failing = {"name": "default", "recording": True, "lastStatus": "FAILURE",
               "lastErrorCode": "AccessDenied"}
    assert "AccessDenied" in run(check, {"ConfigurationRecorders": [recorder],
                                         "Status": [failing]})[1]
    some = {"name": "default", "recordingGroup": {"allSupported": False,
                                                  "resourceTypes": ["AWS::S3::Bucket"]}}
    payload = {"ConfigurationRecorders": [some],
               "Status": [{"name": "default", "recording": True}]}
    assert status(check, payload) == "fail"
    assert status(check, payload, require_all_resource_types=False) == "pass"

    assert status("aws.securityhub.enabled", {"Hub": {"HubArn": "arn:h"}}) == "pass"
    assert status("aws.securityhub.enabled", {"Hub": None}) == "fail"
    one_plan = {"BackupPlansList": [{"BackupPlanName": "d"}]}
    assert status("aws.backup.plan_exists", one_plan) == "pass"
    assert status("aws.backup.plan_exists", {"BackupPlansList": []}) == "fail"
    assert status("aws.backup.plan_exists", {"BackupPlansList": [{"BackupPlanName": "d"}]},
                  min_plans=2) == "fail"


# --- ELBv2 --------------------------------------------------------------------------------


def lb(*listeners: dict[str, Any], kind: str = "application") -> dict[str, Any]:
    return {"LoadBalancer": {"Type": kind}, "Listeners": list(listeners)}


HTTPS = {"Protocol": "HTTPS", "Port": 443, "SslPolicy": "ELBSecurityPolicy-TLS13-1-2-2021-06"}
REDIRECT = {"Protocol": "HTTP", "Port": 80, "DefaultActions": [
    {"Type": "redirect", "RedirectConfig": {"Protocol": "HTTPS", "Port": "443"}}]}
FORWARD = {"Protocol": "HTTP", "Port": 80, "DefaultActions": [{"Type": "forward"}]}


def test_elbv2_listeners() -> None:
    tls_only, modern = "aws.elbv2.listeners_tls_only", "aws.elbv2.listeners_modern_tls_policy"
    assert status(tls_only, lb(HTTPS, REDIRECT)) == "pass"
    assert run(tls_only, lb(HTTPS, FORWARD)) == ("fail", "Plaintext listeners: HTTP:80")
    tcp = {"Protocol": "TCP", "Port": 5432}
    assert status(tls_only, lb(tcp, kind="network")) == "fail"
    assert status(tls_only, lb(tcp, kind="network"), allow_tcp_passthrough=True) == "pass"
    assert status(tls_only, lb(kind="gateway")) == "not_applicable"
    assert status(tls_only, lb()) == "not_applicable"
    assert status(modern, lb(HTTPS, REDIRECT)) == "pass"
    for policy in ("ELBSecurityPolicy-TLS-1-2-Ext-2018-06", "ELBSecurityPolicy-FS-1-2-Res-2020-10",
                   "ELBSecurityPolicy-TLS13-1-3-2021-06"):
        assert status(modern, lb({**HTTPS, "SslPolicy": policy})) == "pass", policy
    for policy in ("ELBSecurityPolicy-2016-08", "ELBSecurityPolicy-TLS-1-1-2017-01",
                   "ELBSecurityPolicy-TLS13-1-1-2021-06"):
        assert status(modern, lb({**HTTPS, "SslPolicy": policy})) == "fail", policy
    assert status(modern, lb({**HTTPS, "SslPolicy": "custom"}),
                  allowed_policies=["custom"]) == "pass"
    assert status(modern, lb(FORWARD)) == "not_applicable"
    with pytest.raises(EvidenceMissing):
        run(modern, {"LoadBalancer": {}, "_errors": {"Listeners": "AccessDenied"}})

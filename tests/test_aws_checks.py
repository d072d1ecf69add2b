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
from connectors.aws.common import EvidenceMissing
from connectors.checks import REGISTRY, evaluate
from connectors.records import Evidence

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
    return (datetime.now(UTC) - timedelta(days=days)).date().isoformat()


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
    for spec in specs:
        assert spec.title and spec.rationale and spec.remediation, spec.id
        # the check's service is its resource type's service (unit errors rely on it)
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

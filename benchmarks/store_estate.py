"""A synthetic, deterministic estate for store benchmarks, generated lazily.

Item ``i`` is an IAM user (even ``i``) or an S3 bucket (odd ``i``) shaped like the
merged boto3 responses the AWS connector stores: 13 to 15 top-level keys, nested lists
and dicts, ``datetime`` values, a volatile ``ResponseMetadata`` (dropped by
normalisation, different in every run) and one finding per item. Everything is a pure
function of ``i`` (and ``run_salt`` for the volatile part), so a second pass yields
the same content without anything being kept in memory between items.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from core.records import Coverage, Evidence, Finding

ACCOUNTS = 20
REGIONS = ("eu-west-1", "eu-central-1", "us-east-1", "us-west-2")
BASE_TIME = datetime(2026, 1, 5, 9, 30, 0, tzinfo=UTC)
COLLECTED_AT = datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)
TEAMS = ("platform", "payments", "data", "identity", "mobile", "web", "sre", "finance")


def account(i: int) -> str:
    return f"{100000000000 + (i % ACCOUNTS) * 7919:012d}"


def _hex(i: int, n: int = 16) -> str:
    return hashlib.blake2b(i.to_bytes(8, "little"), digest_size=n // 2).hexdigest()


def iam_user(i: int, run_salt: int) -> dict[str, Any]:
    acct = account(i)
    name = f"user-{i:07d}"
    created = BASE_TIME - timedelta(days=30 + i % 900, seconds=i % 86400)
    has_mfa = i % 7 != 0
    return {
        "UserName": name,
        "UserId": "AIDA" + _hex(i, 16).upper(),
        "Arn": f"arn:aws:iam::{acct}:user/{TEAMS[i % 8]}/{name}",
        "Path": f"/{TEAMS[i % 8]}/",
        "CreateDate": created,
        "PasswordLastUsed": BASE_TIME - timedelta(hours=i % 2000),
        "Tags": [
            {"Key": "team", "Value": TEAMS[i % 8]},
            {"Key": "cost-centre", "Value": f"cc-{i % 97:03d}"},
            {"Key": "owner", "Value": f"{name}@example.com"},
        ],
        "Groups": [f"{TEAMS[i % 8]}-developers", "all-staff"][: 1 + i % 2],
        "AttachedPolicies": [
            {"PolicyName": "ReadOnlyAccess", "PolicyArn": "arn:aws:iam::aws:policy/ReadOnlyAccess"},
            {
                "PolicyName": f"{TEAMS[i % 8]}-deploy",
                "PolicyArn": f"arn:aws:iam::{acct}:policy/{TEAMS[i % 8]}-deploy",
            },
        ],
        "MFADevices": (
            [{"SerialNumber": f"arn:aws:iam::{acct}:mfa/{name}", "EnableDate": created}]
            if has_mfa
            else []
        ),
        "AccessKeys": [
            {
                "AccessKeyId": "AKIA" + _hex(i + 1, 16).upper(),
                "Status": "Active" if i % 5 else "Inactive",
                "CreateDate": created + timedelta(days=3),
                "LastUsedDate": BASE_TIME - timedelta(days=i % 120),
                "LastUsedService": "s3",
            }
        ],
        "LoginProfile": {"CreateDate": created, "PasswordResetRequired": False},
        "password_enabled": True,
        "PermissionsBoundary": None,
        "ResponseMetadata": {"RequestId": _hex(i * 31 + run_salt, 32), "HTTPStatusCode": 200},
    }


def s3_bucket(i: int, run_salt: int) -> dict[str, Any]:
    acct = account(i)
    name = f"{TEAMS[i % 8]}-artefacts-{i:07d}"
    region = REGIONS[i % len(REGIONS)]
    encrypted = i % 11 != 0
    return {
        "Name": name,
        "CreationDate": BASE_TIME - timedelta(days=i % 1500, minutes=i % 1440),
        "Region": region,
        "Versioning": {"Status": "Enabled" if i % 3 else "Suspended", "MFADelete": "Disabled"},
        "Encryption": {
            "Rules": (
                [
                    {
                        "ApplyServerSideEncryptionByDefault": {
                            "SSEAlgorithm": "aws:kms",
                            "KMSMasterKeyID": f"arn:aws:kms:{region}:{acct}:key/{_hex(i, 32)}",
                        },
                        "BucketKeyEnabled": True,
                    }
                ]
                if encrypted
                else []
            )
        },
        "PublicAccessBlock": {
            "BlockPublicAcls": True,
            "IgnorePublicAcls": True,
            "BlockPublicPolicy": i % 13 != 0,
            "RestrictPublicBuckets": True,
        },
        "Logging": {"TargetBucket": f"logs-{acct}-{region}", "TargetPrefix": f"s3/{name}/"},
        "Policy": {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "DenyInsecureTransport",
                    "Effect": "Deny",
                    "Principal": "*",
                    "Action": "s3:*",
                    "Resource": [f"arn:aws:s3:::{name}", f"arn:aws:s3:::{name}/*"],
                    "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                }
            ],
        },
        "OwnershipControls": {"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]},
        "Lifecycle": [
            {"ID": "expire-noncurrent", "Status": "Enabled", "NoncurrentDays": 30 + i % 60}
        ],
        "Tags": [
            {"Key": "team", "Value": TEAMS[i % 8]},
            {"Key": "data-class", "Value": ("public", "internal", "confidential")[i % 3]},
        ],
        "ObjectLockEnabled": i % 17 == 0,
        "ResponseMetadata": {"RequestId": _hex(i * 17 + run_salt, 32), "HTTPStatusCode": 200},
    }


def item(i: int, run_salt: int = 0) -> tuple[Evidence, dict[str, Any]]:
    """Evidence ``i`` and the fields of its one finding (all but ``evidence_hash``)."""
    acct = account(i)
    if i % 2 == 0:
        payload = iam_user(i, run_salt)
        ev = Evidence(acct, "global", "aws.iam.user", payload["UserName"], payload, COLLECTED_AT)
        ok = bool(payload["MFADevices"])
        fi = {
            "check_id": "aws.iam.user_console_mfa",
            "status": "pass" if ok else "fail",
            "severity": "high",
            "message": "MFA device enrolled" if ok else f"{payload['UserName']} has no MFA",
            "controls": ("A.5.17", "A.8.5"),
        }
    else:
        payload = s3_bucket(i, run_salt)
        ev = Evidence(
            acct, payload["Region"], "aws.s3.bucket", payload["Name"], payload, COLLECTED_AT
        )
        ok = bool(payload["Encryption"]["Rules"])
        fi = {
            "check_id": "aws.s3.bucket_encryption",
            "status": "pass" if ok else "fail",
            "severity": "medium",
            "message": "default encryption: aws:kms" if ok else "no default encryption",
            "controls": ("A.8.24",),
        }
    return ev, fi


def finding_for(ev: Evidence, fi: dict[str, Any], evidence_hash: str) -> Finding:
    return Finding(
        check_id=fi["check_id"],
        scope=ev.scope,
        region=ev.region,
        resource_type=ev.resource_type,
        resource_id=ev.resource_id,
        status=fi["status"],
        severity=fi["severity"],
        message=fi["message"],
        evidence_hash=evidence_hash,
        observed_at=ev.collected_at,
        controls=fi["controls"],
    )


def items(n: int, run_salt: int = 0) -> Iterator[tuple[Evidence, dict[str, Any]]]:
    """The estate of ``n`` items, one at a time."""
    for i in range(n):
        yield item(i, run_salt)


def coverage(n: int) -> list[Coverage]:
    """One clean unit per account and service: every item is closable by absence."""
    accounts = sorted({account(i) for i in range(min(n, ACCOUNTS))})
    return [Coverage(a, "global", svc, ok=True) for a in accounts for svc in ("iam", "s3")]

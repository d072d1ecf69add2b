"""S3 buckets: default encryption and bucket-level public access block, with checks.

One global unit per account (service ``s3``): ``ListBuckets`` is the listing (a failure
fails the unit); each bucket's location, encryption and public access block are partial
reads recorded under ``payload["_errors"]``. Evidence region = the bucket's region.

Resource type ``aws.s3.bucket`` (id = bucket name)::

    {"Name", "CreationDate", "Region",
     "ServerSideEncryptionConfiguration": {...} | null,   # null = not configured
     "PublicAccessBlockConfiguration": {...} | null}      # null = not configured

Current AWS turns both on for new buckets (SSE-S3 since 2023-01, all four public
access block flags since 2023-04); older buckets and moto answer "not configured".
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from connectors.aws.common import MISSING, read_partial, require, with_errors
from connectors.aws.session import GLOBAL, Account
from connectors.aws.units import ReaderSpec
from connectors.checks import Verdict, check, failed, passed
from connectors.records import Evidence

SERVICE = "s3"
BUCKET = "aws.s3.bucket"
UNKNOWN_REGION = "unknown"

ACTIONS: dict[str, str | None] = {
    "s3:ListBuckets": "s3:ListAllMyBuckets",
    "s3:GetBucketLocation": "s3:GetBucketLocation",
    "s3:GetBucketEncryption": "s3:GetEncryptionConfiguration",
    "s3:GetPublicAccessBlock": "s3:GetBucketPublicAccessBlock",
}

PUBLIC_ACCESS_FLAGS = (
    "BlockPublicAcls",
    "IgnorePublicAcls",
    "BlockPublicPolicy",
    "RestrictPublicBuckets",
)

# --- get -----------------------------------------------------------------------------


def get_buckets(client: Any) -> list[dict[str, Any]]:
    """All buckets. A page size makes AWS include each bucket's ``BucketRegion``."""
    buckets: list[dict[str, Any]] = []
    pages = client.get_paginator("list_buckets").paginate(PaginationConfig={"PageSize": 1000})
    for page in pages:
        buckets.extend(page.get("Buckets", []))
    return buckets


def get_bucket_region(client: Any, name: str) -> str:
    constraint = client.get_bucket_location(Bucket=name).get("LocationConstraint")
    # Legacy answers: None/"" is us-east-1, "EU" is eu-west-1.
    return {None: "us-east-1", "": "us-east-1", "EU": "eu-west-1"}.get(constraint, constraint)


def get_encryption(client: Any, name: str) -> dict[str, Any]:
    return client.get_bucket_encryption(Bucket=name)["ServerSideEncryptionConfiguration"]


def get_public_access_block(client: Any, name: str) -> dict[str, Any]:
    return client.get_public_access_block(Bucket=name)["PublicAccessBlockConfiguration"]


# --- transform -----------------------------------------------------------------------


def bucket_payload(account: Account, bucket: Mapping[str, Any]) -> dict[str, Any]:
    name = bucket["Name"]
    errors: dict[str, str] = {}
    region = bucket.get("BucketRegion")
    if not region:
        region = read_partial(
            errors, "Region", lambda: get_bucket_region(account.client("s3"), name)
        )
    payload: dict[str, Any] = {
        "Name": name,
        "CreationDate": bucket.get("CreationDate"),
        "Region": None if region is MISSING else region,
    }
    client = account.client("s3", None if region is MISSING else region)
    encryption = read_partial(
        errors,
        "ServerSideEncryptionConfiguration",
        lambda: get_encryption(client, name),
        absent=("ServerSideEncryptionConfigurationNotFoundError",),
    )
    if encryption is not MISSING:
        payload["ServerSideEncryptionConfiguration"] = encryption
    block = read_partial(
        errors,
        "PublicAccessBlockConfiguration",
        lambda: get_public_access_block(client, name),
        absent=("NoSuchPublicAccessBlockConfiguration",),
    )
    if block is not MISSING:
        payload["PublicAccessBlockConfiguration"] = block
    return with_errors(payload, errors)


# --- read (one unit) -----------------------------------------------------------------


def read(account: Account, region: str = GLOBAL) -> Iterator[Evidence]:
    buckets = get_buckets(account.client("s3"))  # the listing: a failure fails the unit
    for bucket in buckets:
        payload = bucket_payload(account, bucket)
        yield account.evidence(BUCKET, bucket["Name"], payload["Region"] or UNKNOWN_REGION,
                               payload)


READERS = (ReaderSpec(SERVICE, read, regional=False),)


# --- checks --------------------------------------------------------------------------


def public_access_block_verdict(config: Mapping[str, Any] | None, what: str) -> Verdict:
    """Shared by the bucket and the account check: all four flags must be true."""
    if config is None:
        return failed(f"No public access block is configured on the {what}")
    off = [flag for flag in PUBLIC_ACCESS_FLAGS if not config.get(flag, False)]
    if off:
        return failed(f"Public access block on the {what} leaves off: " + ", ".join(off))
    return passed(f"All four public access block settings are on for the {what}")


_ALGORITHMS = {"AES256": "SSE-S3", "aws:kms": "SSE-KMS", "aws:kms:dsse": "DSSE-KMS"}


@check(
    id="aws.s3.bucket_default_encryption",
    title="S3 buckets encrypt objects by default",
    severity="medium",
    resource_type=BUCKET,
    rationale="Default encryption protects every object at rest, whatever the uploader "
    "asked for.",
    remediation="Configure default encryption (SSE-S3, or SSE-KMS with a customer managed "
    "key) on the bucket.",
    parameters={"require_kms": False},
)
def bucket_default_encryption(payload: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    config = require(payload, "ServerSideEncryptionConfiguration")
    if config is None:
        return failed("Bucket has no default encryption configured")
    algorithms = [
        rule["ApplyServerSideEncryptionByDefault"].get("SSEAlgorithm")
        for rule in config.get("Rules", [])
        if rule.get("ApplyServerSideEncryptionByDefault")
    ]
    known = [a for a in algorithms if a in _ALGORITHMS]
    if not known:
        return failed("Bucket encryption configuration has no default algorithm")
    if params["require_kms"] and not any(a.startswith("aws:kms") for a in known):
        return failed(f"Bucket encrypts with {_ALGORITHMS[known[0]]}, but KMS is required")
    return passed(f"Bucket encrypts objects by default with {_ALGORITHMS[known[0]]}")


@check(
    id="aws.s3.bucket_public_access_block",
    title="S3 buckets block public access",
    severity="high",
    resource_type=BUCKET,
    rationale="The bucket-level public access block stops ACLs and policies from "
    "exposing the bucket's data to the internet.",
    remediation="Turn on all four Block Public Access settings for the bucket.",
)
def bucket_public_access_block(payload: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    return public_access_block_verdict(require(payload, "PublicAccessBlockConfiguration"),
                                       "bucket")

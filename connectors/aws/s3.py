"""S3 buckets: encryption, public access, TLS-only policy, versioning and logging.

One global unit per account (service ``s3``): ``ListBuckets`` is the listing (a failure
fails the unit); every per-bucket read is partial, recorded under
``payload["_errors"]``. Evidence region = the bucket's region.

Each bucket gives three evidence items (id = bucket name), so that a change to one
aspect of a bucket re-versions only the findings judged on that aspect:

``aws.s3.bucket``           ``{"Name", "Arn", "CreationDate", "Region",
                            "ServerSideEncryptionConfiguration": {...} | null,
                            "PublicAccessBlockConfiguration": {...} | null}``
``aws.s3.bucket_access``    ``{"Name", "Arn", "Region", "Policy": {...} | null,
                            "PolicyStatus": {"IsPublic"} | null, "Acl": {"Owner",
                            "Grants"}, "PublicAccessBlockConfiguration": ... }``
``aws.s3.bucket_settings``  ``{"Name", "Arn", "Region", "Versioning": {"Status"?,
                            "MFADelete"?}, "Logging": {"LoggingEnabled"?}}``

The first two also carry ``AccountPublicAccessBlock`` (the account-level setting, read
once per unit): S3 applies a flag that is on at either level, so a bucket whose own
block is off but whose account blocks everything is not public.

(null = not configured.) Current AWS turns default encryption and the public access
block on for new buckets (SSE-S3 since 2023-01, all four block flags since 2023-04);
older buckets and moto answer "not configured".
"""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from connectors.aws.common import MISSING, actions, as_list, paginate, read_partial
from connectors.aws.session import Account
from connectors.aws.units import ReaderSpec
from connectors.kit import ERRORS_KEY, GLOBAL, require, with_errors
from core.checks import Verdict, check, failed, passed
from core.records import Evidence

SERVICE = "s3"
BUCKET = "aws.s3.bucket"
BUCKET_ACCESS = "aws.s3.bucket_access"
BUCKET_SETTINGS = "aws.s3.bucket_settings"
UNKNOWN_REGION = "unknown"

ACTIONS = actions(
    "s3:GetBucketLocation", "s3:GetBucketPolicy", "s3:GetBucketPolicyStatus", "s3:GetBucketAcl",
    "s3:GetBucketVersioning", "s3:GetBucketLogging",
    renamed={
        "s3:ListBuckets": "s3:ListAllMyBuckets",
        "s3:GetBucketEncryption": "s3:GetEncryptionConfiguration",
        "s3:GetPublicAccessBlock": "s3:GetBucketPublicAccessBlock",
        "s3control:GetPublicAccessBlock": "s3:GetAccountPublicAccessBlock",
    },
)

PUBLIC_ACCESS_FLAGS = (
    "BlockPublicAcls",
    "IgnorePublicAcls",
    "BlockPublicPolicy",
    "RestrictPublicBuckets",
)
PUBLIC_GRANTEES = {
    "http://acs.amazonaws.com/groups/global/AllUsers": "everyone",
    "http://acs.amazonaws.com/groups/global/AuthenticatedUsers": "any AWS account",
}

# --- get -----------------------------------------------------------------------------


def get_buckets(client: Any) -> Iterator[dict[str, Any]]:
    """All buckets, page by page. A page size makes AWS include ``BucketRegion``."""
    return paginate(client, "list_buckets", "Buckets", PaginationConfig={"PageSize": 1000})


def get_bucket_region(client: Any, name: str) -> str:
    constraint = client.get_bucket_location(Bucket=name).get("LocationConstraint")
    # Legacy answers: None/"" is us-east-1, "EU" is eu-west-1.
    return {None: "us-east-1", "": "us-east-1", "EU": "eu-west-1"}.get(constraint, constraint)


def get_encryption(client: Any, name: str) -> dict[str, Any]:
    return client.get_bucket_encryption(Bucket=name)["ServerSideEncryptionConfiguration"]


def get_public_access_block(client: Any, name: str) -> dict[str, Any]:
    return client.get_public_access_block(Bucket=name)["PublicAccessBlockConfiguration"]


def get_policy(client: Any, name: str) -> dict[str, Any]:
    return json.loads(client.get_bucket_policy(Bucket=name)["Policy"])


def get_policy_status(client: Any, name: str) -> dict[str, Any]:
    return client.get_bucket_policy_status(Bucket=name)["PolicyStatus"]


def get_acl(client: Any, name: str) -> dict[str, Any]:
    answer = client.get_bucket_acl(Bucket=name)
    return {"Owner": answer.get("Owner"), "Grants": answer.get("Grants", [])}


def get_versioning(client: Any, name: str) -> dict[str, Any]:
    answer = client.get_bucket_versioning(Bucket=name)
    return {k: answer[k] for k in ("Status", "MFADelete") if k in answer}


def get_logging(client: Any, name: str) -> dict[str, Any]:
    answer = client.get_bucket_logging(Bucket=name)
    return {"LoggingEnabled": answer["LoggingEnabled"]} if "LoggingEnabled" in answer else {}


# --- transform -----------------------------------------------------------------------


@dataclass(frozen=True)
class Unreadable:
    """A part a bulk inventory returned but that cannot be used (a malformed item):
    recorded under ``_errors`` like a failed read, never read as "not configured"."""

    reason: str


def _part(
    payload: dict[str, Any],
    errors: dict[str, str],
    key: str,
    call: Any,
    absent: tuple[str, ...] = (),
    known: Mapping[str, Any] | None = None,
) -> Any:
    # A part an inventory already holds is taken from it (and not read again); what
    # it lacks is read directly, so the payload is the same either way.
    if known is not None and key in known:
        value = known[key]
        if isinstance(value, Unreadable):
            errors[key] = value.reason
            return MISSING
    else:
        value = read_partial(errors, key, call, absent=absent)
    if value is not MISSING:
        payload[key] = value
    return value


def read_public_parts(
    client: Any, name: str, payload: dict[str, Any], errors: dict[str, str]
) -> None:
    """Policy status and ACL of a bucket into ``payload`` (errors into ``errors``)."""
    _part(payload, errors, "PolicyStatus", lambda: get_policy_status(client, name),
          ("NoSuchBucketPolicy",))
    _part(payload, errors, "Acl", lambda: get_acl(client, name))


def account_block(account: Account) -> tuple[Any, dict[str, str]]:
    """The account-level public access block (None: not configured), or MISSING + errors.

    S3 applies the account's and the bucket's settings together (a flag is on when it
    is on at either level), so each bucket's access evidence carries both.
    """
    errors: dict[str, str] = {}
    value = read_partial(errors, "AccountPublicAccessBlock", lambda: account.client(
        "s3control").get_public_access_block(AccountId=account.account_id)[
            "PublicAccessBlockConfiguration"], absent=("NoSuchPublicAccessBlockConfiguration",))
    return value, errors


def bucket_evidence(
    account: Account,
    bucket: Mapping[str, Any],
    account_level: tuple[Any, dict[str, str]],
    parts: Mapping[str, Any] | None = None,
) -> Iterator[Evidence]:
    """The bucket's three evidence items (see the module docstring).

    ``parts``: parts already read in bulk (:mod:`.configinventory`), by payload key
    (``ServerSideEncryptionConfiguration``, ``PublicAccessBlockConfiguration``,
    ``Policy``, ``Versioning``, ``Logging``), in the shape the direct read gives; the
    parts it lacks are read directly.
    """
    name = bucket["Name"]
    region_errors: dict[str, str] = {}
    region = bucket.get("BucketRegion")
    if not region:
        region = read_partial(
            region_errors, "Region", lambda: get_bucket_region(account.client("s3"), name)
        )
    known = None if region is MISSING else region
    where = known or UNKNOWN_REGION
    client = account.client("s3", known)
    common = {"Name": name, "Arn": f"arn:{account.partition}:s3:::{name}", "Region": known}

    level, level_errors = account_level
    blocks = {} if level is MISSING else {"AccountPublicAccessBlock": level}

    errors = {**region_errors, **level_errors}
    base: dict[str, Any] = {**common, **blocks, "CreationDate": bucket.get("CreationDate")}
    _part(base, errors, "ServerSideEncryptionConfiguration", lambda: get_encryption(
        client, name), ("ServerSideEncryptionConfigurationNotFoundError",), known=parts)
    block = _part(base, errors, "PublicAccessBlockConfiguration", lambda: get_public_access_block(
        client, name), ("NoSuchPublicAccessBlockConfiguration",), known=parts)
    yield account.evidence(BUCKET, name, where, with_errors(base, errors))

    errors = {**region_errors, **level_errors}
    access: dict[str, Any] = {**common, **blocks}
    if block is MISSING:
        errors["PublicAccessBlockConfiguration"] = base[ERRORS_KEY][
            "PublicAccessBlockConfiguration"]
    else:
        access["PublicAccessBlockConfiguration"] = block
    _part(access, errors, "Policy", lambda: get_policy(client, name), ("NoSuchBucketPolicy",),
          known=parts)
    read_public_parts(client, name, access, errors)
    yield account.evidence(BUCKET_ACCESS, name, where, with_errors(access, errors))

    errors = dict(region_errors)
    settings: dict[str, Any] = dict(common)
    _part(settings, errors, "Versioning", lambda: get_versioning(client, name), known=parts)
    _part(settings, errors, "Logging", lambda: get_logging(client, name), known=parts)
    yield account.evidence(BUCKET_SETTINGS, name, where, with_errors(settings, errors))


# --- read (one unit) -----------------------------------------------------------------


def read(account: Account, region: str = GLOBAL) -> Iterator[Evidence]:
    # The listing's first page is read before anything is yielded: a failure there
    # fails the unit with nothing stored.
    account_level: tuple[Any, dict[str, str]] | None = None
    for bucket in get_buckets(account.client("s3")):
        if account_level is None:
            account_level = account_block(account)
        yield from bucket_evidence(account, bucket, account_level)


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


def effective_block(payload: Mapping[str, Any], needed: tuple[str, ...]) -> dict[str, bool]:
    """The public access block S3 applies to the bucket: each flag on at either level.

    Raises :class:`EvidenceMissing` only when a flag in ``needed`` is off on the bucket
    and the account's setting could not be read.
    """
    bucket = require(payload, "PublicAccessBlockConfiguration") or {}
    flags = {f: bool(bucket.get(f)) for f in PUBLIC_ACCESS_FLAGS}
    if all(flags[f] for f in needed):
        return flags
    level = require(payload, "AccountPublicAccessBlock") or {}
    return {f: flags[f] or bool(level.get(f)) for f in PUBLIC_ACCESS_FLAGS}


_ALGORITHMS = {"AES256": "SSE-S3", "aws:kms": "SSE-KMS", "aws:kms:dsse": "DSSE-KMS"}


@check("aws.s3.bucket_default_encryption")
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


@check("aws.s3.bucket_public_access_block")
def bucket_public_access_block(payload: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    bucket = require(payload, "PublicAccessBlockConfiguration")
    flags = effective_block(payload, PUBLIC_ACCESS_FLAGS)
    off = [f for f in PUBLIC_ACCESS_FLAGS if not flags[f]]
    if off:
        if bucket is None and not payload.get("AccountPublicAccessBlock"):
            return failed("No public access block is configured on the bucket or the account")
        return failed("Public access block (bucket and account together) leaves off: "
                      + ", ".join(off))
    bucket_off = [f for f in PUBLIC_ACCESS_FLAGS if not (bucket or {}).get(f)]
    if bucket_off:
        return passed("All four public access block settings are on, "
                      f"{', '.join(bucket_off)} at the account level")
    return passed("All four public access block settings are on for the bucket")


# --- checks on aws.s3.bucket_access and aws.s3.bucket_settings -------------------------


@check("aws.s3.bucket_not_public")
def bucket_not_public(payload: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    return public_bucket_verdict(payload, "Bucket")


def public_bucket_verdict(payload: Mapping[str, Any], what: str) -> Verdict:
    """Shared with the CloudTrail check on a trail's bucket."""
    acl = require(payload, "Acl")
    status = require(payload, "PolicyStatus")
    reasons = []
    grants = [
        f"{g.get('Permission')} to {PUBLIC_GRANTEES[uri]}"
        for g in acl.get("Grants") or []
        if (uri := (g.get("Grantee") or {}).get("URI")) in PUBLIC_GRANTEES
    ]
    public_policy = bool(status and status.get("IsPublic"))
    block: Mapping[str, bool] = {}
    if grants or public_policy:  # only then does the block (bucket or account) matter
        block = effective_block(payload, ("IgnorePublicAcls", "RestrictPublicBuckets"))
    if grants and not block.get("IgnorePublicAcls"):
        reasons.append("the ACL grants " + ", ".join(grants))
    if public_policy and not block.get("RestrictPublicBuckets"):
        reasons.append("the bucket policy is public")
    if reasons:
        return failed(f"{what} is public: " + "; ".join(reasons))
    neutralised = " (public grants are neutralised by the public access block)" if (
        grants or (status or {}).get("IsPublic")) else ""
    return passed(f"{what}: neither the bucket policy nor the ACL grants public access"
                  + neutralised)


def _lower_keys(mapping: Any) -> dict[str, Any]:
    return {str(k).lower(): v for k, v in mapping.items()} if isinstance(mapping, Mapping) else {}


def denies_insecure_transport(statement: Mapping[str, Any], bucket_arn: str = "") -> bool:
    """A ``Deny`` of all S3 actions on the bucket's objects, to everyone, when
    ``aws:SecureTransport`` is false.

    The principal may be ``"*"`` or ``{"AWS": "*"}`` (or a list holding ``"*"``); the
    condition ``Bool`` or ``BoolIfExists`` (the key is present on every S3 request).
    The statement must cover the objects (``<bucket>/*``, ``*`` or a wildcard matching
    them): a Deny on the bucket ARN alone leaves every object readable over HTTP.
    """
    if statement.get("Effect") != "Deny":
        return False
    principal = statement.get("Principal")
    if not (principal == "*" or "*" in as_list(_lower_keys(principal).get("aws"))):
        return False
    if not {"*", "s3:*"} & set(as_list(statement.get("Action"))):
        return False
    if bucket_arn and not any(
        fnmatch.fnmatchcase(f"{bucket_arn}/any-object-key", str(r))
        for r in as_list(statement.get("Resource"))
    ):
        return False
    condition = _lower_keys(statement.get("Condition"))
    secure = [
        *as_list(_lower_keys(condition.get("bool")).get("aws:securetransport")),
        *as_list(_lower_keys(condition.get("boolifexists")).get("aws:securetransport")),
    ]
    return any(str(v).lower() == "false" for v in secure)


@check("aws.s3.bucket_tls_only")
def bucket_tls_only(payload: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    policy = require(payload, "Policy")
    if policy is None:
        return failed("Bucket has no policy, so plain-HTTP requests are not denied")
    arn = str(payload.get("Arn") or f"arn:aws:s3:::{payload.get('Name', '')}")
    if any(denies_insecure_transport(s, arn) for s in as_list(policy.get("Statement"))
           if isinstance(s, Mapping)):
        return passed("Bucket policy denies requests without TLS (aws:SecureTransport)")
    return failed("Bucket policy does not deny requests made without TLS")


@check("aws.s3.bucket_versioning")
def bucket_versioning(payload: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    status = require(payload, "Versioning").get("Status")
    if status == "Enabled":
        return passed("Versioning is enabled")
    if status == "Suspended":
        return failed("Versioning is suspended")
    return failed("Versioning has never been enabled")


@check("aws.s3.bucket_access_logging")
def bucket_access_logging(payload: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    logging = require(payload, "Logging").get("LoggingEnabled")
    if logging:
        return passed(f"Access logs go to bucket {logging.get('TargetBucket')}")
    return failed("Server access logging is disabled")

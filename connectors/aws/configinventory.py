"""Bulk inventory mode: AWS Config advanced queries over an aggregator.

With ``inventory = "config_aggregator"`` the connector asks the configuration
aggregator ``config_aggregator_name`` (in ``config_aggregator_region``, default the
caller's home region) once, before any unit runs, for every S3 bucket it records in
every source account and region::

    SELECT accountId, awsRegion, resourceId, resourceName, configurationItemCaptureTime,
           supplementaryConfiguration WHERE resourceType = 'AWS::S3::Bucket'

(``config:SelectAggregateResourceConfig``, ``Limit=100`` — the API's maximum — and
``NextToken`` followed to the end; a page of 100 without a token is an incomplete
listing and fails the whole inventory). Each ``Results`` entry is a JSON document of
the selected fields (botocore's service model: ``Results`` is a list of strings,
``QueryInfo.SelectFields`` names them).

What the inventory replaces, for every bucket it holds (``s3`` unit of each account):

* ``GetBucketEncryption``, ``GetPublicAccessBlock``, ``GetBucketPolicy``,
  ``GetBucketVersioning``, ``GetBucketLogging`` (and ``GetBucketLocation`` when the
  listing has no ``BucketRegion``: the item's ``awsRegion``): from the configuration
  item's supplementary configuration ``ServerSideEncryptionConfiguration``,
  ``PublicAccessBlockConfiguration``, ``BucketPolicy``,
  ``BucketVersioningConfiguration``, ``BucketLoggingConfiguration``, converted to the
  exact shape the S3 API returns and handed to :func:`.s3.bucket_evidence` — the same
  code builds the payloads, so checks and content hashes are the same either way.

What is still read directly:

* ``ListBuckets`` (one call per 1,000 buckets per account) stays the authority on which
  buckets exist: a bucket the aggregator does not hold (account or region not a source,
  not recorded, recorded late) is read entirely directly — never judged by absence.
* ``GetBucketPolicyStatus`` (AWS Config has no such field) and ``GetBucketAcl`` (the
  item's ``AccessControlList`` names grantees and permissions in its own lossy
  vocabulary), and the account-level public access block.
* A supplementary key the item lacks is read directly: absence in an item is not
  "not configured".

A malformed ``Results`` entry that names its bucket (account id + name) makes the parts
it should have given *errors* of that bucket (``_errors``: "AWS Config item is
malformed: …"), so the checks needing them are ``error``, not a pass; an entry that
names no bucket cannot be attributed and is skipped (logged) — that bucket is then read
directly. Two entries for one bucket make its parts errors too.

The inventory is all-or-nothing: when the query fails (no such aggregator, access
denied, a page failing midway) it is logged and every unit reads directly.

Freshness: an item's ``configurationItemCaptureTime`` is when AWS Config recorded its
last *change* (it records on change), old for every unchanged bucket, so it is not what
the aggregator vouches for. After the query, one paged
``DescribeConfigurationAggregatorSourcesStatus`` (``config:Describe…SourcesStatus``,
``Limit=100``) gives each source's ``LastUpdateTime``: when the aggregator last synced
that account and region. Every evidence of a bucket taken from the inventory carries
``source_updated_at`` = that time for the item's (account, ``awsRegion``). A source
``FAILED`` or ``OUTDATED`` keeps its old time (its evidence goes stale honestly; the
connector logs a warning naming it). An item whose source has no entry, or no time, is
read directly — no vouched time, no bulk data. Organisation aggregators report
``SourceType = ORGANIZATION``: an entry whose ``SourceId`` is an account id dates that
account; one naming the organisation (not an account id) dates every account of its
region. When the status call fails, the inventory fails as a whole (every unit reads
directly): bulk data of unknown age must not look fresh.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from functools import partial
from typing import Any

import structlog

from connectors.aws import s3
from connectors.aws.common import AWS_ERRORS, describe_error, pages
from connectors.aws.session import Account
from connectors.aws.units import ReaderSpec
from connectors.kit import GLOBAL
from core.records import Evidence
from core.times import parse_time

log = structlog.get_logger("annexa.connectors.aws")

MODE = "config_aggregator"
OPERATION = "select_aggregate_resource_config"
ACTION = "config:SelectAggregateResourceConfig"
STATUS_OPERATION = "describe_configuration_aggregator_sources_status"
STATUS_ACTION = "config:DescribeConfigurationAggregatorSourcesStatus"
#: LastUpdateStatus values meaning the source's data is not current.
UNHEALTHY = frozenset({"FAILED", "OUTDATED"})
PAGE_SIZE = 100  # the documented maximum of Limit
S3_TYPE = "AWS::S3::Bucket"
S3_QUERY = (
    "SELECT accountId, awsRegion, resourceId, resourceName, configurationItemCaptureTime, "
    f"supplementaryConfiguration WHERE resourceType = '{S3_TYPE}'"
)
#: The services whose units the inventory replaces.
SERVICES = frozenset({s3.SERVICE})

_ACCOUNT = re.compile(r"^\d{12}$")
_BUCKET = re.compile(r"^[A-Za-z0-9._-]{1,255}$")  # legacy us-east-1 names included
_MALFORMED = "AWS Config item is malformed: "


class Malformed(ValueError):
    """A configuration item part in a shape the published API does not give."""


@dataclass(frozen=True)
class BucketItem:
    """One bucket's configuration item: the parts converted to S3 API shapes."""

    account: str
    name: str
    region: str | None
    captured: datetime | None
    parts: dict[str, Any]  # payload key → value, or s3.Unreadable


@dataclass(frozen=True)
class SourceStatus:
    """One ``AggregatedSourceStatus``: a source account (or organisation) in a region."""

    source_id: str
    source_type: str | None
    region: str
    status: str | None
    updated: datetime | None  # LastUpdateTime: when the aggregator last synced it
    error_code: str | None


@dataclass
class Inventory:
    """What the aggregator returned (empty with ``error`` set when it failed)."""

    aggregator: str
    region: str
    buckets: dict[tuple[str, str], BucketItem] = field(default_factory=dict)
    calls: int = 0
    unattributed: int = 0  # entries naming no bucket (skipped)
    error: str | None = None
    #: (source id, region) → status; source id an account id or the organisation's.
    sources: dict[tuple[str, str], SourceStatus] = field(default_factory=dict)
    status_calls: int = 0

    def bucket(self, account: str, name: str) -> BucketItem | None:
        return self.buckets.get((account, name))

    def source(self, account: str, region: str | None) -> SourceStatus | None:
        """The status dating ``account`` in ``region``: its own entry, else an
        organisation-wide entry of that region (a ``SourceId`` not an account id)."""
        if region is None:
            return None
        own = self.sources.get((account, region))
        if own is not None:
            return own
        return next((s for (sid, r), s in sorted(self.sources.items())
                     if r == region and s.source_type == "ORGANIZATION"
                     and not _ACCOUNT.match(sid)), None)

    def as_of(self, item: BucketItem) -> datetime | None:
        """The time the aggregator vouches for ``item`` (None: not covered)."""
        found = self.source(item.account, item.region)
        return found.updated if found is not None else None

    def unhealthy(self) -> list[SourceStatus]:
        """Sources whose last sync failed or is outdated (their data is old)."""
        return [s for _k, s in sorted(self.sources.items()) if s.status in UNHEALTHY]


# --- get -----------------------------------------------------------------------------


def select_pages(account: Account, aggregator: str, region: str, expression: str
                 ) -> Iterator[dict[str, Any]]:
    """Every page of one advanced query over ``aggregator`` (one call each)."""
    client = account.client("config", region)
    return pages(client, OPERATION, ("Results",), Expression=expression,
                 ConfigurationAggregatorName=aggregator,
                 PaginationConfig={"PageSize": PAGE_SIZE})


def load(account: Account, aggregator: str, region: str) -> Inventory:
    """Query the aggregator for every S3 bucket; on any AWS error the inventory is
    empty with ``error`` set (the caller reads directly)."""
    inv = Inventory(aggregator, region)
    items: dict[tuple[str, str], BucketItem] = {}
    duplicates: set[tuple[str, str]] = set()
    try:
        for page in select_pages(account, aggregator, region, S3_QUERY):
            inv.calls += 1
            for entry in page.get("Results") or []:
                item = parse_bucket(entry)
                if item is None:
                    inv.unattributed += 1
                    continue
                key = (item.account, item.name)
                if key in items:
                    duplicates.add(key)
                items[key] = item
        inv.sources = load_sources(inv, account, aggregator, region)
    except AWS_ERRORS as exc:
        inv.error = describe_error(exc)
        inv.sources = {}
        return inv
    for key in duplicates:
        reason = s3.Unreadable(_MALFORMED + "two configuration items for one bucket")
        items[key] = replace(items[key], parts={k: reason for k in PARTS})
    inv.buckets = items
    return inv


def parse_source(entry: Any) -> SourceStatus | None:
    """One ``AggregatedSourceStatus`` entry; None when it names no source or region."""
    if not isinstance(entry, dict):
        return None
    source, region = entry.get("SourceId"), entry.get("AwsRegion")
    if not (isinstance(source, str) and source and isinstance(region, str) and region):
        return None

    def text(key: str) -> str | None:
        value = entry.get(key)
        return value if isinstance(value, str) else None

    return SourceStatus(source, text("SourceType"), region, text("LastUpdateStatus"),
                        _time(entry.get("LastUpdateTime")), text("LastErrorCode"))


def load_sources(inv: Inventory, account: Account, aggregator: str, region: str
                 ) -> dict[tuple[str, str], SourceStatus]:
    """Every source's sync status (raises the AWS error when the call fails)."""
    client = account.client("config", region)
    out: dict[tuple[str, str], SourceStatus] = {}
    for page in pages(client, STATUS_OPERATION, ("AggregatedSourceStatusList",),
                      ConfigurationAggregatorName=aggregator,
                      PaginationConfig={"PageSize": PAGE_SIZE}):
        inv.status_calls += 1
        for entry in page.get("AggregatedSourceStatusList") or []:
            status = parse_source(entry)
            if status is None:
                continue  # undatable: its items are read directly
            key = (status.source_id, status.region)
            old = out.get(key)
            # Two entries for one source: the older time is the one both vouch for.
            if old is None or (old.updated is not None and (
                    status.updated is None or status.updated < old.updated)):
                out[key] = status
    return out


# --- transform (AWS Config item → the S3 API's shapes) ---------------------------------


def _decoded(value: Any) -> Any:
    """AWS Config JSON values sometimes arrive JSON-encoded (once or twice)."""
    for _ in range(3):
        if not isinstance(value, str):
            return value
        try:
            value = json.loads(value)
        except ValueError as exc:
            raise Malformed("not JSON") from exc
    return value


def _object(value: Any, what: str) -> dict[str, Any]:
    value = _decoded(value)
    if not isinstance(value, dict):
        raise Malformed(f"{what} is not an object")
    return value


def _optional(value: Any, types: type | tuple[type, ...], what: str) -> Any:
    if value is not None and not isinstance(value, types):
        raise Malformed(f"{what} has the wrong type")
    return value


_BLOCK_FLAGS = {"blockPublicAcls": "BlockPublicAcls", "ignorePublicAcls": "IgnorePublicAcls",
                "blockPublicPolicy": "BlockPublicPolicy",
                "restrictPublicBuckets": "RestrictPublicBuckets"}


def public_access_block(value: Any) -> dict[str, bool]:
    """``{"blockPublicAcls": true, …}`` → ``GetPublicAccessBlock``'s configuration."""
    block = _object(value, "PublicAccessBlockConfiguration")
    out = {}
    for camel, api in _BLOCK_FLAGS.items():
        flag = block.get(camel)
        if not isinstance(flag, bool):
            raise Malformed(f"PublicAccessBlockConfiguration.{camel} is not a boolean")
        out[api] = flag
    return out


def encryption(value: Any) -> dict[str, Any]:
    """``{"rules": [{"applyServerSideEncryptionByDefault": {"sseAlgorithm",
    "kmsMasterKeyID"}, "bucketKeyEnabled"}]}`` → ``GetBucketEncryption``'s
    ``ServerSideEncryptionConfiguration``."""
    config = _object(value, "ServerSideEncryptionConfiguration")
    rules = config.get("rules")
    if not isinstance(rules, list):
        raise Malformed("ServerSideEncryptionConfiguration.rules is not a list")
    out = []
    for rule in rules:
        if not isinstance(rule, dict):
            raise Malformed("ServerSideEncryptionConfiguration rule is not an object")
        converted: dict[str, Any] = {}
        default = _optional(rule.get("applyServerSideEncryptionByDefault"), dict,
                            "applyServerSideEncryptionByDefault")
        if default is not None:
            algorithm = default.get("sseAlgorithm")
            if not isinstance(algorithm, str):
                raise Malformed("sseAlgorithm is not a string")
            applied = {"SSEAlgorithm": algorithm}
            key = _optional(default.get("kmsMasterKeyID"), str, "kmsMasterKeyID")
            if key is not None:
                applied["KMSMasterKeyID"] = key
            converted["ApplyServerSideEncryptionByDefault"] = applied
        bucket_key = _optional(rule.get("bucketKeyEnabled"), bool, "bucketKeyEnabled")
        if bucket_key is not None:
            converted["BucketKeyEnabled"] = bucket_key
        out.append(converted)
    return {"Rules": out}


_VERSIONING = {"Off": None, "Enabled": "Enabled", "Suspended": "Suspended"}


def versioning(value: Any) -> dict[str, Any]:
    """``{"status": "Off"|"Enabled"|"Suspended", "isMfaDeleteEnabled": bool|null}`` →
    :func:`.s3.get_versioning` (``Off`` = never enabled: the API answers no status)."""
    config = _object(value, "BucketVersioningConfiguration")
    status = config.get("status")
    if status not in _VERSIONING:
        raise Malformed("BucketVersioningConfiguration.status is not Off/Enabled/Suspended")
    out: dict[str, Any] = {}
    if _VERSIONING[status] is not None:
        out["Status"] = _VERSIONING[status]
    mfa = _optional(config.get("isMfaDeleteEnabled"), bool, "isMfaDeleteEnabled")
    if mfa is not None:
        out["MFADelete"] = "Enabled" if mfa else "Disabled"
    return out


def logging(value: Any) -> dict[str, Any]:
    """``{"destinationBucketName", "logFilePrefix"}`` → :func:`.s3.get_logging`."""
    config = _object(value, "BucketLoggingConfiguration")
    target = _optional(config.get("destinationBucketName"), str, "destinationBucketName")
    prefix = _optional(config.get("logFilePrefix"), str, "logFilePrefix")
    if not target:
        return {}
    return {"LoggingEnabled": {"TargetBucket": target, "TargetPrefix": prefix or ""}}


def policy(value: Any) -> dict[str, Any] | None:
    """``{"policyText": "<policy JSON>" | null}`` → :func:`.s3.get_policy` (None: none)."""
    config = _object(value, "BucketPolicy")
    text = _optional(config.get("policyText"), str, "BucketPolicy.policyText")
    if text is None:
        return None
    document = _decoded(text)
    if not isinstance(document, dict):
        raise Malformed("BucketPolicy.policyText is not a policy document")
    return document


#: S3 payload key → (supplementary configuration key, converter).
PARTS: dict[str, tuple[str, Any]] = {
    "ServerSideEncryptionConfiguration": ("ServerSideEncryptionConfiguration", encryption),
    "PublicAccessBlockConfiguration": ("PublicAccessBlockConfiguration", public_access_block),
    "Policy": ("BucketPolicy", policy),
    "Versioning": ("BucketVersioningConfiguration", versioning),
    "Logging": ("BucketLoggingConfiguration", logging),
}


def _time(value: Any) -> datetime | None:
    try:
        return parse_time(value) if value else None
    except (ValueError, TypeError):
        return None


def parse_bucket(entry: Any) -> BucketItem | None:
    """One ``Results`` entry; None when it names no bucket (account id and name)."""
    try:
        doc = _decoded(entry)
    except Malformed:
        return None
    if not isinstance(doc, dict):
        return None
    account, name = doc.get("accountId"), doc.get("resourceName") or doc.get("resourceId")
    if not (isinstance(account, str) and _ACCOUNT.match(account)
            and isinstance(name, str) and _BUCKET.match(name)):
        return None
    region = doc.get("awsRegion")
    parts: dict[str, Any] = {}
    try:
        supplementary = _object(doc.get("supplementaryConfiguration") or {},
                                "supplementaryConfiguration")
    except Malformed as exc:
        reason = s3.Unreadable(_MALFORMED + str(exc))
        parts = {key: reason for key in PARTS}
    else:
        for key, (source, convert) in PARTS.items():
            if source not in supplementary:
                continue  # not in the item: read directly
            try:
                parts[key] = convert(supplementary[source])
            except Malformed as exc:
                parts[key] = s3.Unreadable(_MALFORMED + f"{source}: {exc}")
    return BucketItem(account, name, region if isinstance(region, str) else None,
                      _time(doc.get("configurationItemCaptureTime")), parts)


# --- read (the s3 unit, in bulk mode) ---------------------------------------------------


def read_s3(inv: Inventory, account: Account, region: str = GLOBAL) -> Iterator[Evidence]:
    """:func:`.s3.read`, with each bucket's parts taken from the inventory."""
    account_level: tuple[Any, dict[str, str]] | None = None
    direct = 0
    for bucket in s3.get_buckets(account.client("s3")):
        if account_level is None:
            account_level = s3.account_block(account)
        item = inv.bucket(account.account_id, bucket["Name"])
        as_of = inv.as_of(item) if item is not None else None
        if item is None or as_of is None:  # not in the inventory, or not dated by it
            direct += 1
            yield from s3.bucket_evidence(account, bucket, account_level)
            continue
        if not bucket.get("BucketRegion") and item.region:
            bucket = {**bucket, "BucketRegion": item.region}
        for ev in s3.bucket_evidence(account, bucket, account_level, item.parts):
            yield replace(ev, source_updated_at=as_of)
    if direct:
        log.info("aws buckets not in (or not dated by) the config aggregator, read "
                 "directly",
                 account=account.account_id, buckets=direct, aggregator=inv.aggregator)


def readers(specs: Sequence[ReaderSpec], inv: Inventory) -> tuple[ReaderSpec, ...]:
    """``specs`` with the S3 reader replaced by the bulk one."""
    return tuple(
        ReaderSpec(r.service, partial(read_s3, inv), r.regional, r.needs_regions)
        if r.service == s3.SERVICE else r for r in specs)


# --- probe (annexa config check --connect) ----------------------------------------------


def probe(account: Account, aggregator: str, region: str) -> tuple[bool, str]:
    """Whether the aggregator answers an advanced query (one call, one result)."""
    client = account.client("config", region)
    try:
        answer = client.select_aggregate_resource_config(
            Expression=f"SELECT resourceId WHERE resourceType = '{S3_TYPE}'",
            ConfigurationAggregatorName=aggregator, Limit=1)
    except AWS_ERRORS as exc:
        return False, f"aggregator {aggregator} in {region} unavailable: {describe_error(exc)}"
    found = "results" if answer.get("Results") else "no S3 bucket recorded yet"
    return True, f"aggregator {aggregator} in {region} answers ({found})"


def probe_status(account: Account, aggregator: str, region: str) -> tuple[bool, str]:
    """Whether the aggregator reports its sources' sync status (one call, one entry):
    without it the inventory cannot be dated and is not used."""
    client = account.client("config", region)
    try:
        answer = client.describe_configuration_aggregator_sources_status(
            ConfigurationAggregatorName=aggregator, Limit=1)
    except AWS_ERRORS as exc:
        return False, (f"aggregator {aggregator} in {region} source status unavailable: "
                       f"{describe_error(exc)}")
    found = "sources" if answer.get("AggregatedSourceStatusList") else "no source yet"
    return True, f"aggregator {aggregator} in {region} reports its sync status ({found})"

"""CloudTrail: trails, their status and event selectors, with checks.

One global unit per account (service ``cloudtrail``) that reads every region:

* ``DescribeTrails(includeShadowTrails=True)`` in the home region sees every
  multi-region and organisation trail that applies to the account. It becomes one
  aggregate ``aws.cloudtrail.trails`` evidence (id = account id, region ``global``,
  ``{"trailList": [...]}``) so "a multi-region trail is logging" is a pure check on
  one payload.
* ``DescribeTrails(includeShadowTrails=False)`` in each region lists the trails *homed*
  there: one ``aws.cloudtrail.trail`` evidence each (id = trail ARN, region = home
  region).

All listings are read before anything is yielded: if one fails, the unit fails.
Each trail carries ``Status`` (``GetTrailStatus`` without the delivery timestamps that
change every few minutes) and its event selectors, read once per trail in its home
region; a failure to read either is recorded under the trail's ``_errors``.

Each trail homed in the account also carries ``S3BucketAccess``: whether its log bucket
is one of the account's own buckets (``ListBuckets``) and, if so, the bucket's and the
account's public access block, policy status and ACL, its Object Lock configuration
(null: none) and lifecycle rules ([]: none) — so "the trail's bucket is not public",
"… is immutable" and "… deletes old logs" are pure checks on the trail. A bucket in
another account (a central log archive) is judged by that account's own S3 checks.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from connectors.aws import s3
from connectors.aws.common import MISSING, actions, read_partial
from connectors.aws.session import Account
from connectors.aws.units import ReaderSpec
from connectors.kit import ERRORS_KEY, GLOBAL, EvidenceMissing, require, with_errors
from core.checks import Verdict, check, failed, not_applicable, passed
from core.records import Evidence

SERVICE = "cloudtrail"
TRAILS = "aws.cloudtrail.trails"
TRAIL = "aws.cloudtrail.trail"

ACTIONS = actions(
    "cloudtrail:DescribeTrails", "cloudtrail:GetTrailStatus", "cloudtrail:GetEventSelectors",
    renamed={
        "s3control:GetPublicAccessBlock": "s3:GetAccountPublicAccessBlock",
        "s3:GetObjectLockConfiguration": "s3:GetBucketObjectLockConfiguration",
        "s3:GetBucketLifecycleConfiguration": "s3:GetLifecycleConfiguration",
    },
)

#: Status fields that describe configuration or lasting faults; the ``Latest*Time`` /
#: ``*Attempt*`` fields move with every delivery and are dropped.
STATUS_FIELDS = (
    "IsLogging",
    "StartLoggingTime",
    "StopLoggingTime",
    "LatestDeliveryError",
    "LatestDigestDeliveryError",
    "LatestNotificationError",
    "LatestCloudWatchLogsDeliveryError",
)

# --- get -----------------------------------------------------------------------------


def get_trails(client: Any, *, include_shadow: bool) -> list[dict[str, Any]]:
    return client.describe_trails(includeShadowTrails=include_shadow).get("trailList", [])


def get_trail_status(client: Any, trail_arn: str) -> dict[str, Any]:
    return client.get_trail_status(Name=trail_arn)


def get_event_selectors(client: Any, trail_arn: str) -> dict[str, Any]:
    return client.get_event_selectors(TrailName=trail_arn)


# --- transform -----------------------------------------------------------------------


def transform_status(status: Mapping[str, Any]) -> dict[str, Any]:
    return {k: status[k] for k in STATUS_FIELDS if status.get(k) not in (None, "")}


def trail_details(account: Account, trail: Mapping[str, Any]) -> dict[str, Any]:
    """The trail with ``Status`` and event selectors, read in its home region."""
    arn = trail["TrailARN"]
    client = account.client("cloudtrail", trail.get("HomeRegion"))
    errors: dict[str, str] = {}
    out = dict(trail)
    status = read_partial(errors, "Status", lambda: get_trail_status(client, arn))
    if status is not MISSING:
        out["Status"] = transform_status(status)
    selectors = read_partial(errors, "EventSelectors", lambda: get_event_selectors(client, arn))
    if selectors is not MISSING:
        out["EventSelectors"] = selectors.get("EventSelectors", [])
        if "AdvancedEventSelectors" in selectors:
            out["AdvancedEventSelectors"] = selectors["AdvancedEventSelectors"]
    return with_errors(out, errors)


class OwnBuckets:
    """The account's bucket names, listed once per unit and only if a trail needs them."""

    def __init__(self, account: Account) -> None:
        self._account = account
        self._names: set[str] | None = None
        self._error: str | None = None
        self._level: tuple[Any, dict[str, str]] | None = None

    def account_block(self) -> tuple[Any, dict[str, str]]:
        """The account-level public access block (see :func:`s3.account_block`), once."""
        if self._level is None:
            self._level = s3.account_block(self._account)
        return self._level

    def contains(self, name: str, errors: dict[str, str]) -> bool | None:
        if self._names is None and self._error is None:
            names = read_partial(
                errors, "S3BucketAccess",
                lambda: {b["Name"] for b in s3.get_buckets(self._account.client("s3"))},
            )
            if names is MISSING:
                self._error = errors["S3BucketAccess"]
            else:
                self._names = names
        if self._error is not None:
            errors["S3BucketAccess"] = self._error
            return None
        assert self._names is not None
        return name in self._names


def bucket_access(account: Account, bucket: str, own: OwnBuckets) -> dict[str, Any]:
    """Public-access facts of the trail's bucket (``{"InAccount": false}`` if foreign)."""
    errors: dict[str, str] = {}
    in_account = own.contains(bucket, errors)
    if in_account is None:
        return with_errors({"Name": bucket}, errors)
    out: dict[str, Any] = {"Name": bucket, "InAccount": in_account}
    if not in_account:
        return out
    client = account.client("s3")
    block = read_partial(errors, "PublicAccessBlockConfiguration",
                         lambda: s3.get_public_access_block(client, bucket),
                         absent=("NoSuchPublicAccessBlockConfiguration",))
    if block is not MISSING:
        out["PublicAccessBlockConfiguration"] = block
    level, level_errors = own.account_block()
    if level is not MISSING:
        out["AccountPublicAccessBlock"] = level
    errors.update(level_errors)
    s3.read_public_parts(client, bucket, out, errors)
    lock = read_partial(
        errors, "ObjectLockConfiguration",
        lambda: client.get_object_lock_configuration(Bucket=bucket)["ObjectLockConfiguration"],
        absent=("ObjectLockConfigurationNotFoundError",))
    if lock is not MISSING:
        out["ObjectLockConfiguration"] = lock
    rules = read_partial(
        errors, "LifecycleRules",
        lambda: client.get_bucket_lifecycle_configuration(Bucket=bucket).get("Rules", []),
        absent=("NoSuchLifecycleConfiguration",))
    if rules is not MISSING:
        out["LifecycleRules"] = rules or []
    return with_errors(out, errors)


# --- read (one unit) -----------------------------------------------------------------


def read(account: Account, region: str = GLOBAL, *, regions: Sequence[str]) -> Iterator[Evidence]:
    visible = get_trails(account.client("cloudtrail"), include_shadow=True)
    homed = {
        r: get_trails(account.client("cloudtrail", r), include_shadow=False) for r in regions
    }
    own = OwnBuckets(account)
    details: dict[str, dict[str, Any]] = {}

    def detailed(trail: Mapping[str, Any]) -> dict[str, Any]:
        arn = trail["TrailARN"]
        if arn not in details:
            details[arn] = trail_details(account, trail)
        return details[arn]

    trail_list = [detailed(t) for t in visible]
    yield account.evidence(TRAILS, account.account_id, GLOBAL, {"trailList": trail_list})
    for home, trails in homed.items():
        for trail in trails:
            payload = dict(detailed(trail))
            if trail.get("S3BucketName"):
                payload["S3BucketAccess"] = bucket_access(account, trail["S3BucketName"], own)
            yield account.evidence(TRAIL, trail["TrailARN"], home, payload)


READERS = (ReaderSpec(SERVICE, read, regional=False, needs_regions=True),)


# --- checks --------------------------------------------------------------------------


def records_all_management_events(trail: Mapping[str, Any]) -> bool | None:
    """True if the trail records read and write management events; None if unknown."""
    if trail.get("HasCustomEventSelectors") is False:
        return True  # the default selector: all management events, read and write
    if "EventSelectors" not in trail and "AdvancedEventSelectors" not in trail:
        return None
    for selector in trail.get("EventSelectors") or []:
        if selector.get("IncludeManagementEvents") and selector.get("ReadWriteType") == "All":
            return True
    for selector in trail.get("AdvancedEventSelectors") or []:
        fields = {f.get("Field"): f for f in selector.get("FieldSelectors", [])}
        category = fields.get("eventCategory", {})
        if category.get("Equals") == ["Management"] and "readOnly" not in fields:
            return True
    return False


def _name(trail: Mapping[str, Any]) -> str:
    return str(trail.get("Name") or trail.get("TrailARN") or "?")


@check("aws.cloudtrail.multi_region_logging")
def multi_region_logging(payload: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    trails = require(payload, "trailList")
    multi = [t for t in trails if t.get("IsMultiRegionTrail")]
    if not multi:
        return failed("No multi-region trail exists")
    unknown: list[str] = []
    reasons: list[str] = []
    for trail in multi:
        status = trail.get("Status")
        if status is None:
            unknown.append(f"{_name(trail)} status ({_error(trail, 'Status')})")
            continue
        if not status.get("IsLogging"):
            reasons.append(f"{_name(trail)} is not logging")
            continue
        if params["require_management_events"]:
            management = records_all_management_events(trail)
            if management is None:
                unknown.append(f"{_name(trail)} event selectors "
                               f"({_error(trail, 'EventSelectors')})")
                continue
            if not management:
                reasons.append(f"{_name(trail)} does not record all management events")
                continue
        return passed(f"Multi-region trail {_name(trail)} is logging")
    if unknown:
        raise EvidenceMissing("could not read " + "; ".join(unknown))
    return failed("No multi-region trail is logging: " + "; ".join(reasons))


def _error(trail: Mapping[str, Any], key: str) -> str:
    return str((trail.get(ERRORS_KEY) or {}).get(key, "missing"))


@check("aws.cloudtrail.log_file_validation")
def log_file_validation(payload: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    if require(payload, "LogFileValidationEnabled"):
        return passed("Log file validation is enabled")
    return failed("Log file validation is disabled")


@check("aws.cloudtrail.kms_encryption")
def kms_encryption(payload: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    key = payload.get("KmsKeyId")
    if key:
        return passed(f"Log files are encrypted with KMS key {key}")
    return failed("Log files are encrypted only with S3-managed keys (no KmsKeyId)")


@check("aws.cloudtrail.cloudwatch_delivery")
def cloudwatch_delivery(payload: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    group = payload.get("CloudWatchLogsLogGroupArn")
    if not group:
        return failed("The trail does not deliver to CloudWatch Logs")
    error = (payload.get("Status") or {}).get("LatestCloudWatchLogsDeliveryError")
    if error:
        return failed(f"Delivery to {group} fails: {error}")
    return passed(f"The trail delivers to {group}")


@check("aws.cloudtrail.bucket_not_public")
def bucket_not_public(payload: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    access = require(payload, "S3BucketAccess")
    if "InAccount" not in access:
        require(access, "InAccount", label="S3BucketAccess")
    name = access.get("Name", "?")
    if not access["InAccount"]:
        return not_applicable(f"Log bucket {name} belongs to another account; its own S3 "
                              "checks judge it")
    return s3.public_bucket_verdict(access, f"Log bucket {name}")


def _bucket_facts(payload: Mapping[str, Any]) -> Mapping[str, Any]:
    access = require(payload, "S3BucketAccess")
    if "InAccount" not in access:
        require(access, "InAccount", label="S3BucketAccess")
    return access


@check("aws.cloudtrail.logs_immutable")
def logs_immutable(payload: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    access = _bucket_facts(payload)
    name = access.get("Name", "?")
    if not access["InAccount"]:
        if params["accept_other_account_bucket"]:
            return passed(f"Logs go to bucket {name} of another account (a log archive)")
        return failed(f"Logs go to bucket {name} of another account, which is not accepted "
                      "as immutable storage (accept_other_account_bucket = false)")
    lock = require(access, "ObjectLockConfiguration")
    if not lock or lock.get("ObjectLockEnabled") != "Enabled":
        return failed(f"Log bucket {name} has no Object Lock")
    retention = (lock.get("Rule") or {}).get("DefaultRetention") or {}
    mode = retention.get("Mode")
    period = (f"{retention['Days']} days" if retention.get("Days")
              else f"{retention['Years']} years" if retention.get("Years") else None)
    if not mode or not period:
        return failed(f"Log bucket {name} has Object Lock but no default retention, so "
                      "delivered log files are not locked")
    if params["require_compliance_mode"] and mode != "COMPLIANCE":
        return failed(f"Log bucket {name} locks files in {mode} mode for {period} "
                      "(COMPLIANCE mode required)")
    return passed(f"Log bucket {name} locks every file in {mode} mode for {period}")


def expiring_rules(rules: Any) -> list[str]:
    """Enabled lifecycle rules that delete current or noncurrent object versions."""
    out = []
    for rule in rules or []:
        if rule.get("Status") != "Enabled":
            continue
        expiration = rule.get("Expiration") or {}
        noncurrent = rule.get("NoncurrentVersionExpiration") or {}
        if expiration.get("Days") or expiration.get("Date") or noncurrent.get(
                "NoncurrentDays"):
            out.append(str(rule.get("ID") or "unnamed rule"))
    return out


@check("aws.cloudtrail.bucket_lifecycle")
def bucket_lifecycle(payload: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    access = _bucket_facts(payload)
    name = access.get("Name", "?")
    if not access["InAccount"]:
        return not_applicable(f"Log bucket {name} belongs to another account; its own "
                              "lifecycle is judged there")
    rules = expiring_rules(require(access, "LifecycleRules"))
    if rules:
        return passed(f"Log bucket {name} expires objects: {', '.join(rules)}")
    return failed(f"Log bucket {name} has no enabled expiration rule: logs are kept forever")

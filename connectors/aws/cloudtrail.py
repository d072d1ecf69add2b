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
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from connectors.aws.common import (
    ERRORS_KEY,
    MISSING,
    EvidenceMissing,
    read_partial,
    require,
    with_errors,
)
from connectors.aws.session import GLOBAL, Account
from connectors.aws.units import ReaderSpec
from connectors.checks import Verdict, check, failed, passed
from connectors.records import Evidence

SERVICE = "cloudtrail"
TRAILS = "aws.cloudtrail.trails"
TRAIL = "aws.cloudtrail.trail"

ACTIONS: dict[str, str | None] = {
    "cloudtrail:DescribeTrails": "cloudtrail:DescribeTrails",
    "cloudtrail:GetTrailStatus": "cloudtrail:GetTrailStatus",
    "cloudtrail:GetEventSelectors": "cloudtrail:GetEventSelectors",
}

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


# --- read (one unit) -----------------------------------------------------------------


def read(account: Account, region: str = GLOBAL, *, regions: Sequence[str]) -> Iterator[Evidence]:
    visible = get_trails(account.client("cloudtrail"), include_shadow=True)
    homed = {
        r: get_trails(account.client("cloudtrail", r), include_shadow=False) for r in regions
    }
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
            yield account.evidence(TRAIL, trail["TrailARN"], home, detailed(trail))


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


@check(
    id="aws.cloudtrail.multi_region_logging",
    title="A multi-region CloudTrail trail is logging",
    severity="high",
    resource_type=TRAILS,
    rationale="Without a logging multi-region trail, API activity in some regions leaves "
    "no audit record.",
    remediation="Create a multi-region trail (or an organisation trail) recording all "
    "management events, and start logging.",
    parameters={"require_management_events": True},
)
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


@check(
    id="aws.cloudtrail.log_file_validation",
    title="CloudTrail trails validate their log files",
    severity="medium",
    resource_type=TRAIL,
    rationale="Log file validation (signed digest files) shows whether delivered logs were "
    "altered or deleted.",
    remediation="Enable log file validation on the trail.",
)
def log_file_validation(payload: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    if require(payload, "LogFileValidationEnabled"):
        return passed("Log file validation is enabled")
    return failed("Log file validation is disabled")

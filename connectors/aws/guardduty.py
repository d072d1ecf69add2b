"""GuardDuty: is a detector enabled in each region.

Regional units (service ``guardduty``): ``ListDetectors``, then ``GetDetector`` for each
(partial). Resource type ``aws.guardduty.detectors`` (id = region):
``{"Detectors": [{"DetectorId", "Status", ...}]}`` — an empty list means GuardDuty is
off in the region.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from connectors.aws.common import (
    ERRORS_KEY,
    MISSING,
    EvidenceMissing,
    paginate,
    read_partial,
    require,
    with_errors,
)
from connectors.aws.session import Account
from connectors.aws.units import ReaderSpec
from connectors.checks import Verdict, check, failed, passed
from connectors.records import Evidence

SERVICE = "guardduty"
DETECTORS = "aws.guardduty.detectors"

ACTIONS: dict[str, str | None] = {
    "guardduty:ListDetectors": "guardduty:ListDetectors",
    "guardduty:GetDetector": "guardduty:GetDetector",
}


def detector_entry(client: Any, detector_id: str) -> dict[str, Any]:
    errors: dict[str, str] = {}
    entry: dict[str, Any] = {"DetectorId": detector_id}
    answer = read_partial(errors, "Status", lambda: client.get_detector(DetectorId=detector_id))
    if answer is not MISSING:
        entry.update({k: v for k, v in answer.items() if k != "ResponseMetadata"})
    return with_errors(entry, errors)


def read(account: Account, region: str) -> Iterator[Evidence]:
    client = account.client("guardduty", region)
    ids = list(paginate(client, "list_detectors", "DetectorIds"))
    payload = {"Detectors": [detector_entry(client, d) for d in ids]}
    yield account.evidence(DETECTORS, region, region, payload)


READERS = (ReaderSpec(SERVICE, read, regional=True),)


@check(
    id="aws.guardduty.enabled",
    title="GuardDuty is enabled in every region",
    severity="high",
    resource_type=DETECTORS,
    rationale="GuardDuty analyses CloudTrail, VPC flow and DNS logs for signs of "
    "compromise; a region without a detector is not watched.",
    remediation="Enable GuardDuty in the region (preferably for the whole organisation "
    "from a delegated administrator).",
)
def enabled(payload: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    detectors = require(payload, "Detectors")
    if not detectors:
        return failed("No GuardDuty detector exists in the region")
    on = [d["DetectorId"] for d in detectors if d.get("Status") == "ENABLED"]
    if on:
        return passed("GuardDuty detector enabled: " + ", ".join(on))
    unknown = [d for d in detectors if "Status" not in d]
    if unknown:
        raise EvidenceMissing("could not read detector status: " + ", ".join(
            f"{d['DetectorId']} ({(d.get(ERRORS_KEY) or {}).get('Status')})" for d in unknown))
    return failed("GuardDuty detectors exist but are suspended")

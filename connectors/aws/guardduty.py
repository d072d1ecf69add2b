"""GuardDuty: is a detector enabled in each region, and is malware protection on.

Regional units (service ``guardduty``): ``ListDetectors``, then ``GetDetector`` for each
(partial), then ``ListMalwareProtectionPlans`` and ``GetMalwareProtectionPlan`` for each
(partial, under ``MalwareProtectionPlans``), and per detector ``ListThreatIntelSets`` +
``GetThreatIntelSet`` (partial, under the detector's ``ThreatIntelSets``; moto lacks
them, see :mod:`annexa_demo.aws.fakes`). Resource type ``aws.guardduty.detectors``
(id = region): ``{"Detectors": [{"DetectorId", "Status", "Features", ...}],
"MalwareProtectionPlans": [{"MalwareProtectionPlanId", "Status", "ProtectedResource"}]}``
— an empty ``Detectors`` list means GuardDuty is off in the region. Malware Protection
for EC2 is the detector feature ``EBS_MALWARE_PROTECTION`` (older detectors also report
it under ``DataSources.MalwareProtection``); Malware Protection for S3 is one plan per
protected bucket, independent of any detector.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from botocore.exceptions import PaginationError

from connectors.aws.common import MISSING, actions, paginate, read_partial
from connectors.aws.session import Account
from connectors.aws.units import ReaderSpec
from connectors.kit import ERRORS_KEY, EvidenceMissing, require, with_errors
from core.checks import Verdict, check, failed, passed
from core.records import Evidence

SERVICE = "guardduty"
DETECTORS = "aws.guardduty.detectors"

ACTIONS = actions(
    "guardduty:ListDetectors", "guardduty:GetDetector", "guardduty:ListMalwareProtectionPlans",
    "guardduty:GetMalwareProtectionPlan", "guardduty:ListThreatIntelSets",
    "guardduty:GetThreatIntelSet",
)


def threat_intel_sets(client: Any, detector_id: str) -> list[dict[str, Any]]:
    """The detector's threat intelligence sets (lists of known-malicious IPs and domains
    the organisation supplies), with their status; the S3 location is not kept."""
    out = []
    for set_id in paginate(client, "list_threat_intel_sets", "ThreatIntelSetIds",
                           DetectorId=detector_id):
        got = client.get_threat_intel_set(DetectorId=detector_id, ThreatIntelSetId=set_id)
        out.append({"ThreatIntelSetId": set_id, "Name": got.get("Name"),
                    "Format": got.get("Format"), "Status": got.get("Status")})
    return sorted(out, key=lambda t: str(t["ThreatIntelSetId"]))


def detector_entry(client: Any, detector_id: str) -> dict[str, Any]:
    errors: dict[str, str] = {}
    entry: dict[str, Any] = {"DetectorId": detector_id}
    answer = read_partial(errors, "Status", lambda: client.get_detector(DetectorId=detector_id))
    if answer is not MISSING:
        entry.update({k: v for k, v in answer.items() if k != "ResponseMetadata"})
    sets = read_partial(errors, "ThreatIntelSets",
                        lambda: threat_intel_sets(client, detector_id))
    if sets is not MISSING:
        entry["ThreatIntelSets"] = sets
    return with_errors(entry, errors)


def plan_ids(client: Any) -> Iterator[str]:
    """Every plan id (botocore has no paginator for this operation; a repeated token
    raises, as botocore's paginators do, rather than spinning or stopping short)."""
    seen: set[str] = set()
    kwargs: dict[str, Any] = {}
    while True:
        page = client.list_malware_protection_plans(**kwargs)
        for item in page.get("MalwareProtectionPlans") or []:
            yield item["MalwareProtectionPlanId"]
        token = page.get("NextToken")
        if not token:
            return
        if token in seen:
            raise PaginationError(message="ListMalwareProtectionPlans repeated a NextToken")
        seen.add(token)
        kwargs["NextToken"] = token


def malware_plans(client: Any) -> list[dict[str, Any]]:
    plans = []
    for plan_id in plan_ids(client):
        plan = client.get_malware_protection_plan(MalwareProtectionPlanId=plan_id)
        plans.append({"MalwareProtectionPlanId": plan_id, "Status": plan.get("Status"),
                      "ProtectedResource": plan.get("ProtectedResource")})
    return plans


def read(account: Account, region: str) -> Iterator[Evidence]:
    client = account.client("guardduty", region)
    ids = list(paginate(client, "list_detectors", "DetectorIds"))
    payload: dict[str, Any] = {"Detectors": [detector_entry(client, d) for d in ids]}
    errors: dict[str, str] = {}
    plans = read_partial(errors, "MalwareProtectionPlans", lambda: malware_plans(client))
    if plans is not MISSING:
        payload["MalwareProtectionPlans"] = plans
    yield account.evidence(DETECTORS, region, region, with_errors(payload, errors))


READERS = (ReaderSpec(SERVICE, read, regional=True),)


@check("aws.guardduty.enabled")
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


def ec2_malware_protection(detector: Mapping[str, Any]) -> bool:
    """Whether the detector scans EBS volumes of instances with suspicious findings."""
    for feature in detector.get("Features") or []:
        if feature.get("Name") == "EBS_MALWARE_PROTECTION":
            return feature.get("Status") == "ENABLED"
    legacy = ((((detector.get("DataSources") or {}).get("MalwareProtection") or {})
               .get("ScanEc2InstanceWithFindings") or {}).get("EbsVolumes") or {})
    return legacy.get("Status") == "ENABLED"


@check("aws.guardduty.malware_protection")
def malware_protection(payload: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    detectors = require(payload, "Detectors")
    enabled = [d for d in detectors if d.get("Status") == "ENABLED"]
    if not enabled:
        if any("Status" not in d for d in detectors):
            raise EvidenceMissing("could not read detector status")
        return failed("GuardDuty is not enabled in the region, so no malware scanning")
    scanning = [d["DetectorId"] for d in enabled if ec2_malware_protection(d)]
    if not scanning:
        return failed("Malware Protection for EC2 (EBS_MALWARE_PROTECTION) is off on "
                      + ", ".join(d["DetectorId"] for d in enabled))
    if params["require_s3_protection"]:
        plans = require(payload, "MalwareProtectionPlans")
        active = [p for p in plans if p.get("Status") == "ACTIVE"]
        if not active:
            return failed("Malware Protection for EC2 is on, but no bucket has an active "
                          "Malware Protection for S3 plan")
        buckets = ", ".join(str(((p.get("ProtectedResource") or {}).get("S3Bucket") or {})
                                .get("BucketName")) for p in active)
        return passed(f"Malware Protection for EC2 is on ({', '.join(scanning)}) and S3 "
                      f"uploads are scanned in {buckets}")
    return passed(f"Malware Protection for EC2 is on ({', '.join(scanning)})")


@check("aws.guardduty.threat_intel_applied")
def threat_intel_applied(payload: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    detectors = require(payload, "Detectors")
    enabled = [d for d in detectors if d.get("Status") == "ENABLED"]
    if not enabled:
        if any("Status" not in d for d in detectors):
            raise EvidenceMissing("could not read detector status")
        return failed("GuardDuty is not enabled in the region: no threat intelligence is "
                      "applied to detection")
    applied, missing = [], []
    for d in enabled:
        sets = require(d, "ThreatIntelSets")
        active = [str(t.get("Name")) for t in sets if t.get("Status") == "ACTIVE"]
        (applied if active else missing).append(
            f"{d['DetectorId']} ({', '.join(active) or _states(sets)})")
    if missing:
        return failed("No active threat intel set on detector " + "; ".join(missing))
    return passed("Threat intelligence applied on detector " + "; ".join(applied))


def _states(sets: list[Mapping[str, Any]]) -> str:
    if not sets:
        return "none"
    return ", ".join(f"{t.get('Name')} {t.get('Status')}" for t in sets)

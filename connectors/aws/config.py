"""AWS Config: is a configuration recorder recording, and are conformance packs met.

Regional units (service ``config``): ``DescribeConfigurationRecorders`` and
``DescribeConfigurationRecorderStatus`` (both must succeed, or the unit fails).
Resource type ``aws.config.recorders`` (id = region)::

    {"ConfigurationRecorders": [...],
     "Status": [{"name", "recording", "lastStatus"?, "lastErrorCode"?}]}

Only lasting facts of the status are kept: ``lastStatus`` only when it is ``Failure``
(``Pending``/``Success`` alternate with every delivery), and no timestamps.

Resource type ``aws.config.conformance_packs`` (id = region): ``{"ConformancePacks":
[{"ConformancePackName", "ConformancePackArn", "ComplianceStatus"}]}``, read partially
(``DescribeConformancePacks`` + ``GetConformancePackComplianceSummary``; a failure is
recorded under ``_errors`` and only the conformance-pack check becomes an error). The API
model's enumeration is ``Pending | Success | Failure | NotApplicable``; moto answers in
capitals, so the value is compared without regard to case.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from connectors.aws.common import MISSING, actions, paginate, read_partial
from connectors.aws.session import Account
from connectors.aws.units import ReaderSpec
from connectors.kit import require, with_errors
from core.checks import Verdict, check, failed, passed
from core.records import Evidence

SERVICE = "config"
RECORDERS = "aws.config.recorders"
CONFORMANCE_PACKS = "aws.config.conformance_packs"

ACTIONS = actions(
    "config:DescribeConfigurationRecorders", "config:DescribeConfigurationRecorderStatus",
    "config:DescribeConformancePacks", "config:GetConformancePackComplianceSummary",
)


def failing(status: Mapping[str, Any]) -> bool:
    return str(status.get("lastStatus") or "").lower() == "failure"


def transform_status(status: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"name": status.get("name"), "recording": status.get("recording")}
    if failing(status):
        out["lastStatus"] = status["lastStatus"]
    for key in ("lastErrorCode", "lastErrorMessage"):
        if status.get(key):
            out[key] = status[key]
    return out


def read(account: Account, region: str) -> Iterator[Evidence]:
    client = account.client("config", region)
    recorders = client.describe_configuration_recorders().get("ConfigurationRecorders", [])
    status = client.describe_configuration_recorder_status().get(
        "ConfigurationRecordersStatus", []
    )
    payload = {
        "ConfigurationRecorders": recorders,
        "Status": [transform_status(s) for s in status],
    }
    yield account.evidence(RECORDERS, region, region, payload)
    errors: dict[str, str] = {}
    packs = read_partial(errors, "ConformancePacks", lambda: conformance_packs(client))
    yield account.evidence(CONFORMANCE_PACKS, region, region, with_errors(
        {} if packs is MISSING else {"ConformancePacks": packs}, errors))


def conformance_packs(client: Any) -> list[dict[str, Any]]:
    """Each deployed pack with its compliance (``GetConformancePackComplianceSummary``
    takes at most five names a call)."""
    packs = [{"ConformancePackName": p["ConformancePackName"],
              "ConformancePackArn": p.get("ConformancePackArn")}
             for p in paginate(client, "describe_conformance_packs", "ConformancePackDetails")]
    status: dict[str, str] = {}
    names = [p["ConformancePackName"] for p in packs]
    for i in range(0, len(names), 5):
        for item in paginate(client, "get_conformance_pack_compliance_summary",
                             "ConformancePackComplianceSummaryList",
                             ConformancePackNames=names[i:i + 5]):
            status[item["ConformancePackName"]] = item.get("ConformancePackComplianceStatus")
    for pack in packs:
        pack["ComplianceStatus"] = status.get(pack["ConformancePackName"])
    return packs


READERS = (ReaderSpec(SERVICE, read, regional=True),)


def records_everything(recorder: Mapping[str, Any]) -> bool:
    group = recorder.get("recordingGroup") or {}
    strategy = (group.get("recordingStrategy") or {}).get("useOnly")
    return bool(group.get("allSupported")) or strategy == "ALL_SUPPORTED_RESOURCE_TYPES"


@check("aws.config.recorder_enabled")
def recorder_enabled(payload: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    recorders = {r.get("name"): r for r in require(payload, "ConfigurationRecorders")}
    if not recorders:
        return failed("No configuration recorder exists in the region")
    problems = []
    for status in require(payload, "Status"):
        name = status.get("name")
        recorder = recorders.get(name, {})
        if not status.get("recording"):
            problems.append(f"{name} is stopped")
        elif failing(status):
            problems.append(f"{name} fails ({status.get('lastErrorCode', 'unknown error')})")
        elif params["require_all_resource_types"] and not records_everything(recorder):
            problems.append(f"{name} records only some resource types")
        else:
            return passed(f"Recorder {name} is recording")
    return failed("No recorder is recording" + (": " + "; ".join(problems) if problems else ""))


@check("aws.config.conformance_packs_compliant")
def conformance_packs_compliant(payload: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    packs = require(payload, "ConformancePacks")
    if len(packs) < params["min_packs"]:
        return failed(f"{len(packs)} conformance pack(s) deployed (required: "
                      f"{params['min_packs']})")
    allowed = {"COMPLIANT"} | ({"INSUFFICIENT_DATA"} if params["allow_insufficient_data"]
                               else set())
    bad = [f"{p['ConformancePackName']} ({p.get('ComplianceStatus') or 'unknown'})"
           for p in packs if p.get("ComplianceStatus") not in allowed]
    if bad:
        return failed("Conformance packs not compliant: " + ", ".join(bad))
    return passed("Conformance packs compliant: " + ", ".join(
        f"{p['ConformancePackName']} ({p.get('ComplianceStatus')})" for p in packs))

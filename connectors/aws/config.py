"""AWS Config: is a configuration recorder recording in each region.

Regional units (service ``config``): ``DescribeConfigurationRecorders`` and
``DescribeConfigurationRecorderStatus`` (both must succeed, or the unit fails).
Resource type ``aws.config.recorders`` (id = region)::

    {"ConfigurationRecorders": [...],
     "Status": [{"name", "recording", "lastStatus"?, "lastErrorCode"?}]}

Only lasting facts of the status are kept: ``lastStatus`` only when it is ``Failure``
(``Pending``/``Success`` alternate with every delivery), and no timestamps. The API
model's enumeration is ``Pending | Success | Failure | NotApplicable``; moto answers in
capitals, so the value is compared without regard to case.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from connectors.aws.common import require
from connectors.aws.session import Account
from connectors.aws.units import ReaderSpec
from connectors.checks import Verdict, check, failed, passed
from connectors.records import Evidence

SERVICE = "config"
RECORDERS = "aws.config.recorders"

ACTIONS: dict[str, str | None] = {
    "config:DescribeConfigurationRecorders": "config:DescribeConfigurationRecorders",
    "config:DescribeConfigurationRecorderStatus": "config:DescribeConfigurationRecorderStatus",
}


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


READERS = (ReaderSpec(SERVICE, read, regional=True),)


def records_everything(recorder: Mapping[str, Any]) -> bool:
    group = recorder.get("recordingGroup") or {}
    strategy = (group.get("recordingStrategy") or {}).get("useOnly")
    return bool(group.get("allSupported")) or strategy == "ALL_SUPPORTED_RESOURCE_TYPES"


@check(
    id="aws.config.recorder_enabled",
    title="An AWS Config recorder is recording in every region",
    severity="medium",
    resource_type=RECORDERS,
    rationale="The Config recorder keeps the history of every resource's configuration, "
    "the record that shows what changed, when, and how it was set at any date.",
    remediation="Create a configuration recorder for all supported resource types with a "
    "delivery channel, and start it.",
    parameters={"require_all_resource_types": True},
)
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

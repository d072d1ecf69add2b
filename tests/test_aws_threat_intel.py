"""``aws.guardduty.threat_intel_applied`` (A.5.7, threat intelligence used as input to
detective controls): an active GuardDuty threat intel set on every enabled detector.

moto 5 implements GuardDuty detectors but not threat intel sets: those operations are
served by the local fake of :mod:`annexa_demo.aws.fakes` (wire protocol from the botocore
service model, every answer validated here against its output shape), the reader is
also tested on botocore ``Stubber`` answers, and the exact fail set comes from the real
run engine over moto + the fake. Status values are the model's ``ThreatIntelSetStatus``
enum (INACTIVE, ACTIVATING, ACTIVE, DEACTIVATING, ERROR, DELETE_PENDING, DELETED).
"""

from __future__ import annotations

from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from botocore.validate import ParamValidator

import connectors.aws  # noqa: F401 - registers the checks
from connectors.aws.guardduty import threat_intel_sets
from connectors.kit import EvidenceMissing
from core.checks import REGISTRY
from tests.engine_run import run_engine

CHECK = "aws.guardduty.threat_intel_applied"
STATUSES = ["INACTIVE", "ACTIVATING", "ACTIVE", "DEACTIVATING", "ERROR", "DELETE_PENDING",
            "DELETED"]


def verdict(payload: dict[str, Any]) -> tuple[str, str]:
    spec = REGISTRY.get(CHECK)
    v = spec.func(payload, spec.params_with(None))
    return v.status, v.message


def detector(status: str = "ENABLED", *sets: tuple[str, str]) -> dict[str, Any]:
    return {"DetectorId": f"d-{len(sets)}-{status}", "Status": status,
            "ThreatIntelSets": [{"ThreatIntelSetId": f"t{i}", "Name": name, "Format": "TXT",
                                 "Status": state} for i, (name, state) in enumerate(sets)]}


@pytest.mark.parametrize("state", STATUSES)
def test_only_an_active_set_counts(state: str) -> None:
    status, message = verdict({"Detectors": [detector("ENABLED", ("isac", state))]})
    assert status == ("pass" if state == "ACTIVE" else "fail"), message
    if state != "ACTIVE":
        assert f"isac {state}" in message


def test_detectors_and_missing_evidence() -> None:
    assert verdict({"Detectors": []})[0] == "fail"  # GuardDuty off
    assert verdict({"Detectors": [detector("DISABLED", ("isac", "ACTIVE"))]})[0] == "fail"
    assert verdict({"Detectors": [detector("ENABLED")]}) == (
        "fail", "No active threat intel set on detector d-0-ENABLED (none)")
    two = {"Detectors": [detector("ENABLED", ("a", "ACTIVE")),
                         {**detector("ENABLED", ("b", "INACTIVE")), "DetectorId": "d2"}]}
    assert verdict(two)[0] == "fail"
    unread = {"DetectorId": "d", "Status": "ENABLED",
              "_errors": {"ThreatIntelSets": "AccessDeniedException"}}
    with pytest.raises(EvidenceMissing):
        verdict({"Detectors": [unread]})


def test_reader_pages_and_reads_each_set(aws_offline_env: None) -> None:
    client = boto3.client("guardduty", region_name="us-east-1")
    with Stubber(client) as stub:
        def get(sid: str, state: str) -> None:
            stub.add_response("get_threat_intel_set", {
                "Name": f"set-{sid}", "Format": "STIX", "Status": state,
                "Location": f"s3://intel/{sid}.xml"},
                {"DetectorId": "d", "ThreatIntelSetId": sid})

        stub.add_response("list_threat_intel_sets", {"ThreatIntelSetIds": ["b"],
                                                     "NextToken": "n"},
                          {"DetectorId": "d", "MaxResults": 50})
        get("b", "ACTIVE")  # each set is read as its page arrives
        stub.add_response("list_threat_intel_sets", {"ThreatIntelSetIds": ["a"]},
                          {"DetectorId": "d", "MaxResults": 50, "NextToken": "n"})
        get("a", "ERROR")
        got = threat_intel_sets(client, "d")
    assert got == [
        {"ThreatIntelSetId": "a", "Name": "set-a", "Format": "STIX", "Status": "ERROR"},
        {"ThreatIntelSetId": "b", "Name": "set-b", "Format": "STIX", "Status": "ACTIVE"},
    ]  # the S3 location is not stored


def test_exact_fail_set_through_the_run_engine(aws_env: str) -> None:
    validator = ParamValidator()

    def valid(client: Any, operation: str, answer: dict[str, Any]) -> dict[str, Any]:
        answer = {k: v for k, v in answer.items() if k != "ResponseMetadata"}
        name = client.meta.method_to_api_mapping[operation]
        report = validator.validate(
            answer, client.meta.service_model.operation_model(name).output_shape)
        assert not report.has_errors(), report.generate_report()
        return answer

    regions = {"us-east-1": "ACTIVE", "eu-west-1": "INACTIVE", "eu-central-1": None}
    for region, state in regions.items():
        gd = boto3.client("guardduty", region_name=region)
        d = gd.create_detector(Enable=True)["DetectorId"]
        if state:
            made = valid(gd, "create_threat_intel_set", gd.create_threat_intel_set(
                DetectorId=d, Name="isac", Format="TXT", Location="s3://intel/list.txt",
                Activate=state == "ACTIVE"))
            valid(gd, "list_threat_intel_sets", gd.list_threat_intel_sets(DetectorId=d))
            valid(gd, "get_threat_intel_set", gd.get_threat_intel_set(
                DetectorId=d, ThreatIntelSetId=made["ThreatIntelSetId"]))
    run = run_engine("aws", {"regions": [*regions, "ap-south-1"], "services": ["guardduty"]})
    assert run.status == "succeeded", run.errors
    assert run.ids("fail", CHECK) == {(CHECK, "eu-west-1"), (CHECK, "eu-central-1"),
                                      (CHECK, "ap-south-1")}  # ap-south-1: GuardDuty off
    assert run.ids("pass", CHECK) == {(CHECK, "us-east-1")}
    assert tuple(run.one(CHECK, "us-east-1").controls) == ("A.5.7",)
    assert "isac INACTIVE" in run.one(CHECK, "eu-west-1").message

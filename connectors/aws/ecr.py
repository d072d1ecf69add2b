"""Amazon ECR: container images scanned, and their scan findings fixed within the SLA.

Regional units (service ``ecr``): ``DescribeRepositories`` then ``DescribeImages`` per
repository, page by page; one ``aws.ecr.image`` evidence per image (id =
``<repositoryArn>@<imageDigest>``)::

    {"repositoryName", "repositoryArn", "scanOnPush", "imageDigest", "imageTags",
     "imagePushedAt", "ScanStatus": "COMPLETE" | … | null,
     "ScanCompletedAt": ts | null, "FindingSeverityCounts": {"HIGH": 2, …} | null}

``DescribeImages`` carries ``imageScanStatus`` and ``imageScanFindingsSummary`` when an
image was scanned. When it carries neither, ``DescribeImageScanFindings``
(``maxResults`` 1: only the summary is kept) is asked once for that image:
``ScanNotFoundException`` means never scanned (``ScanStatus`` null); any other error is
recorded under ``_errors``. (moto's ``DescribeImages`` never includes the summary.)

Basic scanning reports findings by severity with the time of the scan that found them;
an image's findings are as old as that scan (a rescan of an unchanged image finds them
again and restarts the clock: enhanced scanning, judged through Amazon Inspector's
``firstObservedAt`` by :mod:`connectors.aws.inspector2`, does not). Images under
enhanced scanning (``ScanStatus`` ``ACTIVE``…) are ``not_applicable`` here.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from connectors.aws.common import MISSING, actions, paginate, read_partial
from connectors.aws.inspector2 import NOT_JUDGED
from connectors.aws.session import Account
from connectors.aws.units import ReaderSpec
from connectors.kit import EvidenceMissing, require, with_errors
from connectors.sla import OpenItem, sla_verdict
from core.checks import Verdict, check, failed, not_applicable
from core.records import Evidence

SERVICE = "ecr"
IMAGE = "aws.ecr.image"

ACTIONS = actions("ecr:DescribeRepositories", "ecr:DescribeImages", "ecr:DescribeImageScanFindings")

#: Statuses of enhanced scanning (Amazon Inspector) in ECR's ``ScanStatus`` enumeration.
ENHANCED = ("ACTIVE", "PENDING", "SCAN_ELIGIBILITY_EXPIRED", "FINDINGS_UNAVAILABLE",
            "LIMIT_EXCEEDED")
#: Statuses under which the image has no usable basic scan.
UNUSABLE = ("FAILED", "UNSUPPORTED_IMAGE", "IMAGE_SIZE_EXCEEDED")


def scan_summary(client: Any, repository: str, digest: str) -> dict[str, Any] | None:
    """Status and summary from ``DescribeImageScanFindings``; None if never scanned."""
    try:
        answer = client.describe_image_scan_findings(
            repositoryName=repository, imageId={"imageDigest": digest}, maxResults=1)
    except client.exceptions.ScanNotFoundException:
        return None
    findings = answer.get("imageScanFindings") or {}
    return {"ScanStatus": (answer.get("imageScanStatus") or {}).get("status"),
            "ScanCompletedAt": findings.get("imageScanCompletedAt"),
            "FindingSeverityCounts": findings.get("findingSeverityCounts") or {}}


def image_payload(client: Any, repository: Mapping[str, Any], image: Mapping[str, Any]
                  ) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "repositoryName": repository["repositoryName"],
        "repositoryArn": repository.get("repositoryArn"),
        "scanOnPush": (repository.get("imageScanningConfiguration") or {}).get("scanOnPush"),
        "imageDigest": image["imageDigest"],
        "imageTags": sorted(image.get("imageTags") or []),
        "imagePushedAt": image.get("imagePushedAt"),
    }
    errors: dict[str, str] = {}
    status = (image.get("imageScanStatus") or {}).get("status")
    summary = image.get("imageScanFindingsSummary")
    if status or summary:
        payload.update({"ScanStatus": status,
                        "ScanCompletedAt": (summary or {}).get("imageScanCompletedAt"),
                        "FindingSeverityCounts": (summary or {}).get("findingSeverityCounts")
                        or {}})
        return payload
    asked = read_partial(errors, "ScanStatus", lambda: scan_summary(
        client, repository["repositoryName"], image["imageDigest"]))
    if asked is not MISSING:
        payload.update(asked or {"ScanStatus": None, "ScanCompletedAt": None,
                                 "FindingSeverityCounts": None})
    return with_errors(payload, errors)


def read(account: Account, region: str) -> Iterator[Evidence]:
    client = account.client("ecr", region)
    for repository in paginate(client, "describe_repositories", "repositories"):
        for image in paginate(client, "describe_images", "imageDetails",
                              repositoryName=repository["repositoryName"]):
            arn = repository.get("repositoryArn") or account.arn(
                "ecr", region, f"repository/{repository['repositoryName']}")
            yield account.evidence(IMAGE, f"{arn}@{image['imageDigest']}", region,
                                   image_payload(client, repository, image))


READERS = (ReaderSpec(SERVICE, read, regional=True),)


@check("aws.ecr.image_scan_findings_within_sla")
def image_scan_findings_within_sla(payload: Mapping[str, Any],
                                   params: Mapping[str, Any]) -> Verdict:
    status = require(payload, "ScanStatus")
    name = f"{payload.get('repositoryName')}@{str(payload.get('imageDigest'))[:19]}"
    if status in ENHANCED:
        return not_applicable(f"{name}: enhanced scanning ({status}); findings are judged "
                              "through Amazon Inspector")
    if status in ("IN_PROGRESS", "IMAGE_ARCHIVED"):
        return not_applicable(f"{name}: scan {status.lower().replace('_', ' ')}")
    if status is None or status in UNUSABLE:
        if not params["require_scan"]:
            return not_applicable(f"{name} has no scan ({status or 'never scanned'})")
        return failed(f"{name} has no usable vulnerability scan ({status or 'never scanned'})")
    counts = payload.get("FindingSeverityCounts") or {}
    completed = payload.get("ScanCompletedAt")
    items = [OpenItem(f"{n} finding(s) of {name}", severity, completed)
             for severity, n in sorted(counts.items()) if n and severity not in NOT_JUDGED]
    if items and not completed:
        raise EvidenceMissing(f"{name}: the time of the scan that found its findings is "
                              "missing")
    return sla_verdict(items, params["max_age_days"], "ECR scan findings")

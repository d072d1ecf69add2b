"""Amazon Inspector: is scanning on, and are its findings fixed within the SLA.

Regional units (service ``inspector2``):

* ``BatchGetAccountStatus`` for the account: one ``aws.inspector2.account_status``
  evidence (id = region) — ``{"State": {...}, "ResourceState": {"ec2": {"status"},
  "ecr": {...}, "lambda": {...}, ...}}`` (``null`` members: not reported).
* ``ListFindings`` filtered on ``findingStatus = ACTIVE``, page by page: one
  ``aws.inspector2.finding`` evidence per open finding (id = finding ARN) with what an
  auditor needs — severity, type, title, first observation, fix availability, the
  vulnerability id and the affected resources — and without ``lastObservedAt`` /
  ``updatedAt`` (they move with every rescan). A finding closed or suppressed drops out
  of the listing and is closed by absence.

Severities are Inspector's (``INFORMATIONAL | LOW | MEDIUM | HIGH | CRITICAL |
UNTRIAGED``, botocore inspector2 2020-06-08); ``max_age_days`` gives the days allowed
from ``firstObservedAt`` per severity, judged by the shared :mod:`connectors.sla` (a
severity it does not name gets the strictest limit; ``INFORMATIONAL`` findings are not
vulnerabilities to fix and are ``not_applicable``). :mod:`connectors.aws.ecr` judges
basic ECR scan findings with the same parameter.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from connectors.aws.common import actions, paginate
from connectors.aws.session import Account
from connectors.aws.units import ReaderSpec
from connectors.kit import require
from connectors.sla import OpenItem, sla_verdict
from core.checks import Verdict, check, failed, not_applicable, passed
from core.records import Evidence

SERVICE = "inspector2"
ACCOUNT_STATUS = "aws.inspector2.account_status"
FINDING = "aws.inspector2.finding"

ACTIONS = actions("inspector2:BatchGetAccountStatus", "inspector2:ListFindings")

#: Severities that are information, not vulnerabilities to remediate.
NOT_JUDGED = ("INFORMATIONAL",)
_FINDING_FIELDS = ("findingArn", "awsAccountId", "type", "title", "severity", "status",
                   "firstObservedAt", "fixAvailable", "exploitAvailable", "inspectorScore")


def transform_finding(finding: Mapping[str, Any]) -> dict[str, Any]:
    out = {k: finding[k] for k in _FINDING_FIELDS if k in finding}
    vulnerability = finding.get("packageVulnerabilityDetails") or {}
    if vulnerability.get("vulnerabilityId"):
        out["vulnerabilityId"] = vulnerability["vulnerabilityId"]
    out["resources"] = [{k: r.get(k) for k in ("type", "id", "region")}
                        for r in finding.get("resources") or []]
    return out


def read(account: Account, region: str) -> Iterator[Evidence]:
    client = account.client("inspector2", region)
    answer = client.batch_get_account_status(accountIds=[account.account_id])
    mine = next((a for a in answer.get("accounts") or []
                 if a.get("accountId") == account.account_id), None)
    status = {"State": (mine or {}).get("state"),
              "ResourceState": (mine or {}).get("resourceState")}
    yield account.evidence(ACCOUNT_STATUS, region, region, status)
    active = {"findingStatus": [{"comparison": "EQUALS", "value": "ACTIVE"}]}
    for finding in paginate(client, "list_findings", "findings", filterCriteria=active):
        if finding.get("status", "ACTIVE") != "ACTIVE":
            continue
        yield account.evidence(FINDING, finding["findingArn"], region,
                               transform_finding(finding))


READERS = (ReaderSpec(SERVICE, read, regional=True),)


@check("aws.inspector2.scanning_enabled")
def scanning_enabled(payload: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    resources = require(payload, "ResourceState") or {}
    wanted = list(params["resource_types"])
    off = [f"{t} ({(resources.get(t) or {}).get('status', 'not activated')})"
           for t in wanted if (resources.get(t) or {}).get("status") != "ENABLED"]
    if off:
        return failed("Inspector does not scan: " + ", ".join(off))
    return passed("Inspector scans " + ", ".join(wanted))


@check("aws.inspector2.finding_within_sla")
def finding_within_sla(payload: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    severity = str(require(payload, "severity"))
    first = require(payload, "firstObservedAt")
    what = str(payload.get("vulnerabilityId") or payload.get("title") or "finding")
    if severity.upper() in NOT_JUDGED:
        return not_applicable(f"{severity} {what}: informational, no remediation SLA")
    return sla_verdict([OpenItem(what, severity, first)], params["max_age_days"],
                       "Inspector findings")

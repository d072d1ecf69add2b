"""Azure Policy: are the subscription's resources compliant with the assigned baseline?

One unit per subscription (service ``policy``): ``POST /subscriptions/<id>/providers/
Microsoft.PolicyInsights/policyStates/latest/summarize`` — a read-only query (the
summary of the latest compliance states; Reader may call it). A failure fails the unit.

Resource type ``azure.policy.compliance`` (id = ``/subscriptions/<id>/providers/
Microsoft.PolicyInsights/policyStates/latest``, region ``global``)::

    {"subscriptionId", "nonCompliantResources", "nonCompliantPolicies",
     "assignments": [{"policyAssignmentId", "policySetDefinitionId",
                      "nonCompliantResources", "nonCompliantPolicies"}]}
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from connectors.kit import GLOBAL, require
from core.checks import Verdict, check, failed, passed
from core.records import Evidence, utcnow

from .arm import Arm

SERVICE = "policy"
COMPLIANCE = "azure.policy.compliance"
API_VERSION = "2019-10-01"

ACTIONS = ("Microsoft.PolicyInsights/policyStates/summarize/read",)


def _results(node: Mapping[str, Any]) -> dict[str, Any]:
    r = node.get("results") or {}
    return {"nonCompliantResources": int(r.get("nonCompliantResources") or 0),
            "nonCompliantPolicies": int(r.get("nonCompliantPolicies") or 0)}


def summarize(arm: Arm, subscription: str) -> dict[str, Any]:
    path = (f"/subscriptions/{subscription}/providers/Microsoft.PolicyInsights/"
            "policyStates/latest/summarize")
    body = arm.http.request("POST", path, params={"api-version": API_VERSION}).json()
    [summary] = body.get("value") or [{}]
    assignments = [
        {"policyAssignmentId": str(a.get("policyAssignmentId") or "").lower(),
         "policySetDefinitionId": str(a.get("policySetDefinitionId") or "").lower() or None,
         **_results(a)}
        for a in summary.get("policyAssignments") or []]
    return {**_results(summary),
            "assignments": sorted(assignments, key=lambda a: a["policyAssignmentId"])}


def read(arm: Arm, subscription: str, **_: Any) -> Iterator[Evidence]:
    payload = {"subscriptionId": subscription, **summarize(arm, subscription)}
    rid = (f"/subscriptions/{subscription}/providers/microsoft.policyinsights/"
           "policystates/latest")
    yield Evidence(scope=subscription, region=GLOBAL, resource_type=COMPLIANCE,
                   resource_id=rid, payload=payload, collected_at=utcnow())


@check("azure.policy.compliance")
def compliance(payload: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    assignments = require(payload, "assignments")
    if not assignments:
        return failed("No policy is assigned: there is no configuration baseline to "
                      "comply with")
    assigned = {a["policySetDefinitionId"] or "" for a in assignments} | {
        a["policyAssignmentId"] for a in assignments}
    missing = [str(d) for d in params["required_definitions"]
               if not any(str(d).lower() in x for x in assigned)]
    if missing:
        return failed("Required baseline not assigned: " + ", ".join(missing))
    count = int(payload.get("nonCompliantResources") or 0)
    limit = int(params["max_non_compliant_resources"])
    if count > limit:
        worst = sorted(assignments, key=lambda a: -a["nonCompliantResources"])[:3]
        return failed(f"{count} non-compliant resources (limit {limit}): " + "; ".join(
            f"{a['policyAssignmentId'].rsplit('/', 1)[-1]}: {a['nonCompliantResources']}"
            for a in worst if a["nonCompliantResources"]))
    return passed(f"{len(assignments)} policy assignments, {count} non-compliant resources")

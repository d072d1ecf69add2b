"""Organisation policies: are the baseline constraints enforced on every project?

Which constraints are read is configuration (connector option
``org_policy_constraints``; default :data:`DEFAULT_CONSTRAINTS`, boolean constraints
of Google's secure baseline), because it decides what is called. One unit per project
(service ``orgpolicy``): per constraint ``GET orgpolicy.googleapis.com/v2/projects/<id>/
policies/<constraint>:getEffectivePolicy`` — the policy in force after inheritance from
folders and the organisation. A failure is recorded per constraint under ``_errors``;
when every read fails (no access to the project) the unit fails.

Resource type ``gcp.orgpolicy.policies`` (id = ``projects/<id>/policies``, region
``global``)::

    {"parent", "constraints": {"<constraint>": {"enforced": bool,
                                                "rules": [{"enforce"?, "condition"?, …}]}}}
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from connectors.http import SourceError
from connectors.kit import EvidenceMissing, require, with_errors
from core.checks import Verdict, check, failed, passed
from core.records import Evidence

from .context import GcpContext, Project, evidence

SERVICE = "orgpolicy"
POLICIES = "gcp.orgpolicy.policies"

PERMISSIONS = ("orgpolicy.policy.get",)

#: Boolean constraints of a secure baseline (Google's "secure by default" organisation
#: policies and the CIS Google Cloud benchmark).
DEFAULT_CONSTRAINTS = (
    "iam.disableServiceAccountKeyCreation",
    "iam.automaticIamGrantsForDefaultServiceAccounts",
    "compute.skipDefaultNetworkCreation",
    "compute.requireOsLogin",
    "compute.disableSerialPortAccess",
    "storage.uniformBucketLevelAccess",
    "storage.publicAccessPrevention",
    "sql.restrictPublicIp",
)


def enforced(policy: Mapping[str, Any]) -> bool:
    """A boolean constraint is enforced when a rule without a condition enforces it (a
    conditional rule enforces it only for some resources)."""
    rules = (policy.get("spec") or {}).get("rules") or []
    return any(r.get("enforce") is True and not r.get("condition") for r in rules)


def read(ctx: GcpContext, project: Project,
         constraints: Sequence[str] = DEFAULT_CONSTRAINTS) -> Iterator[Evidence]:
    found: dict[str, Any] = {}
    errors: dict[str, str] = {}
    first: SourceError | None = None
    for name in constraints:
        path = f"/v2/{project.resource}/policies/{name}:getEffectivePolicy"
        try:
            policy = ctx.api("orgpolicy").get_json(path)
        except SourceError as exc:
            errors[name] = str(exc)
            first = first or exc
            continue
        found[name] = {"enforced": enforced(policy),
                       "rules": (policy.get("spec") or {}).get("rules") or []}
    if first is not None and not found:
        raise first
    unread = {"constraints": "; ".join(f"{k}: {v}" for k, v in errors.items())} \
        if errors else {}
    payload = {"parent": project.resource, "constraints": found}
    yield evidence(project.id, POLICIES, f"{project.resource}/policies",
                   with_errors(payload, unread))


@check("gcp.orgpolicy.constraints_enforced")
def constraints_enforced(payload: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    constraints = require(payload, "constraints")
    unread = (payload.get("_errors") or {}).get("constraints")
    off = sorted(name for name, c in constraints.items() if not c.get("enforced"))
    if off:
        return failed("Constraints not enforced: " + ", ".join(off))
    if unread:
        raise EvidenceMissing(f"some constraints could not be read: {unread}")
    return passed(f"All {len(constraints)} baseline constraints are enforced")

"""IAM: allow policies of projects, folders and the organisation; service-account keys.

Units (service ``iam``):

* per project: its IAM policy (Resource Manager ``getIamPolicy``, requested version 3;
  a failure fails the unit), then ``GET iam.googleapis.com/v1/projects/<id>/
  serviceAccounts`` (a listing: its failure fails the unit) and per account ``…/keys?
  keyTypes=USER_MANAGED`` (partial, recorded under ``_errors``);
* per folder and organisation (scope ``folders/N`` / ``organizations/N``): its policy.

Resource types:

``gcp.iam.policy`` (id = ``projects/<id>``, ``folders/N``, ``organizations/N``)::

    {"resource", "displayName", "parent", "ancestors": [nearest first],
     "version", "bindings": [{"role", "members", "condition"?}],
     "auditConfigs": [{"service", "auditLogConfigs": [{"logType", "exemptedMembers"?}]}],
     "inheritedAuditConfigs": [{"resource": "<ancestor>", "auditConfigs": [...]}]}

Audit configuration is inherited down the hierarchy (the effective Data Access logging
of a project is the union of its own and its ancestors'), so each node carries what its
ancestors set; an ancestor policy that cannot be read is recorded under
``_errors.inheritedAuditConfigs``.

``gcp.iam.service_account`` (id = the account's e-mail)::

    {"email", "displayName", "disabled", "uniqueId",
     "userManagedKeys": [{"keyId", "keyAlgorithm", "keyOrigin", "validAfterTime",
                          "validBeforeTime", "disabled"}]}

Key material is never requested (the key list returns metadata only).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any
from urllib.parse import quote

from connectors.cloudshared import older_than
from connectors.http import SourceError
from connectors.kit import EvidenceMissing, read_partial, require, with_errors
from core.checks import Verdict, check, failed, not_applicable, passed
from core.records import Evidence

from .context import GcpContext, Project, evidence

SERVICE = "iam"
POLICY = "gcp.iam.policy"
SERVICE_ACCOUNT = "gcp.iam.service_account"

PERMISSIONS = (
    "resourcemanager.projects.getIamPolicy",
    "resourcemanager.folders.getIamPolicy",
    "resourcemanager.organizations.getIamPolicy",
    "iam.serviceAccounts.list",
    "iam.serviceAccountKeys.list",
)

# --- principals --------------------------------------------------------------------------

#: Kinds of principal that are people (or stand for people: domains, everyone, workforce
#: identity federation, the project-role convenience values of bucket policies), and
#: kinds that are workloads. ``unknown`` is any identifier IAM's "Principal identifiers"
#: page does not list: judged as a person, so it is never silently passed. They are the
#: member_types defaults of the primitive-role checks in iam.checks.toml, which must
#: list the same (tests/test_check_metadata.py holds them together).
PEOPLE_KINDS = ("user", "group", "domain", "allUsers", "allAuthenticatedUsers",
                "workforceIdentity", "deletedUser", "deletedGroup", "projectRole", "unknown")
WORKLOAD_KINDS = ("serviceAccount", "deletedServiceAccount", "workloadIdentity")
PUBLIC_KINDS = frozenset({"allUsers", "allAuthenticatedUsers"})

_PREFIXES = {"user": "user", "group": "group", "domain": "domain",
             "serviceAccount": "serviceAccount", "projectOwner": "projectRole",
             "projectEditor": "projectRole", "projectViewer": "projectRole"}


def member_kind(member: str) -> str:
    """The kind of an allow-policy member, per IAM's principal identifiers: ``user:``,
    ``group:``, ``serviceAccount:`` (Kubernetes service accounts included), ``domain:``,
    ``allUsers``, ``allAuthenticatedUsers``, ``principal://`` and ``principalSet://``
    (workforce and workload identity pools, Google accounts and groups, a Cloud
    Identity customer, every service account or service agent of a project, folder or
    organisation, built-in resource identities), ``deleted:…`` and the bucket-policy
    convenience values ``projectOwner:``/``projectEditor:``/``projectViewer:``."""
    m = str(member).strip()
    if m in ("allUsers", "allAuthenticatedUsers"):
        return m
    if m.startswith("deleted:"):
        inner = member_kind(m[len("deleted:"):].split("?", 1)[0])
        return {"user": "deletedUser", "group": "deletedGroup",
                "serviceAccount": "deletedServiceAccount"}.get(inner, "unknown")
    for scheme in ("principal://", "principalSet://"):
        if m.startswith(scheme):
            return _principal_uri_kind(m[len(scheme):])
    prefix, sep, _ = m.partition(":")
    return _PREFIXES.get(prefix, "unknown") if sep else "unknown"


def _principal_uri_kind(rest: str) -> str:
    if rest.startswith("iam.googleapis.com/locations/global/workforcePools/"):
        return "workforceIdentity"
    if rest.startswith("iam.googleapis.com/projects/") and "/workloadIdentityPools/" in rest:
        return "workloadIdentity"
    if rest.startswith("cloudresourcemanager.googleapis.com/") and (
            rest.endswith("/type/ServiceAccount") or rest.endswith("/type/ServiceAgent")):
        return "serviceAccount"
    if rest.startswith("goog/subject/"):
        return "user"
    if rest.startswith("goog/group/"):
        return "group"
    if rest.startswith("goog/cloudIdentityCustomerId/"):
        return "domain"
    if rest == "goog/public:all":
        return "allUsers"
    host = rest.split("/", 1)[0]
    if host.endswith(".id.goog"):  # built-in resource identities (agents, GKE…)
        return "workloadIdentity"
    return "unknown"


def is_public(member: str) -> bool:
    return member_kind(member) in PUBLIC_KINDS


# --- policies --------------------------------------------------------------------------


def _bindings(policy: Mapping[str, Any]) -> list[dict[str, Any]]:
    out = []
    for b in policy.get("bindings") or []:
        item: dict[str, Any] = {"role": b.get("role"), "members": sorted(b.get("members") or [])}
        if b.get("condition"):
            item["condition"] = b["condition"]
        out.append(item)
    return sorted(out, key=lambda b: (str(b["role"]), str(b.get("condition", ""))))


def policy_payload(
    ctx: GcpContext, resource: str, parent: str | None, display_name: str | None = None
) -> dict[str, Any]:
    """The node's policy (a failure raises) with what its ancestors configure."""
    policy = ctx.hierarchy.policy(resource)
    payload: dict[str, Any] = {
        "resource": resource,
        "displayName": display_name,
        "parent": parent,
        "version": policy.get("version"),
        "bindings": _bindings(policy),
        "auditConfigs": policy.get("auditConfigs") or [],
    }
    errors: dict[str, str] = {}
    chain: list[str] = []
    try:
        if parent:
            chain = [parent, *ctx.hierarchy.ancestors(parent)]
    except SourceError as exc:
        errors["inheritedAuditConfigs"] = f"ancestors of {resource}: {exc}"
    inherited: list[dict[str, Any]] = []
    for node in chain:
        try:
            configs = ctx.hierarchy.policy(node).get("auditConfigs") or []
        except SourceError as exc:
            errors["inheritedAuditConfigs"] = f"policy of {node}: {exc}"
            continue
        if configs:
            inherited.append({"resource": node, "auditConfigs": configs})
    payload["ancestors"] = chain
    payload["inheritedAuditConfigs"] = inherited
    return with_errors(payload, errors)


def read_project_policy(ctx: GcpContext, project: Project) -> Evidence:
    payload = policy_payload(ctx, project.resource, project.parent, project.display_name)
    return evidence(project.id, POLICY, project.resource, payload)


def read_node(ctx: GcpContext, node: str, parent: str | None,
              display_name: str | None) -> Iterator[Evidence]:
    """The unit of a folder or organisation: its own policy."""
    yield evidence(node, POLICY, node, policy_payload(ctx, node, parent, display_name))


# --- service accounts -----------------------------------------------------------------


def _key(key: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "keyId": str(key.get("name", "")).rsplit("/", 1)[-1],
        "keyAlgorithm": key.get("keyAlgorithm"),
        "keyOrigin": key.get("keyOrigin"),
        "keyType": key.get("keyType", "USER_MANAGED"),
        "validAfterTime": key.get("validAfterTime"),
        "validBeforeTime": key.get("validBeforeTime"),
        "disabled": bool(key.get("disabled", False)),
    }


def service_account_payload(ctx: GcpContext, account: Mapping[str, Any]) -> dict[str, Any]:
    payload: dict[str, Any] = {
        k: account.get(k) for k in ("email", "displayName", "uniqueId", "description")
        if account.get(k) is not None
    }
    payload["disabled"] = bool(account.get("disabled", False))
    errors: dict[str, str] = {}
    name = account.get("name") or f"projects/-/serviceAccounts/{account.get('email')}"
    path = f"/v1/{quote(str(name), safe='/@')}/keys"
    keys = read_partial(errors, "userManagedKeys", lambda: ctx.api("iam").get_json(
        path, params={"keyTypes": "USER_MANAGED"}).get("keys") or [])
    if keys is not None:
        payload["userManagedKeys"] = sorted(
            (_key(k) for k in keys if k.get("keyType", "USER_MANAGED") == "USER_MANAGED"),
            key=lambda k: k["keyId"],
        )
    return with_errors(payload, errors)


def read(ctx: GcpContext, project: Project) -> Iterator[Evidence]:
    yield read_project_policy(ctx, project)
    accounts = ctx.items("iam", f"/v1/projects/{project.id}/serviceAccounts", "accounts",
                         {"pageSize": 100})
    for account in accounts:
        yield evidence(project.id, SERVICE_ACCOUNT, str(account.get("email")),
                       service_account_payload(ctx, account))


# --- checks: policies -----------------------------------------------------------------


def _grants(payload: Mapping[str, Any], roles: Sequence[str], kinds: Sequence[str],
            allowed: Sequence[str]) -> list[str]:
    roles_set, kinds_set = set(roles), set(kinds)
    out = []
    for b in require(payload, "bindings"):
        if b.get("role") not in roles_set:
            continue
        for m in b.get("members") or []:
            kind = member_kind(str(m))
            if kind in kinds_set and m not in allowed:
                note = " (unrecognised member type)" if kind == "unknown" else ""
                out.append(f"{m} has {b['role']}{note}")
    return out


@check("gcp.iam.user_no_primitive_roles")
def user_no_primitive_roles(payload: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    found = _grants(payload, params["roles"], params["member_types"], params["allowed_members"])
    if found:
        return failed("Basic roles granted to people: " + "; ".join(found))
    return passed("No person, group, domain or workforce identity holds a basic role here")


@check("gcp.iam.service_account_no_primitive_roles")
def service_account_no_primitive_roles(
    payload: Mapping[str, Any], params: Mapping[str, Any]
) -> Verdict:
    found = _grants(payload, params["roles"], params["member_types"],
                    params["allowed_members"])
    if found:
        return failed("Basic roles granted to service accounts: " + "; ".join(found))
    return passed("No service account holds a basic role here")


@check("gcp.iam.no_public_bindings")
def no_public_bindings(payload: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    found = [f"{m} has {b.get('role')}" for b in require(payload, "bindings")
             for m in b.get("members") or [] if is_public(str(m))]
    if found:
        return failed("Public bindings: " + "; ".join(found))
    return passed("No binding grants access to allUsers or allAuthenticatedUsers")


def _log_types(configs: Sequence[Mapping[str, Any]]) -> tuple[set[str], list[str]]:
    """Log types enabled for allServices, and exempted members, across ``configs``."""
    types: set[str] = set()
    exempted: list[str] = []
    for cfg in configs:
        if cfg.get("service") != "allServices":
            continue
        for lc in cfg.get("auditLogConfigs") or []:
            types.add(str(lc.get("logType")))
            exempted += [str(m) for m in lc.get("exemptedMembers") or []]
    return types, exempted


@check("gcp.iam.data_access_audit_logs")
def data_access_audit_logs(payload: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    configs = list(require(payload, "auditConfigs"))
    for inherited in payload.get("inheritedAuditConfigs") or []:
        configs += inherited.get("auditConfigs") or []
    types, exempted = _log_types(configs)
    missing = [t for t in params["log_types"] if t not in types]
    if exempted and not params["allow_exempted_members"]:
        problem = "exempted members: " + ", ".join(sorted(set(exempted)))
    elif missing:
        problem = "not logged for all services: " + ", ".join(missing)
    else:
        return passed("Data Access audit logs are on for all services: "
                      + ", ".join(sorted(types)))
    unread = (payload.get("_errors") or {}).get("inheritedAuditConfigs")
    if unread and not exempted:
        raise EvidenceMissing(f"{problem}, and an ancestor's configuration could not be "
                              f"read: {unread}")
    return failed(problem)


# --- checks: service accounts ----------------------------------------------------------


def _active_keys(payload: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [k for k in require(payload, "userManagedKeys") if not k.get("disabled")]


@check("gcp.iam.no_user_managed_keys")
def no_user_managed_keys(payload: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    keys = _active_keys(payload)
    if keys:
        return failed(f"{len(keys)} enabled user-managed key(s): "
                      + ", ".join(str(k["keyId"])[:12] for k in keys))
    return passed("No enabled user-managed keys")


@check("gcp.iam.access_key_rotated")
def access_key_rotated(payload: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    keys = _active_keys(payload)
    if not keys:
        return not_applicable("No enabled user-managed keys")
    limit = float(params["max_age_days"])
    old = older_than(keys, limit, lambda k: k["validAfterTime"], lambda k: str(k["keyId"])[:12])
    if old:
        return failed(f"Keys older than {int(limit)} days: " + ", ".join(old))
    return passed(f"All {len(keys)} enabled keys are younger than {int(limit)} days")

"""IAM principals and their policies: who holds ``*:*`` (full administrator) rights.

Read inside the ``iam`` unit (see :mod:`connectors.aws.iam`). One paginated
``GetAccountAuthorizationDetails`` (users, groups, roles and customer managed policies,
with every inline and default-version document) is the listing; the documents of
attached AWS managed policies come from ``GetPolicy`` + ``GetPolicyVersion``, once per
policy per run. A policy document that cannot be read is recorded under that
attachment's ``_errors`` and the check of the principal becomes an ``error`` unless
another policy already grants full access.

Resource types
    ``aws.iam.group``  id = group ARN; the group, its inline and attached policies and
                       its member user names
    ``aws.iam.role``   id = role ARN; the role, its trust policy, inline and attached
                       policies, ``RoleLastUsed`` to the day
    (``aws.iam.user`` gets ``GroupList``, ``AttachedManagedPolicies`` and
    ``UserPolicyList`` from here.)

Inline policy documents are stored whole (they belong to the principal). Managed
policies are stored as name, ARN and ``FullAdminStatements`` — the statements of their
default version that allow every action on every resource — so a policy attached to
hundreds of roles is not copied hundreds of times.
"""

from __future__ import annotations

import fnmatch
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from botocore.exceptions import ClientError

from connectors.aws.common import (
    MISSING,
    actions,
    as_list,
    error_code,
    pages,
    paginate,
    read_partial,
)
from connectors.kit import ERRORS_KEY, EvidenceMissing, require, with_errors
from core.checks import CheckFunc, Verdict, check, failed, passed
from core.times import activity_time

GROUP = "aws.iam.group"
ROLE = "aws.iam.role"
USER = "aws.iam.user"

ACTIONS = actions(
    "iam:GetAccountAuthorizationDetails", "iam:GetPolicy", "iam:GetPolicyVersion",
    "organizations:DescribeOrganization", "organizations:ListAccounts",
)

_FILTER = ["User", "Group", "Role", "LocalManagedPolicy"]

# --- pure helpers --------------------------------------------------------------------


def policy_document(value: Any) -> dict[str, Any]:
    """A policy document as a dict (botocore decodes most; URL-encoded JSON otherwise)."""
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, str) and value:
        return json.loads(unquote(value))
    return {}


def full_admin_statements(document: Any) -> list[dict[str, Any]]:
    """Statements that ``Allow`` action ``*`` on resource ``*`` (conditions included)."""
    out = []
    for statement in as_list(policy_document(document).get("Statement")):
        if not isinstance(statement, Mapping) or statement.get("Effect") != "Allow":
            continue
        if "*" in as_list(statement.get("Action")) and "*" in as_list(statement.get("Resource")):
            out.append(dict(statement))
    return out


# --- get -----------------------------------------------------------------------------


@dataclass
class AuthorizationDetails:
    """The account's principals, by ARN, and its customer managed policy documents."""

    users: dict[str, dict[str, Any]] = field(default_factory=dict)
    groups: list[dict[str, Any]] = field(default_factory=list)
    roles: list[dict[str, Any]] = field(default_factory=list)
    local_policies: dict[str, dict[str, Any]] = field(default_factory=dict)


def get_authorization_details(client: Any) -> AuthorizationDetails:
    details = AuthorizationDetails()
    listing = pages(client, "get_account_authorization_details",
                    ("UserDetailList", "GroupDetailList", "RoleDetailList", "Policies"),
                    Filter=_FILTER)
    for page in listing:
        for user in page.get("UserDetailList") or []:
            details.users[user["Arn"]] = user
        details.groups.extend(page.get("GroupDetailList") or [])
        details.roles.extend(page.get("RoleDetailList") or [])
        for policy in page.get("Policies") or []:
            details.local_policies[policy["Arn"]] = policy
    return details


def get_managed_policy_document(client: Any, arn: str) -> dict[str, Any]:
    version = client.get_policy(PolicyArn=arn)["Policy"]["DefaultVersionId"]
    return client.get_policy_version(PolicyArn=arn, VersionId=version)["PolicyVersion"][
        "Document"
    ]


def get_organization(client: Any) -> dict[str, Any] | None:
    """The organisation the account belongs to, for judging role trusts: its id, its
    management account and, where this account may list them (management or delegated
    administrator), every member account id (``AccountIds`` None otherwise). None when
    the account is in no organisation."""
    try:
        organization = client.describe_organization()["Organization"]
    except ClientError as exc:
        if error_code(exc) == "AWSOrganizationsNotInUseException":
            return None
        raise
    try:
        ids: list[str] | None = sorted(
            a["Id"] for a in paginate(client, "list_accounts", "Accounts"))
    except ClientError as exc:
        if error_code(exc) not in ("AccessDeniedException", "AccessDenied"):
            raise
        ids = None  # a member account may not list its organisation
    return {"Id": organization.get("Id"), "MasterAccountId": organization.get("MasterAccountId"),
            "AccountIds": ids}


# --- transform -----------------------------------------------------------------------


class PolicyResolver:
    """Default-version documents of managed policies, each read at most once per unit."""

    def __init__(self, client: Any, local: Mapping[str, Mapping[str, Any]]) -> None:
        self._client = client
        self._local = local
        self._cache: dict[str, Any] = {}

    def _document(self, arn: str, errors: dict[str, str]) -> Any:
        if arn in self._cache:
            cached = self._cache[arn]
            if isinstance(cached, str):
                errors["Document"] = cached
                return MISSING
            return cached
        local = self._local.get(arn)
        if local is not None:
            versions = local.get("PolicyVersionList") or []
            default = next((v for v in versions if v.get("IsDefaultVersion")), None)
            if default is not None:
                self._cache[arn] = default.get("Document")
                return self._cache[arn]
        document = read_partial(errors, "Document", lambda: get_managed_policy_document(
            self._client, arn))
        self._cache[arn] = errors["Document"] if document is MISSING else document
        return document

    def attachment(self, attached: Mapping[str, Any]) -> dict[str, Any]:
        arn = attached["PolicyArn"]
        errors: dict[str, str] = {}
        entry: dict[str, Any] = {"PolicyName": attached.get("PolicyName"), "PolicyArn": arn}
        document = self._document(arn, errors)
        if document is not MISSING:
            entry["FullAdminStatements"] = full_admin_statements(document)
        return with_errors(entry, errors)


def inline_policies(policies: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    return [
        {"PolicyName": p.get("PolicyName"), "PolicyDocument": policy_document(
            p.get("PolicyDocument"))}
        for p in policies
    ]


def user_policies(
    details: AuthorizationDetails | None, arn: str, resolver: PolicyResolver | None
) -> dict[str, Any]:
    """The policy part of a user's payload (``_errors`` if the user was not listed)."""
    entry = details.users.get(arn) if details is not None else None
    if entry is None or resolver is None:
        return {ERRORS_KEY: {"Policies": "user not in GetAccountAuthorizationDetails"}}
    return {
        "GroupList": list(entry.get("GroupList") or []),
        "AttachedManagedPolicies": [
            resolver.attachment(a) for a in entry.get("AttachedManagedPolicies") or []
        ],
        "UserPolicyList": inline_policies(entry.get("UserPolicyList") or []),
    }


def group_payload(
    group: Mapping[str, Any], members: list[str], resolver: PolicyResolver
) -> dict[str, Any]:
    return {
        "GroupName": group.get("GroupName"),
        "GroupId": group.get("GroupId"),
        "Arn": group["Arn"],
        "Path": group.get("Path"),
        "CreateDate": group.get("CreateDate"),
        "Members": sorted(members),
        "AttachedManagedPolicies": [
            resolver.attachment(a) for a in group.get("AttachedManagedPolicies") or []
        ],
        "GroupPolicyList": inline_policies(group.get("GroupPolicyList") or []),
    }


def role_payload(role: Mapping[str, Any], resolver: PolicyResolver) -> dict[str, Any]:
    last_used = dict(role.get("RoleLastUsed") or {})
    if "LastUsedDate" in last_used:
        last_used["LastUsedDate"] = activity_time(last_used["LastUsedDate"])
    return {
        "RoleName": role.get("RoleName"),
        "RoleId": role.get("RoleId"),
        "Arn": role["Arn"],
        "Path": role.get("Path"),
        "CreateDate": role.get("CreateDate"),
        "MaxSessionDuration": role.get("MaxSessionDuration"),
        "PermissionsBoundary": role.get("PermissionsBoundary"),
        "AssumeRolePolicyDocument": policy_document(role.get("AssumeRolePolicyDocument")),
        "RoleLastUsed": last_used,
        "Tags": role.get("Tags") or [],
        "AttachedManagedPolicies": [
            resolver.attachment(a) for a in role.get("AttachedManagedPolicies") or []
        ],
        "RolePolicyList": inline_policies(role.get("RolePolicyList") or []),
    }


def group_members(details: AuthorizationDetails) -> dict[str, list[str]]:
    members: dict[str, list[str]] = {}
    for user in details.users.values():
        for group in user.get("GroupList") or []:
            members.setdefault(group, []).append(user["UserName"])
    return members


# --- checks --------------------------------------------------------------------------


def admin_verdict(
    payload: Mapping[str, Any],
    params: Mapping[str, Any],
    *,
    name_key: str,
    inline_key: str,
    kind: str,
) -> Verdict:
    """Shared by the user, group and role checks."""
    name = str(payload.get(name_key) or (payload.get("User") or {}).get(name_key) or "?")
    managed = require(payload, "AttachedManagedPolicies", label="Policies")
    inline = require(payload, inline_key, label="Policies")
    granting = [
        f"inline policy {p.get('PolicyName')}"
        for p in inline
        if full_admin_statements(p.get("PolicyDocument"))
    ]
    unknown = []
    for attached in managed:
        if "FullAdminStatements" not in attached:
            reason = (attached.get(ERRORS_KEY) or {}).get("Document", "missing")
            unknown.append(f"{attached.get('PolicyArn')} ({reason})")
        elif attached["FullAdminStatements"]:
            granting.append(f"managed policy {attached.get('PolicyName')}")
    if granting:
        allowed = [p for p in params["allowed_names"] if fnmatch.fnmatchcase(name, p)]
        if allowed:
            return passed(
                f"{kind} {name} has full administrator access ({', '.join(granting)}), "
                f"approved by parameter allowed_names ({allowed[0]})"
            )
        return failed(f"{kind} {name} has full administrator access (*:*) through "
                      + ", ".join(granting))
    if unknown:
        raise EvidenceMissing("could not read managed policies: " + "; ".join(unknown))
    return passed(f"No policy of {kind} {name} allows every action on every resource")


_ADMIN_RATIONALE = (
    "A policy allowing every action on every resource is unrestricted privileged access; "
    "it should be held only by approved, named break-glass or administration principals."
)
_ADMIN_PARAMS = {"allowed_names": []}


def _admin_check(kind: str) -> CheckFunc:
    """The full-admin check of one principal kind (``user``, ``group``, ``role``), whose
    evidence names it under ``<Kind>Name`` and holds its inline policies under
    ``<Kind>PolicyList``."""
    prefix = kind.capitalize()

    def no_full_admin_policy(payload: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
        return admin_verdict(payload, params, name_key=f"{prefix}Name",
                             inline_key=f"{prefix}PolicyList", kind=kind)

    no_full_admin_policy.__name__ = no_full_admin_policy.__qualname__ = (
        f"{kind}_no_full_admin_policy")
    return no_full_admin_policy


#: ``aws.iam.{user,group,role}_no_full_admin_policy``, the same check on each kind of
#: principal: kind → (resource type, remediation).
_ADMIN_CHECKS = {
    "user": (USER, "Replace the policy with least-privilege permissions; grant "
             "administration through a role assumed with MFA instead of a user."),
    "group": (GROUP, "Detach the policy from the group, or list the group in allowed_names "
              "once its membership is approved."),
    "role": (ROLE, "Scope the role's policies to what its users need, or list an approved "
             "administration role in allowed_names."),
}
for _kind, (_resource_type, _remediation) in _ADMIN_CHECKS.items():
    check(
        id=f"aws.iam.{_kind}_no_full_admin_policy",
        title=f"IAM {_kind}s have no policy granting *:* administrator access",
        severity="high",
        resource_type=_resource_type,
        rationale=_ADMIN_RATIONALE,
        remediation=_remediation,
        parameters=_ADMIN_PARAMS,
    )(_admin_check(_kind))


# --- third-party access: roles other accounts may assume ------------------------------------

#: Condition keys that restrict who may assume the role to the caller's own organisation
#: or named accounts (IAM global condition context keys).
_ORG_KEYS = ("aws:principalorgid", "aws:principalorgpaths", "aws:principalaccount")
_ACCOUNT_ARN = re.compile(r"^arn:aws[a-z-]*:(?:iam|sts)::(\d{12}):")
_ASSUME = {"sts:assumerole", "sts:*", "*"}


def _condition_keys(statement: Mapping[str, Any]) -> set[str]:
    """Lower-cased condition keys of a statement, whatever their operator."""
    keys: set[str] = set()
    for block in (statement.get("Condition") or {}).values():
        if isinstance(block, Mapping):
            keys.update(str(k).lower() for k in block)
    return keys


def _trusted_accounts(principal: Any) -> list[str]:
    """Account ids (or ``*``) named in a statement's ``AWS`` principal: an account id,
    an ``arn:aws:iam::ACCOUNT:root|user/…|role/…`` or an assumed-role session ARN."""
    if principal == "*":
        return ["*"]
    if not isinstance(principal, Mapping):
        return []
    out = []
    for value in as_list(principal.get("AWS")):
        text = str(value)
        if text == "*" or text.isdigit():
            out.append(text)
        elif m := _ACCOUNT_ARN.match(text):
            out.append(m.group(1))
        # else a unique id (AROA…/AIDA…): the principal was deleted, nobody can use it
    return out


def external_trust(payload: Mapping[str, Any], internal: set[str]) -> list[dict[str, Any]]:
    """Each trust statement letting an AWS principal outside ``internal`` assume the role:
    ``{"accounts", "external_id", "org_restricted"}``."""
    document = policy_document(require(payload, "AssumeRolePolicyDocument"))
    found = []
    for statement in as_list(document.get("Statement")):
        if not isinstance(statement, Mapping) or statement.get("Effect") != "Allow":
            continue
        actions = {str(a).lower() for a in as_list(statement.get("Action"))}
        if not actions & _ASSUME:
            continue  # sts:AssumeRoleWithSAML / WithWebIdentity / TagSession: not accounts
        accounts = [a for a in _trusted_accounts(statement.get("Principal"))
                    if a not in internal]
        if not accounts:
            continue
        keys = _condition_keys(statement)
        found.append({
            "accounts": accounts,
            "external_id": "sts:externalid" in keys,
            "org_restricted": any(k in keys for k in _ORG_KEYS),
        })
    return found


@check("aws.iam.role_third_party_external_id")
def role_third_party_external_id(
    payload: Mapping[str, Any], params: Mapping[str, Any]
) -> Verdict:
    arn = str(require(payload, "Arn"))
    m = _ACCOUNT_ARN.match(arn)
    own = {m.group(1)} if m else set()
    internal = own | {str(a) for a in params["internal_accounts"]}
    name = payload.get("RoleName") or arn
    trusts = external_trust(payload, internal)
    if trusts:
        # Accounts of the role's own organisation are not third parties.
        organization = require(payload, "Organization")
        if organization:
            internal |= {str(organization.get("MasterAccountId") or "")}
            internal |= {str(a) for a in organization.get("AccountIds") or []}
            trusts = external_trust(payload, internal)
    if not trusts:
        return passed(f"Role {name} is not assumable from AWS accounts outside "
                      f"{', '.join(sorted(internal)) or 'its own'} (services, federated "
                      "identity providers and internal accounts are not third parties here)")
    public = [t for t in trusts if "*" in t["accounts"] and not t["org_restricted"]]
    if public:
        return failed(f"Role {name} may be assumed by any AWS principal (Principal '*'"
                      + (" with only an external ID" if public[0]["external_id"] else "")
                      + ")")
    missing = sorted({a for t in trusts if not t["external_id"] and not t["org_restricted"]
                      for a in t["accounts"]})
    if missing:
        organization = payload.get("Organization") or {}
        unlisted = (f" (not listed in organisation {organization.get('Id')}: this account "
                    "cannot list its members; name them in internal_accounts)"
                    if organization and organization.get("AccountIds") is None else "")
        return failed(f"Role {name} may be assumed by external account(s) "
                      f"{', '.join(missing)} without an sts:ExternalId condition{unlisted}")
    accounts = sorted({a for t in trusts for a in t["accounts"]})
    return passed(f"Role {name} trusts external account(s) {', '.join(accounts)} only "
                  "under an sts:ExternalId or organisation condition")

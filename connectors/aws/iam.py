"""IAM: password policy, account summary, users, groups, roles and root, with checks.

One global unit per account (service ``iam``). The listings — ``ListUsers`` and
``GetAccountAuthorizationDetails`` (users, groups, roles, customer managed policies) —
are read first: if either fails the unit fails and nothing is yielded. Every other read
is partial: a failure is recorded under ``payload["_errors"][<key>]`` and the checks
needing that key raise.

Resource types
    ``aws.iam.password_policy``  id = account id; ``{"PasswordPolicy": {...} | null}``
    ``aws.iam.account``          id = account id; ``{"SummaryMap": {...}}``
    ``aws.iam.user``             id = user ARN; ``User`` (from ListUsers),
                                 ``LoginProfile`` (null = no console password),
                                 ``MFADevices``, ``AccessKeys`` (each with
                                 ``AccessKeyLastUsed``), ``GroupList``,
                                 ``AttachedManagedPolicies``, ``UserPolicyList``
    ``aws.iam.group``, ``aws.iam.role``   see :mod:`connectors.aws.iam_principals`
    ``aws.iam.root_user``                 see :mod:`connectors.aws.iam_root`

Last-used timestamps (``PasswordLastUsed``, ``AccessKeyLastUsed.LastUsedDate``) are
kept at day precision: AWS moves them on every use, and to the second they would store
a new evidence version on every run for every active credential.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from connectors.aws import iam_principals, iam_root
from connectors.aws.common import MISSING, actions, paginate, read_partial
from connectors.aws.iam_principals import PolicyResolver, user_policies
from connectors.aws.session import Account
from connectors.aws.units import ReaderSpec
from connectors.cloudshared import older_than
from connectors.kit import ERRORS_KEY, GLOBAL, EvidenceMissing, require, with_errors
from core.checks import CheckFunc, Verdict, check, failed, not_applicable, passed
from core.records import Evidence
from core.times import activity_time, days_since

SERVICE = "iam"
PASSWORD_POLICY = "aws.iam.password_policy"  # noqa: S105 - a resource type
ACCOUNT = "aws.iam.account"
USER = "aws.iam.user"

#: API operation → IAM action it needs (see docs/permissions/aws.json).
ACTIONS = {
    **actions(
        "iam:ListUsers", "iam:GetAccountPasswordPolicy", "iam:GetAccountSummary",
        "iam:GetLoginProfile", "iam:ListMFADevices", "iam:ListAccessKeys",
        "iam:GetAccessKeyLastUsed",
    ),
    **iam_principals.ACTIONS,
    **iam_root.ACTIONS,
}

# --- get -------------------------------------------------------------------------


def get_users(client: Any) -> list[dict[str, Any]]:
    return list(paginate(client, "list_users", "Users"))


def get_password_policy(client: Any) -> dict[str, Any] | None:
    """The policy, or None when the account has none (``NoSuchEntity``)."""
    return client.get_account_password_policy()["PasswordPolicy"]


def get_account_summary(client: Any) -> dict[str, Any]:
    return client.get_account_summary()["SummaryMap"]


def get_login_profile(client: Any, user_name: str) -> dict[str, Any]:
    return client.get_login_profile(UserName=user_name)["LoginProfile"]


def get_mfa_devices(client: Any, user_name: str) -> list[dict[str, Any]]:
    return list(paginate(client, "list_mfa_devices", "MFADevices", UserName=user_name))


def get_access_keys(client: Any, user_name: str) -> list[dict[str, Any]]:
    return list(paginate(client, "list_access_keys", "AccessKeyMetadata", UserName=user_name))


def get_access_key_last_used(client: Any, access_key_id: str) -> dict[str, Any]:
    return client.get_access_key_last_used(AccessKeyId=access_key_id)["AccessKeyLastUsed"]


# --- transform ---------------------------------------------------------------------


def transform_user(user: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(user)
    if "PasswordLastUsed" in out:
        out["PasswordLastUsed"] = activity_time(out["PasswordLastUsed"])
    return out


def transform_last_used(last_used: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(last_used)
    if "LastUsedDate" in out:
        out["LastUsedDate"] = activity_time(out["LastUsedDate"])
    return out


def user_payload(client: Any, user: Mapping[str, Any]) -> dict[str, Any]:
    name = user["UserName"]
    errors: dict[str, str] = {}
    payload: dict[str, Any] = {"User": transform_user(user)}
    profile = read_partial(
        errors, "LoginProfile", lambda: get_login_profile(client, name), absent=("NoSuchEntity",)
    )
    if profile is not MISSING:
        payload["LoginProfile"] = profile
    devices = read_partial(errors, "MFADevices", lambda: get_mfa_devices(client, name))
    if devices is not MISSING:
        payload["MFADevices"] = devices
    keys = read_partial(errors, "AccessKeys", lambda: get_access_keys(client, name))
    if keys is not MISSING:
        payload["AccessKeys"] = [access_key_entry(client, key) for key in keys]
    return with_errors(payload, errors)


def access_key_entry(client: Any, key: Mapping[str, Any]) -> dict[str, Any]:
    errors: dict[str, str] = {}
    entry = dict(key)
    last_used = read_partial(
        errors, "AccessKeyLastUsed", lambda: get_access_key_last_used(client, key["AccessKeyId"])
    )
    if last_used is not MISSING:
        entry["AccessKeyLastUsed"] = transform_last_used(last_used or {})
    return with_errors(entry, errors)


# --- read (one unit) -----------------------------------------------------------------


def read(account: Account, region: str = GLOBAL) -> Iterator[Evidence]:
    client = account.client("iam")
    # the listings: a failure here fails the unit before anything is yielded
    users = get_users(client)
    details = iam_principals.get_authorization_details(client)
    resolver = PolicyResolver(client, details.local_policies)
    aid = account.account_id

    errors: dict[str, str] = {}
    policy = read_partial(
        errors, "PasswordPolicy", lambda: get_password_policy(client), absent=("NoSuchEntity",)
    )
    payload = {} if policy is MISSING else {"PasswordPolicy": policy}
    yield account.evidence(PASSWORD_POLICY, aid, GLOBAL, with_errors(payload, errors))

    errors = {}
    summary = read_partial(errors, "SummaryMap", lambda: get_account_summary(client))
    payload = {} if summary is MISSING else {"SummaryMap": summary}
    yield account.evidence(ACCOUNT, aid, GLOBAL, with_errors(payload, errors))

    root = iam_root.root_payload(client, account, None if summary is MISSING else summary)
    yield account.evidence(iam_root.ROOT_USER, root["Arn"], GLOBAL, root)

    for user in users:
        payload = user_payload(client, user)
        extra = user_policies(details, user["Arn"], resolver)
        merged_errors = {**payload.get(ERRORS_KEY, {}), **extra.pop(ERRORS_KEY, {})}
        payload.update(extra)
        payload.pop(ERRORS_KEY, None)
        yield account.evidence(USER, user["Arn"], GLOBAL, with_errors(payload, merged_errors))

    members = iam_principals.group_members(details)
    for group in details.groups:
        payload = iam_principals.group_payload(
            group, members.get(group.get("GroupName", ""), []), resolver
        )
        yield account.evidence(iam_principals.GROUP, group["Arn"], GLOBAL, payload)
    org_errors: dict[str, str] = {}
    organization = read_partial(org_errors, "Organization", lambda: (
        iam_principals.get_organization(account.client("organizations")))
    ) if details.roles else MISSING
    for role in details.roles:
        payload = iam_principals.role_payload(role, resolver)
        if organization is not MISSING:
            payload["Organization"] = organization
        yield account.evidence(iam_principals.ROLE, role["Arn"], GLOBAL,
                               with_errors(payload, org_errors))


READERS = (ReaderSpec(SERVICE, read, regional=False),)


# --- checks --------------------------------------------------------------------------


def _policy(payload: Mapping[str, Any]) -> Mapping[str, Any] | None:
    return require(payload, "PasswordPolicy")


_NO_POLICY = "No account password policy is set (AWS defaults: 8 characters, no reuse limit)"


def _judges_policy(judge: Callable[[Mapping[str, Any], Mapping[str, Any]], Verdict]) -> CheckFunc:
    """A check of a password policy setting: it fails when the account has no password
    policy at all, and otherwise is ``judge(policy, params)``."""

    @functools.wraps(judge)
    def on_payload(payload: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
        policy = _policy(payload)
        if policy is None:
            return failed(_NO_POLICY)
        return judge(policy, params)

    return on_payload


@check("aws.iam.password_policy_min_length")
@_judges_policy
def password_policy_min_length(policy: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    want = params["min_length"]
    length = policy.get("MinimumPasswordLength")
    if length is None:
        raise EvidenceMissing("PasswordPolicy.MinimumPasswordLength is missing")
    if length >= want:
        return passed(f"Minimum password length is {length} (required: {want})")
    return failed(f"Minimum password length is {length}, below the required {want}")


@check("aws.iam.password_policy_reuse")
@_judges_policy
def password_policy_reuse(policy: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    want = params["min_reuse_prevention"]
    remembered = policy.get("PasswordReusePrevention")  # absent = reuse allowed
    if remembered is None:
        return failed("Password reuse prevention is not set")
    if remembered >= want:
        return passed(f"The last {remembered} passwords cannot be reused (required: {want})")
    return failed(f"Only the last {remembered} passwords are remembered (required: {want})")


_COMPLEXITY = {
    "require_symbols": ("RequireSymbols", "symbols"),
    "require_numbers": ("RequireNumbers", "numbers"),
    "require_uppercase": ("RequireUppercaseCharacters", "uppercase letters"),
    "require_lowercase": ("RequireLowercaseCharacters", "lowercase letters"),
}


@check("aws.iam.password_policy_complexity")
@_judges_policy
def password_policy_complexity(policy: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    missing = [
        label
        for param, (key, label) in _COMPLEXITY.items()
        if params[param] and not policy.get(key, False)
    ]
    if missing:
        return failed("Password policy does not require " + ", ".join(missing))
    wanted = [label for param, (_, label) in _COMPLEXITY.items() if params[param]]
    if not wanted:
        return passed("No character class is required by the check parameters")
    return passed("Password policy requires " + ", ".join(wanted))


@check("aws.iam.password_policy_max_age")
def password_policy_max_age(payload: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    """``max_age_days`` 0: expiry is not required. Otherwise the policy must exist and
    set ``MaxPasswordAge`` (absent from the policy = passwords never expire) at most it."""
    policy = _policy(payload)
    want = params["max_age_days"]
    age = (policy or {}).get("MaxPasswordAge")
    if not want:
        return not_applicable("Password expiry is not required (max_age_days = 0); "
                              + (f"passwords expire after {age} days" if age else
                                 "passwords do not expire"))
    if policy is None:
        return failed(_NO_POLICY + f"; passwords never expire (required: {want} days)")
    if not age:
        return failed(f"Passwords never expire (required: at most {want} days)")
    if age > want:
        return failed(f"Passwords expire after {age} days (required: at most {want})")
    return passed(f"Passwords expire after {age} days (required: at most {want})")


@check("aws.iam.user_console_mfa")
def user_console_mfa(payload: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    profile = require(payload, "LoginProfile")
    if profile is None:
        return not_applicable("User has no console password")
    devices = require(payload, "MFADevices")
    if devices:
        serials = ", ".join(d.get("SerialNumber", "?") for d in devices)
        return passed(f"Console user has MFA: {serials}")
    return failed("Console user has no MFA device")


def _active_keys(payload: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [k for k in require(payload, "AccessKeys") if k.get("Status") == "Active"]


@check("aws.iam.access_key_rotated")
def access_key_rotated(payload: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    keys = _active_keys(payload)
    if not keys:
        return not_applicable("User has no active access key")
    limit = params["max_age_days"]
    old = older_than(
        keys, limit, lambda key: key["CreateDate"], lambda key: key.get("AccessKeyId", "?")
    )
    if old:
        return failed(f"Active access keys older than {limit} days: " + ", ".join(old))
    return passed(f"Active access keys are at most {limit} days old: {len(keys)} checked")


@check("aws.iam.credentials_unused")
def credentials_unused(payload: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    """A credential is unused when its last use — or, never used, its creation — is more
    than ``max_unused_days`` ago. Only console passwords and active keys count."""
    limit = params["max_unused_days"]
    profile = require(payload, "LoginProfile")
    keys = _active_keys(payload)
    if profile is None and not keys:
        return not_applicable("User has no console password and no active access key")
    stale: list[str] = []
    if profile is not None:
        last = require(payload, "User").get("PasswordLastUsed")
        since = days_since(last or profile["CreateDate"])
        if since > limit:
            what = "last used" if last else "never used, created"
            stale.append(f"console password ({what} {int(since)} days ago)")
    for key in keys:
        last_used = key.get("AccessKeyLastUsed")
        if last_used is None:
            reason = (key.get(ERRORS_KEY) or {}).get("AccessKeyLastUsed", "missing")
            raise EvidenceMissing(
                f"last use of access key {key.get('AccessKeyId', '?')} could not be read: "
                f"{reason}"
            )
        last = last_used.get("LastUsedDate")
        since = days_since(last or key["CreateDate"])
        if since > limit:
            what = "last used" if last else "never used, created"
            stale.append(f"access key {key.get('AccessKeyId', '?')} ({what} {int(since)} days ago)")
    if stale:
        return failed(f"Credentials unused for more than {limit} days: " + "; ".join(stale))
    return passed(f"Every credential was used (or created) within {limit} days")


@check("aws.iam.root_access_keys")
def root_access_keys(payload: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    summary = require(payload, "SummaryMap")
    if "AccountAccessKeysPresent" not in summary:
        raise EvidenceMissing("SummaryMap.AccountAccessKeysPresent is missing")
    if summary["AccountAccessKeysPresent"]:
        return failed("The root user has access keys")
    return passed("The root user has no access keys")

"""AWS Organizations: is each account governed, and are environments in separate accounts.

One global unit per account (service ``organizations``). ``DescribeOrganization`` says
whether the account belongs to an organisation and which is its management account.

* Not in an organisation (``AWSOrganizationsNotInUseException``): one
  ``aws.organizations.organization`` evidence (id = account id) ``{"Organization":
  null}`` and one ``aws.organizations.account`` evidence for the account itself
  (id = account id) ``{"Id", "Organization": null}`` — a standalone account is governed
  by no organisation.
* The management account: ``ListAccounts``, and for each account ``ListParents`` and
  ``ListTagsForResource``. One ``aws.organizations.account`` evidence per account
  (id = account ARN) ``{"Id", "Name", "Status", "IsManagementAccount", "Tags": {key:
  value}, "Parents": [{"Id", "Type"}]}`` and one ``aws.organizations.organization``
  (id = organisation ARN) ``{"Organization": {"Id", "Arn", "MasterAccountId"},
  "Accounts": [{"Id", "Name", "Environment"}]}`` for the separation of environments.
  Account e-mail addresses are not kept.
* A member account reads nothing more: listing the organisation is the management
  account's (its units report ``ok`` with no evidence; organisation mode reads the
  management account too unless ``include_management_account = false``).

Tag keys are matched without regard to case (``Owner`` and ``owner`` both count).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from botocore.exceptions import ClientError

from connectors.aws.common import actions, error_code, paginate
from connectors.aws.session import Account
from connectors.aws.units import ReaderSpec
from connectors.kit import GLOBAL, require
from core.checks import Verdict, check, failed, not_applicable, passed
from core.records import Evidence

SERVICE = "organizations"
ACCOUNT = "aws.organizations.account"
ORGANIZATION = "aws.organizations.organization"

ACTIONS = actions(
    "organizations:DescribeOrganization", "organizations:ListAccounts",
    "organizations:ListParents", "organizations:ListTagsForResource",
)

NOT_IN_USE = "AWSOrganizationsNotInUseException"


def _tags(client: Any, account_id: str) -> dict[str, str]:
    return {t["Key"]: t.get("Value", "") for t in paginate(
        client, "list_tags_for_resource", "Tags", ResourceId=account_id)}


def _tag(tags: Mapping[str, str], key: str) -> str | None:
    wanted = key.lower()
    return next((v for k, v in tags.items() if k.lower() == wanted), None)


def read(account: Account, region: str = GLOBAL) -> Iterator[Evidence]:
    client = account.client("organizations")
    try:
        organization = client.describe_organization()["Organization"]
    except ClientError as exc:
        if error_code(exc) != NOT_IN_USE:
            raise
        aid = account.account_id
        yield account.evidence(ORGANIZATION, aid, GLOBAL, {"Organization": None})
        yield account.evidence(ACCOUNT, aid, GLOBAL, {"Id": aid, "Organization": None})
        return
    management = organization.get("MasterAccountId")
    if management != account.account_id:
        return
    summary = []
    for member in paginate(client, "list_accounts", "Accounts"):
        aid = member["Id"]
        tags = _tags(client, aid)
        parents = [{"Id": p.get("Id"), "Type": p.get("Type")}
                   for p in paginate(client, "list_parents", "Parents", ChildId=aid)]
        payload = {
            "Id": aid, "Name": member.get("Name"),
            "Status": member.get("State") or member.get("Status"),
            "IsManagementAccount": aid == management, "Tags": tags, "Parents": parents,
        }
        yield account.evidence(ACCOUNT, member.get("Arn") or aid, GLOBAL, payload)
        summary.append({"Id": aid, "Name": member.get("Name"), "Status": payload["Status"],
                        "Tags": tags})
    org = {k: organization.get(k) for k in ("Id", "Arn", "MasterAccountId")}
    yield account.evidence(ORGANIZATION, organization.get("Arn") or management, GLOBAL,
                           {"Organization": org, "Accounts": summary})


READERS = (ReaderSpec(SERVICE, read, regional=False),)


@check("aws.organizations.account_governed")
def account_governed(payload: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    if "Organization" in payload and payload["Organization"] is None:
        return failed(f"Account {payload.get('Id')} is not part of an AWS Organization: no "
                      "organisation governs it")
    status = str(payload.get("Status") or "ACTIVE")
    if status not in ("ACTIVE",):
        return not_applicable(f"Account is {status}")
    tags = require(payload, "Tags")
    parents = require(payload, "Parents")
    problems = [f"no {key} tag" for key in params["required_tags"] if not _tag(tags, key)]
    if not payload.get("IsManagementAccount") and not any(
            p.get("Type") == "ORGANIZATIONAL_UNIT" for p in parents):
        problems.append("directly under the organisation root, in no OU")
    name = payload.get("Name") or payload.get("Id")
    if problems:
        return failed(f"Account {name}: " + "; ".join(problems))
    where = "the management account" if payload.get("IsManagementAccount") else (
        "in OU " + ", ".join(str(p.get("Id")) for p in parents))
    return passed(f"Account {name} is tagged ({', '.join(params['required_tags'])}) and "
                  f"{where}")


def environment_kind(value: str | None, params: Mapping[str, Any]) -> str | None:
    """``production``, ``non-production`` or None (no or unknown environment tag)."""
    if not value:
        return None
    words = {w.strip().lower() for w in value.replace(";", ",").split(",") if w.strip()}
    kinds = set()
    for word in words:
        if word in params["production_values"]:
            kinds.add("production")
        elif word in params["non_production_values"]:
            kinds.add("non-production")
        else:
            return None
    return kinds.pop() if len(kinds) == 1 else "mixed"


@check("aws.organizations.environments_separated")
def environments_separated(payload: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    if require(payload, "Organization") is None:
        return failed("The account is not part of an AWS Organization, so no separate "
                      "accounts for production and non-production can be shown")
    accounts: Sequence[Mapping[str, Any]] = [
        a for a in require(payload, "Accounts") if (a.get("Status") or "ACTIVE") == "ACTIVE"]
    kinds: dict[str, list[str]] = {}
    for acc in accounts:
        value = _tag(acc.get("Tags") or {}, params["environment_tag"])
        kind = environment_kind(value, params)
        label = f"{acc.get('Name') or acc.get('Id')}"
        kinds.setdefault(kind or ("unknown" if value else "untagged"), []).append(
            label + (f" ({value})" if value and kind in (None, "mixed") else ""))
    problems = []
    if kinds.get("mixed"):
        problems.append("accounts serving both production and non-production: "
                        + ", ".join(kinds["mixed"]))
    for missing in ("untagged", "unknown"):
        if kinds.get(missing):
            problems.append(f"accounts with {'no' if missing == 'untagged' else 'an unknown'}"
                            f" {params['environment_tag']} tag: " + ", ".join(kinds[missing]))
    for needed in ("production", "non-production"):
        if not kinds.get(needed):
            problems.append(f"no {needed} account")
    if problems:
        return failed("; ".join(problems))
    return passed(f"{len(kinds['production'])} production and "
                  f"{len(kinds['non-production'])} non-production account(s), none mixed")

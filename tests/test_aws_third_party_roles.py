"""``aws.iam.role_third_party_external_id`` (A.5.19, supplier access): roles other AWS
accounts may assume.

Trust policies are planted in moto as IAM stores them and read through the real run
engine (``collector.runner.drive``), so the exact fail set is what ``annexa collect``
would store. The organisation a member account belongs to is read with
``organizations:DescribeOrganization`` / ``ListAccounts``; a member account's
``AccessDenied`` on ``ListAccounts`` is answered with botocore's ``Stubber`` (moto
lets every account list the organisation, real AWS does not). Principal forms follow
the IAM JSON policy reference ("AWS JSON policy elements: Principal"): account id,
account root ARN, role/user ARN, ``*``, ``{"AWS": "*"}``, Service and Federated
principals, and a deleted principal's unique id.
"""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

import connectors.aws  # noqa: F401 - registers the checks
from connectors.aws.iam_principals import get_organization
from connectors.kit import EvidenceMissing
from core.checks import REGISTRY
from tests.engine_run import run_engine

CHECK = "aws.iam.role_third_party_external_id"
OWN = "123456789012"
VENDOR = "444455556666"
SISTER = "111122223333"  # an account of our own, named in internal_accounts


def statement(principal: Any, *, action: str = "sts:AssumeRole",
              condition: dict[str, Any] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"Effect": "Allow", "Principal": principal, "Action": action}
    if condition:
        out["Condition"] = condition
    return out


EXT_ID = {"StringEquals": {"sts:ExternalId": "issued-by-vendor"}}

#: role name → (trust statements, expected verdict with internal_accounts=[SISTER]).
ROLES: dict[str, tuple[list[dict[str, Any]], str]] = {
    "ec2-service": ([statement({"Service": "ec2.amazonaws.com"})], "pass"),
    "vendor-no-id": ([statement({"AWS": f"arn:aws:iam::{VENDOR}:root"})], "fail"),
    "vendor-with-id": ([statement({"AWS": f"arn:aws:iam::{VENDOR}:root"},
                                  condition=EXT_ID)], "pass"),
    "vendor-bare-id": ([statement({"AWS": VENDOR})], "fail"),
    "vendor-role-arn": ([statement({"AWS": f"arn:aws:iam::{VENDOR}:role/poller"},
                                   condition={"StringLike": {"sts:ExternalId": "x-*"}})],
                        "pass"),
    "anyone": ([statement({"AWS": "*"})], "fail"),
    "anyone-with-id": ([statement({"AWS": "*"}, condition=EXT_ID)], "fail"),
    "anyone-in-org": ([statement({"AWS": "*"}, condition={
        "StringEquals": {"aws:PrincipalOrgID": "o-abcdef1234"}})], "pass"),
    "sister-account": ([statement({"AWS": f"arn:aws:iam::{SISTER}:role/deployer"})], "pass"),
    "own-account": ([statement({"AWS": f"arn:aws:iam::{OWN}:root"})], "pass"),
    "saml": ([statement({"Federated": f"arn:aws:iam::{OWN}:saml-provider/idp"},
                        action="sts:AssumeRoleWithSAML")], "pass"),
    "mixed-list": ([statement({"AWS": [f"arn:aws:iam::{OWN}:root", VENDOR]})], "fail"),
    "vendor-denied": ([{**statement({"AWS": VENDOR}), "Effect": "Deny"},
                       statement({"Service": "lambda.amazonaws.com"})], "pass"),
}


def test_exact_fail_set_through_the_run_engine(aws_env: str) -> None:
    iam = boto3.client("iam", region_name="us-east-1")
    arns = {}
    for name, (statements, _) in ROLES.items():
        document = {"Version": "2012-10-17", "Statement": statements}
        arns[name] = iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(
            document))["Role"]["Arn"]
    run = run_engine("aws", {"regions": ["us-east-1"], "services": ["iam"]},
                     checks={CHECK: {"internal_accounts": [SISTER]}})
    assert run.status == "succeeded", run.errors
    expected_fail = {(CHECK, arns[n]) for n, (_, v) in ROLES.items() if v == "fail"}
    expected_pass = {(CHECK, arns[n]) for n, (_, v) in ROLES.items() if v == "pass"}
    assert run.ids("fail", CHECK) == expected_fail
    assert run.ids("pass", CHECK) == expected_pass
    assert run.ids("error", CHECK) == set()
    finding = run.one(CHECK, arns["vendor-no-id"])
    assert f"external account(s) {VENDOR} without an sts:ExternalId" in finding.message
    assert "any AWS principal" in run.one(CHECK, arns["anyone-with-id"]).message
    # moto: no organisation → the stored role says so (None), not "unknown".
    assert run.payload("aws.iam.role", arns["vendor-no-id"])["Organization"] is None
    assert tuple(finding.controls) == ("A.5.19",)  # from the shipped mapping


def role(statements: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {"Arn": f"arn:aws:iam::{OWN}:role/r", "RoleName": "r",
            "AssumeRolePolicyDocument": {"Version": "2012-10-17", "Statement": statements},
            **extra}


def verdict(payload: dict[str, Any], **params: Any) -> tuple[str, str]:
    spec = REGISTRY.get(CHECK)
    v = spec.func(payload, spec.params_with(params or None))
    return v.status, v.message


def test_organisation_members_are_not_third_parties() -> None:
    trust = [statement({"AWS": f"arn:aws:iam::{SISTER}:root"})]
    listed = {"Id": "o-1", "MasterAccountId": "999999999999", "AccountIds": [OWN, SISTER]}
    assert verdict(role(trust, Organization=listed))[0] == "pass"
    management_only = {"Id": "o-1", "MasterAccountId": SISTER, "AccountIds": None}
    assert verdict(role(trust, Organization=management_only))[0] == "pass"
    unlisted = {"Id": "o-1", "MasterAccountId": "999999999999", "AccountIds": None}
    status, message = verdict(role(trust, Organization=unlisted))
    assert status == "fail" and "cannot list its members" in message
    assert verdict(role(trust, Organization=None))[0] == "fail"
    assert verdict(role(trust, Organization=None), internal_accounts=[SISTER])[0] == "pass"


def test_unreadable_organisation_is_an_error_only_when_it_decides() -> None:
    unread = {"_errors": {"Organization": "AccessDeniedException"}}
    with pytest.raises(EvidenceMissing):
        verdict(role([statement({"AWS": VENDOR})], **unread))
    # No outside account trusted: the organisation does not matter.
    assert verdict(role([statement({"Service": "ec2.amazonaws.com"})], **unread))[0] == "pass"


def test_deleted_principals_and_other_actions() -> None:
    # A deleted principal shows as its unique id: nobody can use it.
    assert verdict(role([statement({"AWS": "AROAEXAMPLEDELETED01"})],
                        Organization=None))[0] == "pass"
    # Web identity is a federated trust, not an account's.
    assert verdict(role([statement({"Federated": "cognito-identity.amazonaws.com"},
                                   action="sts:AssumeRoleWithWebIdentity")],
                        Organization=None))[0] == "pass"
    # A single statement string (not a list) and "sts:*".
    doc = {"Statement": statement({"AWS": VENDOR}, action="sts:*")}
    payload = {"Arn": f"arn:aws:iam::{OWN}:role/r", "AssumeRolePolicyDocument": doc,
               "Organization": None}
    assert verdict(payload)[0] == "fail"


def test_member_account_cannot_list_the_organisation(aws_offline_env: None) -> None:
    client = boto3.client("organizations", region_name="us-east-1")
    with Stubber(client) as stub:
        stub.add_response("describe_organization", {"Organization": {
            "Id": "o-abcdef1234", "MasterAccountId": SISTER}})
        stub.add_client_error("list_accounts", "AccessDeniedException", http_status_code=400)
        assert get_organization(client) == {
            "Id": "o-abcdef1234", "MasterAccountId": SISTER, "AccountIds": None}
    with Stubber(client) as stub:
        stub.add_client_error("describe_organization", "AWSOrganizationsNotInUseException")
        assert get_organization(client) is None
    with Stubber(client) as stub:
        stub.add_response("describe_organization", {"Organization": {
            "Id": "o-abcdef1234", "MasterAccountId": OWN}})
        stub.add_response("list_accounts", {"Accounts": [{"Id": SISTER}, {"Id": OWN}],
                                            "NextToken": "n"})
        stub.add_response("list_accounts", {"Accounts": [{"Id": VENDOR}]})
        assert get_organization(client)["AccountIds"] == sorted([SISTER, OWN, VENDOR])

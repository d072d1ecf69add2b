"""S3 Control: the account-level S3 public access block, with its check.

One global unit per account (service ``s3control``), a single call: if it fails the
unit fails. Resource type ``aws.s3control.account_public_access_block`` (id = account
id): ``{"PublicAccessBlockConfiguration": {...} | null}`` (null = not configured).

S3 Control puts the account id in the endpoint host (``<account>.s3-control.…``).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from botocore.exceptions import ClientError

from connectors.aws.common import error_code
from connectors.aws.s3 import public_access_block_verdict
from connectors.aws.session import Account
from connectors.aws.units import ReaderSpec
from connectors.kit import GLOBAL, require
from core.checks import Verdict, check
from core.records import Evidence

SERVICE = "s3control"
ACCOUNT_PUBLIC_ACCESS_BLOCK = "aws.s3control.account_public_access_block"

ACTIONS: dict[str, str | None] = {
    "s3control:GetPublicAccessBlock": "s3:GetAccountPublicAccessBlock",
}


def get_account_public_access_block(client: Any, account_id: str) -> dict[str, Any] | None:
    """The configuration, or None when the account has none."""
    try:
        answer = client.get_public_access_block(AccountId=account_id)
    except ClientError as exc:
        if error_code(exc) == "NoSuchPublicAccessBlockConfiguration":
            return None
        raise
    return answer["PublicAccessBlockConfiguration"]


def read(account: Account, region: str = GLOBAL) -> Iterator[Evidence]:
    config = get_account_public_access_block(account.client("s3control"), account.account_id)
    yield account.evidence(
        ACCOUNT_PUBLIC_ACCESS_BLOCK,
        account.account_id,
        GLOBAL,
        {"PublicAccessBlockConfiguration": config},
    )


READERS = (ReaderSpec(SERVICE, read, regional=False),)


@check("aws.s3control.account_public_access_block")
def account_public_access_block(payload: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    return public_access_block_verdict(require(payload, "PublicAccessBlockConfiguration"),
                                       "account")

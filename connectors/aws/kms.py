"""KMS keys and the automatic rotation of customer managed keys.

Regional units (service ``kms``): ``ListKeys`` page by page; for each key
``DescribeKey`` and, for enabled customer managed symmetric keys with AWS-generated
material, ``GetKeyRotationStatus`` (other keys cannot be rotated automatically or are
rotated by AWS). Both per-key reads are partial.

Resource type ``aws.kms.key`` (id = key ARN):
``{"KeyMetadata": {...}, "KeyRotationEnabled": bool, "RotationPeriodInDays": n}``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from connectors.aws.common import MISSING, actions, paginate, read_partial
from connectors.aws.session import Account
from connectors.aws.units import ReaderSpec
from connectors.kit import require, with_errors
from core.checks import Verdict, check, failed, not_applicable, passed
from core.records import Evidence

SERVICE = "kms"
KEY = "aws.kms.key"

ACTIONS = actions("kms:ListKeys", "kms:DescribeKey", "kms:GetKeyRotationStatus")


def rotatable(metadata: Mapping[str, Any]) -> str | None:
    """None if the key's rotation is the customer's to turn on, else why not."""
    if metadata.get("KeyManager") != "CUSTOMER":
        return "AWS managed keys are rotated by AWS every year"
    if metadata.get("KeyState") != "Enabled":
        return f"key is {metadata.get('KeyState')}"
    if metadata.get("KeySpec", metadata.get("CustomerMasterKeySpec")) != "SYMMETRIC_DEFAULT":
        return "only symmetric encryption keys rotate automatically"
    if metadata.get("Origin") != "AWS_KMS":
        return f"key material from {metadata.get('Origin')} cannot rotate automatically"
    return None


def key_payload(client: Any, key_id: str) -> dict[str, Any]:
    errors: dict[str, str] = {}
    payload: dict[str, Any] = {}
    metadata = read_partial(errors, "KeyMetadata",
                            lambda: client.describe_key(KeyId=key_id)["KeyMetadata"])
    if metadata is MISSING:
        return with_errors(payload, errors)
    payload["KeyMetadata"] = metadata
    if rotatable(metadata) is None:
        status = read_partial(errors, "KeyRotationEnabled",
                              lambda: client.get_key_rotation_status(KeyId=key_id))
        if status is not MISSING:
            payload["KeyRotationEnabled"] = status.get("KeyRotationEnabled")
            if "RotationPeriodInDays" in status:
                payload["RotationPeriodInDays"] = status["RotationPeriodInDays"]
    return with_errors(payload, errors)


def read(account: Account, region: str) -> Iterator[Evidence]:
    client = account.client("kms", region)
    for key in paginate(client, "list_keys", "Keys", PaginationConfig={"PageSize": 1000}):
        arn = key.get("KeyArn") or account.arn("kms", region, f"key/{key['KeyId']}")
        yield account.evidence(KEY, arn, region, key_payload(client, key["KeyId"]))


READERS = (ReaderSpec(SERVICE, read, regional=True),)


@check("aws.kms.key_rotation")
def key_rotation(payload: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    reason = rotatable(require(payload, "KeyMetadata"))
    if reason is not None:
        return not_applicable(reason)
    if require(payload, "KeyRotationEnabled"):
        period = payload.get("RotationPeriodInDays")
        return passed("Automatic rotation is enabled" + (f" every {period} days" if period
                                                          else ""))
    return failed("Automatic rotation is disabled")

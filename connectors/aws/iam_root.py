"""The root user: MFA (and whether it is a hardware device) and recent use.

Read inside the ``iam`` unit (see :mod:`connectors.aws.iam`), every part partial:

* the IAM credential report (``GenerateCredentialReport`` until it is ``COMPLETE``,
  polled for at most ~15 s, then ``GetCredentialReport``): its ``<root_account>`` row,
  last-use dates kept to the day, and the per-use region/service columns dropped (they
  move with every use);
* ``ListVirtualMFADevices(AssignmentStatus=Assigned)``: only the serial numbers of
  virtual devices assigned to the root user are kept (a virtual device is a phone app,
  not a hardware key);
* ``AccountMFAEnabled`` from the account summary (read by the caller).

Resource type ``aws.iam.root_user`` (id = ``arn:<partition>:iam::<account>:root``)::

    {"Arn", "CredentialReportRow": {...} | null,   # null: the report has no root row
     "RootVirtualMFADevices": [serial, ...], "AccountMFAEnabled": 0 | 1}

Real AWS always puts a ``<root_account>`` row in the report; moto's report has none (so
"root MFA" falls back to ``AccountMFAEnabled`` and "recent root use" is an ``error``
there, never a pass). moto also wraps the CSV in a Python bytes literal (``b'...'``),
which is unwrapped.
"""

from __future__ import annotations

import ast
import csv
import io
import time
from collections.abc import Mapping
from typing import Any

from connectors.aws.common import MISSING, actions, paginate, read_partial
from connectors.kit import EvidenceMissing, require, with_errors
from core.checks import Verdict, check, failed, passed
from core.times import activity_time, days_since

ROOT_USER = "aws.iam.root_user"
ROOT_ROW = "<root_account>"

ACTIONS = actions(
    "iam:GenerateCredentialReport", "iam:GetCredentialReport", "iam:ListVirtualMFADevices",
)

#: Seconds to wait between ``GenerateCredentialReport`` polls (about 15 s in all).
REPORT_POLL = (0.2, 0.5, 1.0, 1.5, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0)

_KEEP = (
    "user",
    "arn",
    "user_creation_time",
    "password_enabled",
    "password_last_used",
    "password_last_changed",
    "mfa_active",
    "access_key_1_active",
    "access_key_1_last_rotated",
    "access_key_1_last_used_date",
    "access_key_2_active",
    "access_key_2_last_rotated",
    "access_key_2_last_used_date",
    "cert_1_active",
    "cert_2_active",
)
_LAST_USED = ("password_last_used", "access_key_1_last_used_date", "access_key_2_last_used_date")


class ReportNotReady(Exception):
    """The credential report was still being generated when polling gave up."""


# --- get -----------------------------------------------------------------------------


def get_credential_report(client: Any, poll: tuple[float, ...] = REPORT_POLL) -> bytes:
    for delay in (*poll, None):
        if client.generate_credential_report().get("State") == "COMPLETE":
            return client.get_credential_report()["Content"]
        if delay is None:
            break
        time.sleep(delay)
    raise ReportNotReady("credential report not ready")


def get_root_virtual_mfa(client: Any) -> list[str]:
    serials = []
    for device in paginate(client, "list_virtual_mfa_devices", "VirtualMFADevices",
                           AssignmentStatus="Assigned"):
        user_arn = str((device.get("User") or {}).get("Arn", ""))
        serial = str(device.get("SerialNumber", ""))
        if user_arn.endswith(":root") or serial.endswith("/root-account-mfa-device"):
            serials.append(serial)
    return sorted(serials)


# --- transform -----------------------------------------------------------------------


def report_text(content: bytes | str) -> str:
    text = content.decode("utf-8") if isinstance(content, (bytes, bytearray)) else content
    if text.startswith(("b'", 'b"')) and text.rstrip().endswith(("'", '"')):
        literal = ast.literal_eval(text.strip())  # moto: str() of the bytes
        if isinstance(literal, bytes):
            return literal.decode("utf-8")
    return text


def root_row(content: bytes | str) -> dict[str, str] | None:
    """The ``<root_account>`` row, last-use dates to the day; None if there is none."""
    for row in csv.DictReader(io.StringIO(report_text(content))):
        if row.get("user") == ROOT_ROW:
            out = {k: row[k] for k in _KEEP if k in row}
            for key in _LAST_USED:
                if _is_timestamp(out.get(key)):
                    out[key] = activity_time(out[key]) or out[key]
            return out
    return None


def _is_timestamp(value: str | None) -> bool:
    return bool(value) and value[:1].isdigit()  # "N/A", "no_information", "not_supported"


def root_payload(
    client: Any,
    account: Any,
    summary: Mapping[str, Any] | None,
    poll: tuple[float, ...] = REPORT_POLL,
) -> dict[str, Any]:
    errors: dict[str, str] = {}
    payload: dict[str, Any] = {"Arn": f"arn:{account.partition}:iam::{account.account_id}:root"}
    try:
        content = read_partial(errors, "CredentialReportRow", lambda: get_credential_report(
            client, poll))
    except ReportNotReady:
        errors["CredentialReportRow"] = "ReportNotReady"
        content = MISSING
    if content is not MISSING:
        payload["CredentialReportRow"] = root_row(content)
    devices = read_partial(errors, "RootVirtualMFADevices", lambda: get_root_virtual_mfa(client))
    if devices is not MISSING:
        payload["RootVirtualMFADevices"] = devices
    if summary is not None and "AccountMFAEnabled" in summary:
        payload["AccountMFAEnabled"] = summary["AccountMFAEnabled"]
    else:
        errors["AccountMFAEnabled"] = "account summary not read"
    return with_errors(payload, errors)


# --- checks --------------------------------------------------------------------------


def root_mfa_enabled(payload: Mapping[str, Any]) -> tuple[bool, str]:
    """Whether root has MFA, and the source: the report's root row, else the summary."""
    row = payload.get("CredentialReportRow")
    if row:
        return row.get("mfa_active") == "true", "credential report"
    if "AccountMFAEnabled" in payload:
        return bool(payload["AccountMFAEnabled"]), "account summary"
    require(payload, "CredentialReportRow")  # raises with the recorded reason
    raise EvidenceMissing("root MFA status could not be read")


@check("aws.iam.root_mfa")
def root_mfa(payload: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    enabled, source = root_mfa_enabled(payload)
    if enabled:
        return passed(f"The root user has MFA ({source})")
    return failed(f"The root user has no MFA device ({source})")


@check("aws.iam.root_hardware_mfa")
def root_hardware_mfa(payload: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    enabled, source = root_mfa_enabled(payload)
    if not enabled:
        return failed(f"The root user has no MFA device at all ({source})")
    virtual = require(payload, "RootVirtualMFADevices")
    if virtual:
        return failed("The root user uses a virtual MFA device: " + ", ".join(virtual))
    return passed("The root user's MFA is not a virtual device (hardware key or token)")


@check("aws.iam.root_recent_use")
def root_recent_use(payload: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    row = require(payload, "CredentialReportRow")
    if row is None:
        raise EvidenceMissing("the credential report has no <root_account> row")
    window = params["window_days"]
    recent = []
    for key in _LAST_USED:
        value = row.get(key)
        if _is_timestamp(value) and days_since(value) <= window:
            recent.append(f"{key.replace('_', ' ')} {value}")
    if recent:
        return failed(f"The root user was used within {window} days: " + "; ".join(recent))
    return passed(f"The root user has not been used within {window} days")


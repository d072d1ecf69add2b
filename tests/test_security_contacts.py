"""Security contacts configured (A.5.24, incident management planning: points of contact
for reporting), judged through the run engine on vendor-shaped answers.

Azure: ``Microsoft.Security/securityContacts`` items in both documented shapes — the
2023-12-01-preview one (``isEnabled``, ``notificationsSources`` with ``sourceType``
``Alert`` / ``AttackPath``) and the 2020-01-01-preview one (``alertNotifications``
{state, minimalSeverity}) — from the securityContacts examples of the Azure REST API
specs (``specification/security/resource-manager``), served by the ARM fake over TLS
to the real connector.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.azure_fixtures import SUB_A, ArmFake, security_contact
from tests.test_cloud_real_shapes import (  # noqa: F401 - fixtures
    arm_tls_fake,
    azure,
    azure_run,
    tls_ca,
)

CHECK = "azure.security.contacts_configured"
PRICINGS = f"/subscriptions/{SUB_A}/providers/microsoft.security/pricings"


def contact_verdict(fake: ArmFake, contacts: list[dict[str, Any]] | None) -> tuple[str, str]:
    if contacts is not None:
        fake.put_list(f"/subscriptions/{SUB_A}/providers/Microsoft.Security/securityContacts",
                      contacts)
    found = azure_run(fake)
    f = found[(CHECK, PRICINGS)]
    assert tuple(f.controls) == ("A.5.24",)
    return f.status, f.message


CASES: list[tuple[str, list[dict[str, Any]] | None, str, str]] = [
    ("current shape, Medium alerts", [security_contact(SUB_A)], "pass",
     "gets Medium and higher alerts: soc@contoso.example, role Owner"),
    ("legacy shape, High alerts", [security_contact(SUB_A, legacy=True, alerts="High")],
     "pass", "gets High"),
    ("no contact at all (empty list)", None, "fail", "No security contact is configured"),
    ("legacy alert mails off", [security_contact(SUB_A, legacy=True, alerts=None)], "fail",
     "alert notifications off"),
    ("only attack-path notices", [security_contact(SUB_A, alerts=None)], "fail",
     "alert notifications off"),
    ("Low and above", [security_contact(SUB_A, alerts="Low")], "pass",
     "gets Low and higher"),
    ("only role mails, no address", [security_contact(SUB_A, emails="")], "fail",
     "no e-mail address, only role Owner"),
    ("disabled contact", [{**security_contact(SUB_A), "properties": {
        **security_contact(SUB_A)["properties"], "isEnabled": False}}], "fail",
     "alert notifications off"),
]


@pytest.mark.parametrize(("case", "contacts", "status", "message"), CASES,
                         ids=[c[0] for c in CASES])
def test_azure_security_contacts(azure: ArmFake, case: str,  # noqa: F811
                                 contacts: list[dict[str, Any]] | None, status: str,
                                 message: str) -> None:
    got_status, got_message = contact_verdict(azure, contacts)
    assert got_status == status, got_message
    assert message in got_message


def test_azure_unreadable_contacts_are_an_error_not_a_verdict(azure: ArmFake) -> None:  # noqa: F811
    azure.fault(r"/securityContacts$", 403, code="AuthorizationFailed")
    found = azure_run(azure)
    assert found[(CHECK, PRICINGS)].status == "error"
    # The other checks on the same evidence still judge.
    assert found[("azure.security.defender_plans_enabled", PRICINGS)].status in ("pass", "fail")


def test_azure_contact_mailing_only_high_fails_a_medium_requirement() -> None:
    from core.checks import REGISTRY

    spec = REGISTRY.get(CHECK)
    payload = {"securityContacts": [{"name": "default", "emails": "soc@x", "isEnabled": True,
                                     "notificationsSources": [
                                         {"sourceType": "Alert", "minimalSeverity": "High"}]}]}
    assert spec.func(payload, spec.params_with({"minimal_severity": "Medium"})).status == "fail"
    assert spec.func(payload, spec.params_with(None)).status == "pass"
    with pytest.raises(ValueError):
        spec.func(payload, spec.params_with({"minimal_severity": "Critical"}))

"""``azure.sql.database_data_masking`` (A.8.11 data masking, by classification) through
the run engine on vendor-shaped answers: ``DataMaskingPolicyGet.json`` and
``DataMaskingRuleListByDatabase.json`` of the Azure REST API specs (sql, stable
2021-11-01 examples), served by the ARM fake over TLS to the real connector.
"""

from __future__ import annotations

from typing import Any

from core.checks import REGISTRY
from tests.azure_fixtures import SUB_A, ArmFake, masking_policy, masking_rule, rid
from tests.test_cloud_real_shapes import (  # noqa: F401 - fixtures
    arm_tls_fake,
    azure,
    azure_run,
    tls_ca,
)

CHECK = "azure.sql.database_data_masking"

#: database → (classification tag or None, policy state, rules as (column, ruleState),
#: expected verdict under the default parameters).
DATABASES: dict[str, tuple[str | None, str, list[tuple[str, str]], str]] = {
    "crm": ("confidential", "Enabled", [("email", "Enabled")], "pass"),
    "hr": ("Restricted", "Enabled", [("ssn", "Disabled")], "fail"),  # only a disabled rule
    "billing": ("restricted", "Disabled", [("card", "Enabled")], "fail"),  # policy off
    "wiki": ("internal", "Disabled", [], "not_applicable"),
    "legacy": (None, "Disabled", [], "fail"),  # unclassified: need unknown
    "catalog": ("public", "Enabled", [], "not_applicable"),
}


def test_masking_by_classification_exact_verdicts(azure: ArmFake) -> None:  # noqa: F811
    server = rid(SUB_A, "rg-sql", "Microsoft.Sql/servers", "srv-mask")
    azure.add(f"/subscriptions/{SUB_A}/providers/Microsoft.Sql/servers", {
        "id": server, "name": "srv-mask", "type": "Microsoft.Sql/servers",
        "location": "westeurope", "properties": {"publicNetworkAccess": "Disabled",
                                                 "minimalTlsVersion": "1.2"}})
    dbs = []
    for name, (level, state, rules, _) in DATABASES.items():
        db: dict[str, Any] = {"id": f"{server}/databases/{name}", "name": name,
                              "type": "Microsoft.Sql/servers/databases",
                              "location": "westeurope", "properties": {"status": "Online"}}
        if level:
            db["tags"] = {"data-classification": level}
        dbs.append(db)
        azure.put(f"{db['id']}/dataMaskingPolicies/Default", masking_policy(db["id"], state))
        azure.put_list(f"{db['id']}/dataMaskingPolicies/Default/rules",
                       [masking_rule(db["id"], "t", col, st) for col, st in rules])
    azure.put_list(f"{server}/databases", dbs)
    found = azure_run(azure)
    got = {r.rsplit("/", 1)[1]: f.status for (c, r), f in found.items() if c == CHECK}
    assert got == {name: v[3] for name, v in DATABASES.items()}
    crm = found[(CHECK, f"{server}/databases/crm".lower())]
    assert crm.message == "Database crm (classified confidential) masks t.email"
    assert tuple(crm.controls) == ("A.8.11",)


def test_parameters_follow_the_policy() -> None:
    spec = REGISTRY.get(CHECK)
    off = {"name": "x", "dataMasking": {"dataMaskingState": "Disabled", "rules": []}}
    lax = spec.params_with({"require_when_unclassified": False})
    assert spec.func(off, lax).status == "not_applicable"
    internal = {**off, "tags": {"data-classification": "internal"}}
    strict = spec.params_with({"require_for_classifications": ["internal"]})
    assert spec.func(internal, strict).status == "fail"
    # Unread masking where masking is required: an error, not a verdict.
    unread = {"name": "x", "_errors": {"dataMasking": "HTTP 403"}}
    try:
        spec.func(unread, spec.params_with(None))
    except Exception as exc:  # noqa: BLE001 - the engine turns it into an error finding
        assert "dataMasking" in str(exc)
    else:
        raise AssertionError("a missing masking policy must not give a verdict")

"""Classification labels on data stores (A.5.12 classification, A.5.13 labelling),
judged through the run engine on vendor-shaped answers.

* Google Cloud: ``Bucket.labels`` (storage.v1 discovery document shipped in
  ``google-api-python-client``; the fake validates every answer against it). The API
  leaves ``labels`` out when a bucket has none.
* Azure: the storage account's top-level ``tags`` (``StorageAccountList.json`` of the
  Azure REST API specs; its example account carries ``key1``/``key2`` only).

Planted good and bad stores, exact fail sets, plus the parameter contract.
"""

from __future__ import annotations

from typing import Any

import pytest

from core.checks import REGISTRY
from tests import azure_fixtures as azure_fx
from tests import gcp_fixtures as gcp_fx
from tests.azure_fixtures import SUB_A, ArmFake
from tests.gcp_fixtures import GcpFake
from tests.test_cloud_real_shapes import (  # noqa: F401 - fixtures
    PROJECT,
    arm_tls_fake,
    azure,
    azure_run,
    gcp,
    gcp_fake,
    gcp_run,
    sa_key_material,
    tls_ca,
)

#: name → (labels or tags, expected verdict under the default scheme).
STORES: dict[str, tuple[dict[str, str], str]] = {
    "confidential": ({"data-classification": "confidential"}, "pass"),
    "public": ({"data-classification": "public", "env": "prod"}, "pass"),
    "restricted": ({"data-classification": "restricted"}, "pass"),
    "mixedcase": ({"Data-Classification": "Internal"}, "pass"),  # Azure keeps case
    "nolabels": ({}, "fail"),
    "otherlabels": ({"env": "prod", "owner": "data-team"}, "fail"),
    "notalevel": ({"data-classification": "top-secret"}, "fail"),
    "emptyvalue": ({"data-classification": ""}, "fail"),
}


def test_gcp_buckets_exact_fail_set(gcp: GcpFake) -> None:  # noqa: F811
    names = {f"{PROJECT}-{n}": v for n, v in STORES.items() if n != "mixedcase"}
    gcp.put_list(f"/storage/v1/b?project={PROJECT}", "items", [
        gcp_fx.bucket(name, labels=labels) for name, (labels, _) in names.items()])
    for name in names:
        gcp.put(f"/storage/v1/b/{name}/iam", {"bindings": []})
    found = gcp_run(gcp)
    check = "gcp.storage.bucket_classified"
    verdicts = {r: f.status for (c, r), f in found.items() if c == check}
    assert verdicts == {name: expected for name, (_, expected) in names.items()}
    f = found[(check, f"{PROJECT}-notalevel")]
    assert "data-classification='top-secret', not a level" in f.message
    assert tuple(f.controls) == ("A.5.12", "A.5.13")


def test_azure_storage_accounts_exact_fail_set(azure: ArmFake) -> None:  # noqa: F811
    coll = f"/subscriptions/{SUB_A}/providers/Microsoft.Storage/storageAccounts"
    ids = {}
    for name, (tags, _) in STORES.items():
        account = azure_fx.storage_account(SUB_A, f"st{name}", tags=tags)
        azure.add(coll, account)
        ids[account["id"].lower()] = name
    example = azure_fx.storage_account_from_example(SUB_A, "sto8596")
    azure.add(coll, example)
    found = azure_run(azure)
    check = "azure.storage.account_classified"
    verdicts = {r: f.status for (c, r), f in found.items() if c == check}
    expected = {rid: STORES[name][1] for rid, name in ids.items()}
    expected[example["id"].lower()] = "fail"  # the vendor's example: key1/key2 only
    assert verdicts == expected
    f = found[(check, example["id"].lower())]
    assert f.message == "Storage account sto8596 has no data-classification label"
    assert tuple(f.controls) == ("A.5.12", "A.5.13")


@pytest.mark.parametrize("check", ["gcp.storage.bucket_classified",
                                   "azure.storage.account_classified"])
def test_scheme_is_a_parameter(check: str) -> None:
    spec = REGISTRY.get(check)
    key = "labels" if check.startswith("gcp") else "tags"
    payload: dict[str, Any] = {"name": "x", key: {"sensitivity": "c2"}}
    assert spec.func(payload, spec.params_with(None)).status == "fail"
    own = spec.params_with({"tag_key": "sensitivity", "allowed_values": ["c1", "c2", "c3"]})
    assert spec.func(payload, own).status == "pass"
    with pytest.raises(ValueError):
        spec.func(payload, spec.params_with({"allowed_values": []}))

"""Cloud Storage buckets: public access prevention, IAM, uniform access, retention lock.

One unit per project (service ``storage``): ``GET storage.googleapis.com/storage/v1/b?
project=<id>`` (the listing; a failure fails the unit), then per bucket ``GET …/b/<name>/
iam`` (partial, recorded under ``_errors``).

Resource type ``gcp.storage.bucket`` (id = bucket name, region = its location)::

    {"name", "location", "locationType", "storageClass", "timeCreated",
     "iamConfiguration": {"uniformBucketLevelAccess": {"enabled", "lockedTime"},
                          "publicAccessPrevention": "enforced" | "inherited"},
     "retentionPolicy": {"retentionPeriod", "effectiveTime", "isLocked"}?,
     "versioning", "logging", "encryption", "softDeletePolicy", "lifecycle",
     "iamBindings": [{"role", "members"}]}

``updated`` and ``metageneration`` move with every metadata write (labels…) and are
dropped, so only changes to what is kept here create a new version.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import quote

from connectors import classification
from connectors.kit import read_partial, require, with_errors
from core.checks import Verdict, check, failed, not_applicable, passed
from core.records import Evidence

from .context import GcpContext, Project, evidence
from .iam import is_public

SERVICE = "storage"
BUCKET = "gcp.storage.bucket"

PERMISSIONS = ("storage.buckets.list", "storage.buckets.getIamPolicy")

_KEPT = ("name", "location", "locationType", "storageClass", "timeCreated",
         "iamConfiguration", "retentionPolicy", "versioning", "logging", "encryption",
         "softDeletePolicy", "defaultEventBasedHold", "labels", "lifecycle")


def bucket_payload(ctx: GcpContext, bucket: Mapping[str, Any],
                   policy: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The evidence payload of ``bucket``; its IAM ``policy`` is read from the bucket
    unless given (the bulk inventory path passes the one Cloud Asset Inventory listed)."""
    payload = {k: bucket[k] for k in _KEPT if k in bucket}
    errors: dict[str, str] = {}
    if policy is None:
        path = f"/storage/v1/b/{quote(str(bucket['name']), safe='')}/iam"
        policy = read_partial(errors, "iamBindings", lambda: ctx.api("storage").get_json(
            path, params={"optionsRequestedPolicyVersion": 3}))
    if policy is not None:
        payload["iamBindings"] = sorted(
            ({"role": b.get("role"), "members": sorted(b.get("members") or [])}
             for b in policy.get("bindings") or []),
            key=lambda b: str(b["role"]),
        )
    return with_errors(payload, errors)


def read(ctx: GcpContext, project: Project) -> Iterator[Evidence]:
    buckets = ctx.items("storage", "/storage/v1/b", "items",
                        {"project": project.id, "projection": "noAcl", "maxResults": 1000})
    for bucket in buckets:
        yield evidence(project.id, BUCKET, str(bucket["name"]), bucket_payload(ctx, bucket),
                       bucket.get("location"))


def _iam_config(payload: Mapping[str, Any]) -> Mapping[str, Any]:
    return payload.get("iamConfiguration") or {}


@check("gcp.storage.bucket_public_access_block")
def bucket_public_access_block(payload: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    value = str(_iam_config(payload).get("publicAccessPrevention") or "inherited")
    if value == "enforced":
        return passed("Public access prevention is enforced")
    if value == "inherited" and params["accept_inherited"]:
        return passed("Public access prevention is inherited from the organisation policy")
    return failed(f"Public access prevention is {value}: the bucket can be made public")


@check("gcp.storage.bucket_not_public")
def bucket_not_public(payload: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    found = [f"{m} has {b['role']}" for b in require(payload, "iamBindings")
             for m in b["members"] if is_public(str(m))]
    if found:
        return failed("Bucket is public: " + "; ".join(found))
    return passed("No public IAM bindings on the bucket")


@check("gcp.storage.bucket_uniform_access")
def bucket_uniform_access(payload: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    ubla = _iam_config(payload).get("uniformBucketLevelAccess") or {}
    if ubla.get("enabled") is True:
        return passed("Uniform bucket-level access is enabled")
    return failed("Uniform bucket-level access is disabled: object ACLs apply")


@check("gcp.storage.bucket_retention_lock")
def bucket_retention_lock(payload: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    policy = payload.get("retentionPolicy") or {}
    if policy.get("isLocked") is True:
        return passed(f"Retention policy of {policy.get('retentionPeriod')}s is locked")
    if policy:
        return failed("The retention policy is not locked: it can be shortened or removed")
    if re.search(str(params["name_pattern"]), str(payload.get("name", ""))):
        return failed("The bucket holds logs or records but has no retention policy")
    return not_applicable("Not a log or records bucket (name_pattern) and no retention "
                          "policy is set")


@check("gcp.storage.bucket_lifecycle_delete")
def bucket_lifecycle_delete(payload: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    rules = [r for r in (payload.get("lifecycle") or {}).get("rule") or []
             if (r.get("action") or {}).get("type") == "Delete"]
    if not rules:
        return failed("No lifecycle rule deletes objects: they are kept until deleted by "
                      "hand")
    ages = [int((r.get("condition") or {}).get("age")) for r in rules
            if isinstance((r.get("condition") or {}).get("age"), int)]
    limit = int(params["max_age_days"])
    if limit and (not ages or min(ages) > limit):
        return failed(f"No lifecycle rule deletes objects within {limit} days")
    return passed(f"{len(rules)} lifecycle rule(s) delete objects"
                  + (f" (after {min(ages)} days)" if ages else ""))


@check("gcp.storage.bucket_classified")
def bucket_classified(payload: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    return classification.classification_verdict(
        payload.get("labels"), params, f"Bucket {payload.get('name')}")

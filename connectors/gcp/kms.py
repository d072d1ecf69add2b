"""Cloud KMS: automatic rotation of symmetric encryption keys.

One unit per project (service ``kms``), all listings (a failure fails the unit):
``GET cloudkms.googleapis.com/v1/projects/<id>/locations`` (skipped when the
``kms_locations`` option names them: about 40 locations exist, and most organisations
use two or three), then ``…/locations/<loc>/keyRings`` and ``<keyRing>/cryptoKeys``.

Resource type ``gcp.kms.crypto_key`` (id = the key's resource name, region = location)::

    {"name", "purpose", "createTime", "rotationPeriod"?, "nextRotationTime"?,
     "primaryState", "protectionLevel", "algorithm", "labels"?}

The primary version's name and create time move on each rotation and are left out;
``nextRotationTime`` moves too, but only when a rotation happens (a real change).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from core.checks import Verdict, check, failed, not_applicable, passed
from core.records import Evidence

from .context import GcpContext, Project, evidence

SERVICE = "kms"
CRYPTO_KEY = "gcp.kms.crypto_key"

PERMISSIONS = ("cloudkms.locations.list", "cloudkms.keyRings.list", "cloudkms.cryptoKeys.list")


def transform(key: Mapping[str, Any]) -> dict[str, Any]:
    primary = key.get("primary") or {}
    template = key.get("versionTemplate") or {}
    payload: dict[str, Any] = {
        k: key[k] for k in ("name", "purpose", "createTime", "rotationPeriod",
                            "nextRotationTime", "labels", "importOnly")
        if k in key
    }
    payload["primaryState"] = primary.get("state")
    payload["protectionLevel"] = primary.get("protectionLevel") or template.get(
        "protectionLevel")
    payload["algorithm"] = primary.get("algorithm") or template.get("algorithm")
    return payload


def locations(ctx: GcpContext, project: Project) -> list[str]:
    if ctx.kms_locations is not None:
        return list(ctx.kms_locations)
    return [str(loc.get("locationId")) for loc in ctx.items(
        "cloudkms", f"/v1/projects/{project.id}/locations", "locations", {"pageSize": 100})]


def read(ctx: GcpContext, project: Project) -> Iterator[Evidence]:
    for location in locations(ctx, project):
        rings = ctx.items("cloudkms", f"/v1/projects/{project.id}/locations/{location}/keyRings",
                          "keyRings", {"pageSize": 1000})
        for ring in list(rings):
            for key in ctx.items("cloudkms", f"/v1/{ring['name']}/cryptoKeys", "cryptoKeys",
                                 {"pageSize": 1000}):
                yield evidence(project.id, CRYPTO_KEY, str(key["name"]), transform(key),
                               location)


def _seconds(duration: Any) -> float | None:
    text = str(duration or "")
    if not text.endswith("s"):
        return None
    try:
        return float(text[:-1])
    except ValueError:
        return None


@check("gcp.kms.key_rotation")
def key_rotation(payload: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    if payload.get("purpose") != "ENCRYPT_DECRYPT":
        return not_applicable(f"{payload.get('purpose')} keys cannot rotate automatically")
    if payload.get("primaryState") in ("DESTROYED", "DESTROY_SCHEDULED", "DISABLED"):
        return not_applicable(f"The primary version is {payload['primaryState']}")
    seconds = _seconds(payload.get("rotationPeriod"))
    limit = float(params["max_rotation_days"])
    if seconds is None:
        return failed("Automatic rotation is not configured")
    days = seconds / 86400
    if days > limit:
        return failed(f"The key rotates every {days:g} days (> {limit:g})")
    return passed(f"The key rotates every {days:g} days")

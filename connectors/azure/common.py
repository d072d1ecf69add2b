"""What is specific to ARM payloads: ``properties``, locations and resource groups.

The connector machinery (units, the pool, ``require``, ``read_partial``…) is
:mod:`connectors.kit`'s.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from connectors.kit import GLOBAL, EvidenceMissing, require


def props(payload: Mapping[str, Any]) -> Mapping[str, Any]:
    """The ARM resource's ``properties`` (every ARM resource has them)."""
    value = require(payload, "properties")
    if not isinstance(value, Mapping):
        raise EvidenceMissing("properties is not an object")
    return value


def location_of(resource: Mapping[str, Any]) -> str:
    """The evidence region: the resource's location, normalised (``westeurope``)."""
    loc = resource.get("location")
    return str(loc).replace(" ", "").lower() if loc else GLOBAL


def resource_group_of(resource_id: str) -> str | None:
    parts = resource_id.split("/")
    lowered = [p.lower() for p in parts]
    if "resourcegroups" in lowered:
        i = lowered.index("resourcegroups")
        if i + 1 < len(parts):
            return parts[i + 1]
    return None

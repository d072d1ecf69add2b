"""What is specific to Google Cloud payloads: the evidence region of a location.

The connector machinery (units, the pool, ``require``, ``read_partial``…) is
:mod:`connectors.kit`'s.
"""

from __future__ import annotations

from typing import Any

from connectors.kit import GLOBAL


def region_of(location: Any) -> str:
    """Evidence region from a Google location (``EU``, ``us-central1``, a zone or region
    URL): lower-cased last path segment; ``global`` when there is none."""
    if not location:
        return GLOBAL
    return str(location).rstrip("/").rsplit("/", 1)[-1].lower()

"""Okta API tokens (metadata only: Okta never returns a token value, and none is kept).

``GET /api/v1/api-tokens`` lists every token of the org with its owner, creation date,
idle window and network restriction. One evidence per token (``okta.apitoken.token``);
the ids of the tokens each user owns are copied onto that user's evidence.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from connectors.http import HttpClient, MalformedResponseError
from connectors.identityshared import RecordingReader
from connectors.kit import GLOBAL
from core.checks import Verdict, check, failed, passed
from core.records import Evidence
from core.times import day_precision, days_since

TOKEN_TYPE = "okta.apitoken.token"  # noqa: S105 - a resource type, not a secret


def token_payload(token: Mapping[str, Any]) -> dict[str, Any]:
    """Only metadata; key names avoid the words the store redacts as secrets."""
    network = token.get("network") if isinstance(token.get("network"), Mapping) else {}
    return {
        "id": str(token["id"]),
        "name": token.get("name"),
        "owner_id": token.get("userId"),
        "client_name": token.get("clientName"),
        "created": token.get("created"),
        # Moves with every use (idle expiry): kept to the day, or every run stores a version.
        "expires_at": day_precision(token.get("expiresAt")),
        "idle_window": token.get("tokenWindow"),
        "network_connection": network.get("connection"),
        "network_zones_included": sorted(network.get("include") or []),
        "network_zones_excluded": sorted(network.get("exclude") or []),
    }


class ApiTokenReader(RecordingReader):
    """Reads API tokens; after a complete read ``tokens_by_owner`` maps user id → token ids."""

    def __init__(self, http: HttpClient, scope: str) -> None:
        super().__init__(http, scope)
        self.tokens_by_owner: dict[str, list[str]] | None = None

    def _read(self) -> Iterator[Evidence]:
        owners: dict[str, list[str]] = {}
        for token in self.http.paginate_links("/api/v1/api-tokens"):
            if not isinstance(token, Mapping) or not token.get("id"):
                raise MalformedResponseError("an API token without an id in /api/v1/api-tokens")
            payload = token_payload(token)
            if payload["owner_id"]:
                owners.setdefault(str(payload["owner_id"]), []).append(payload["id"])
            yield Evidence(
                scope=self.scope,
                region=GLOBAL,
                resource_type=TOKEN_TYPE,
                resource_id=payload["id"],
                payload=payload,
            )
        self.tokens_by_owner = owners


@check("okta.apitoken.network_restricted")
def token_network_restricted(payload: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    """Judges every documented ``network.connection`` (``ANYWHERE``, ``ZONE``): a
    ``ZONE`` condition restricts only when it *includes* zones — excluding some zones
    alone leaves the token usable from everywhere else."""
    conn = payload.get("network_connection")
    label = f"API token {payload.get('name') or payload.get('id')}"
    include = list(payload.get("network_zones_included") or [])
    exclude = list(payload.get("network_zones_excluded") or [])
    if conn in (None, "", "ANYWHERE"):
        return failed(f"{label} can be used from anywhere")
    if conn != "ZONE":
        return failed(f"{label} has network connection {conn!r}, not a zone restriction")
    if not include:
        if exclude:
            return failed(
                f"{label} only excludes network zones ({', '.join(exclude)}): it can be "
                "used from anywhere else"
            )
        return failed(f"{label} is set to ZONE but names no zone to include")
    if any(z in ("ALL_IP_ZONES", "ALL_ZONES") for z in include):
        return passed(f"{label} is restricted to the org's defined IP zones ({', '.join(include)})")
    return passed(f"{label} is restricted to zones {', '.join(include)}")


@check("okta.apitoken.max_age")
def token_max_age(payload: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    label = f"API token {payload.get('name') or payload.get('id')}"
    created = payload.get("created")
    if not created:
        return failed(f"{label} has no creation date")
    age = days_since(created)
    if age > params["max_age_days"]:
        return failed(
            f"{label} was created on {day_precision(created)} ({int(age)} days ago, "
            f"limit {params['max_age_days']})"
        )
    return passed(f"{label} was created {int(age)} days ago")

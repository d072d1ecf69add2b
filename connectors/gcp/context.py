"""What every Google Cloud reader gets: the project, the hierarchy and the API clients."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from connectors.http import HttpClient
from connectors.kit import GLOBAL
from core.records import Evidence, utcnow

from .common import region_of
from .resourcemanager import Hierarchy, ResourceManager


@dataclass(frozen=True)
class Project:
    """A project as Resource Manager lists it."""

    id: str  # the project id ("acme-prod"): the evidence scope
    name: str  # "projects/<number>"
    parent: str | None = None  # "folders/N" or "organizations/N"
    display_name: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict, hash=False, compare=False)

    @property
    def number(self) -> str:
        return self.name.rsplit("/", 1)[-1]

    @property
    def resource(self) -> str:
        return f"projects/{self.id}"


@dataclass
class GcpContext:
    """Shared by every unit of a run (all members are thread-safe)."""

    rm: ResourceManager
    hierarchy: Hierarchy
    apis: Mapping[str, HttpClient]
    kms_locations: Sequence[str] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def api(self, name: str) -> HttpClient:
        return self.apis[name]

    def items(
        self, api: str, path: str, key: str, params: Mapping[str, Any] | None = None
    ) -> Iterator[Any]:
        """Every item of a Google list (``key`` + ``nextPageToken``/``pageToken``)."""
        yield from self.api(api).paginate_cursor(
            path, params=dict(params or {}), items_key=key, cursor_param="pageToken",
            cursor_key="nextPageToken", last_key=None,
        )


def evidence(
    scope: str, resource_type: str, resource_id: str, payload: dict[str, Any],
    location: Any = None, source_updated_at: datetime | None = None,
) -> Evidence:
    return Evidence(
        scope=scope,
        region=region_of(location) if location else GLOBAL,
        resource_type=resource_type,
        resource_id=resource_id,
        payload=payload,
        collected_at=utcnow(),
        source_updated_at=source_updated_at,
    )

"""A scriptable connector for engine and store tests (a plugin, not a mock of our code).

Its checks live in their own registry so they never appear in ``annexa checks``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, ClassVar

import pytest
from sqlalchemy import Engine

from collector.config import AnnexaConfig, ConnectorConfig, LoadedConnector, Settings
from core.checks import CheckRegistry, CheckSpec, check, failed, passed
from core.connector import CollectContext, Connector, ConnectorOptions
from core.records import Coverage, Evidence, Record
from mappings.loader import MappingIndex, load_mappings
from store.writer import RunWriter

FAKE_REGISTRY = CheckRegistry()


@check(
    id="fake.disk.encrypted",
    title="Disk is encrypted",
    severity="high",
    resource_type="fake.disk.volume",
    rationale="Unencrypted disks expose data at rest.",
    remediation="Encrypt the disk.",
    registry=FAKE_REGISTRY,
)
def disk_encrypted(payload: Mapping[str, Any], params: Mapping[str, Any]) -> Any:
    return passed("encrypted") if payload["encrypted"] else failed("not encrypted")


@check(
    id="fake.user.mfa",
    title="User has MFA",
    severity="high",
    resource_type="fake.user.account",
    rationale="Passwords alone are phished.",
    remediation="Enrol MFA.",
    parameters={"allow_service_accounts": False},
    registry=FAKE_REGISTRY,
)
def user_mfa(payload: Mapping[str, Any], params: Mapping[str, Any]) -> Any:
    if payload.get("service") and params["allow_service_accounts"]:
        return passed("service account exempt")
    return passed("mfa on") if payload["mfa"] else failed(f"{payload['name']} has no MFA")


MAPPING = """
[[link]]
check = "fake.disk.encrypted"
control = "A.8.24"
rationale = "Encryption of storage is use of cryptography."

[[link]]
check = "fake.user.mfa"
control = "A.8.5"
rationale = "MFA is secure authentication."
"""


def write_fake_mapping(maps: Path) -> Path:
    """Writes ``MAPPING`` as ``maps/fake.toml``, creating the folder; returns the folder."""
    maps.mkdir(parents=True, exist_ok=True)
    (maps / "fake.toml").write_text(MAPPING)
    return maps


def fake_index(maps: Path) -> MappingIndex:
    """The fake checks' mapping loaded from a file in ``maps``, as an operator's would be."""
    return load_mappings([write_fake_mapping(maps)])


@pytest.fixture
def index(tmp_path: Path) -> MappingIndex:
    """Fixture: the fake checks' mapping (import it into a test module to use it)."""
    return fake_index(tmp_path / "maps")


class FakeOptions(ConnectorOptions):
    pass


class FakeConnector(Connector):
    """Yields whatever the test put in ``script`` (records, or exceptions to raise)."""

    type = "fake"
    prefix = "fake"
    Options = FakeOptions
    script: ClassVar[list[Record | Exception]] = []

    @classmethod
    def checks(cls) -> list[CheckSpec]:
        return list(FAKE_REGISTRY)

    def collect(self, ctx: CollectContext) -> Iterator[Record]:
        for item in list(self.script):
            if isinstance(item, Exception):
                raise item
            yield item


def estate(
    disks: Mapping[str, bool],
    users: Mapping[str, bool],
    *,
    scope: str = "acct-1",
    disk_error: str | None = None,
) -> list[Record]:
    """Records for a small estate: disks (id → encrypted) and users (name → mfa)."""
    out: list[Record] = []
    if disk_error:
        out.append(Coverage(scope, "eu-1", "disk", ok=False, error=disk_error))
    else:
        for d, enc in disks.items():
            out.append(Evidence(scope, "eu-1", "fake.disk.volume", d, {"id": d, "encrypted": enc}))
        out.append(Coverage(scope, "eu-1", "disk", ok=True))
    for u, mfa in users.items():
        out.append(Evidence(scope, "global", "fake.user.account", u, {"name": u, "mfa": mfa}))
    out.append(Coverage(scope, "global", "user", ok=True))
    return out


def plain_writer(engine: Engine, source: str = "src", **kw: Any) -> RunWriter:
    """A run writer with no config behind it: placeholder config and mapping digests and
    agent version (``kw`` overrides any, or sets the writer's other options)."""
    fields: dict[str, Any] = {
        "source": source,
        "connector_type": "fake",
        "config_digest": "c" * 64,
        "mapping_digest": "m" * 64,
        "agent_version": "t",
    }
    return RunWriter(engine, **{**fields, **kw})


def fake_settings(db_url: str, **connector: Any) -> Settings:
    cfg = ConnectorConfig(type="fake", name="fake-1", **connector)
    settings = Settings(AnnexaConfig(database={"url": db_url}, connectors=[cfg]), None)
    settings.connectors = [LoadedConnector(cfg, FakeConnector, FakeOptions())]
    return settings

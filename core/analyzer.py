"""The analyzer plugin interface: work that reads the store instead of a source.

A connector reads a source (an API) and streams records. An analyzer reads what the
connectors stored — the latest evidence of other sources — and streams records too:
identity correlation across IdPs and HR, the join of people and devices, and later any
cross-source check. It is registered under the entry-point group ``annexa.analyzers``
exactly as a connector is under ``annexa.connectors``, declares its checks the same way,
and its records go through the same run engine, so its findings are sealed runs with
their own digest chain like any other.

Core imports nothing of ours: the store is reached through :class:`EvidenceView`, a
read-only protocol the collector implements over the database and hands to
:meth:`Analyzer.analyze`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar, Protocol

from core.checks import REGISTRY, CheckRegistry, CheckSpec
from core.connector import CollectContext, Connector, ConnectorOptions, registered_classes
from core.records import Record

ENTRY_POINT_GROUP = "annexa.analyzers"


class UnitState(Protocol):
    """The outcome of one unit (source, service) in a sealed run."""

    source: str
    service: str
    ok: bool
    error: str | None
    finished_at: datetime


class EvidenceView(Protocol):
    """What an analyzer may read: the store's latest evidence, read-only.

    ``instances`` are the enabled connector instances of the configuration (name →
    connector class), so an analyzer finds its inputs by what each class declares (e.g.
    :attr:`core.connector.Connector.accounts`), never by a list of type names.
    """

    instances: Mapping[str, type[Connector]]
    #: Where relative paths of the analyzer's options are resolved (the config's folder).
    base_dir: Path

    def current(
        self, resource_types: Sequence[str], sources: Sequence[str]
    ) -> Iterable[Mapping[str, Any]]:
        """The current evidence of ``resource_types`` of ``sources``: mappings with
        ``source``, ``resource_type``, ``resource_id`` and ``payload``."""

    def removed(
        self, resource_types: Sequence[str], sources: Sequence[str]
    ) -> Iterable[Mapping[str, Any]]:
        """Items deleted in the source (tombstoned by a clean read): the current keys
        plus ``removed_at``, with the last payload seen."""

    def unit_states(self, sources: Sequence[str], services: Iterable[str]) -> Sequence[UnitState]:
        """The latest state of each (source, service) unit, ``*`` included if asked."""


class Analyzer(ABC):
    """Base class of every analyzer (see the module docstring)."""

    #: The ``type`` named in config, equal to the entry-point name.
    type: ClassVar[str]
    Options: ClassVar[type[ConnectorOptions]] = ConnectorOptions
    #: Prefix of every check id and resource type this analyzer produces.
    prefix: ClassVar[str]

    #: The scope of its records (and of the error it reports when run unbound).
    scope: ClassVar[str] = "analysis"
    #: The name of the instance that runs when the config has no table of its type.
    default_name: ClassVar[str]
    #: Where it runs among the analyzers after a collection (lower first).
    order: ClassVar[int] = 100
    #: Where its checks register (tests may give an analyzer a registry of its own).
    check_registry: ClassVar[CheckRegistry] = REGISTRY

    def __init__(
        self, name: str, options: ConnectorOptions, enabled_checks: Iterable[str] | None = None
    ) -> None:
        self.name = name
        self.options = options
        #: The check ids enabled for this instance (an analyzer may skip work no check
        #: would judge); all of its checks by default.
        self.enabled_checks = frozenset(
            (s.id for s in self.checks()) if enabled_checks is None else enabled_checks
        )

    @classmethod
    def checks(cls) -> list[CheckSpec]:
        """Every check this analyzer's evidence is evaluated with.

        By default the checks of :attr:`check_registry` whose id starts with
        ``prefix + "."``, exactly as :meth:`Connector.checks` — an analyzer's checks
        register when its module is imported, which importing the class does. Override
        only when an analyzer's checks are not exactly those (say why in the override).
        """
        return cls.check_registry.with_prefix(cls.prefix)

    def inputs(self, instances: Mapping[str, type[Connector]]) -> set[str]:
        """The names among ``instances`` (the enabled connector instances) whose stored
        evidence this analyzer reads; empty when it has nothing to judge, and is then
        not run."""
        return set(instances)

    @abstractmethod
    def analyze(self, view: EvidenceView, ctx: CollectContext) -> Iterator[Record]:
        """Stream records from ``view``; like a connector, report a stale or unreadable
        input as a failed ``Coverage`` rather than raising."""


class UnknownAnalyzerError(LookupError):
    pass


def available_analyzers() -> dict[str, type[Analyzer]]:
    """Every analyzer class registered under the entry-point group."""
    return registered_classes(ENTRY_POINT_GROUP, Analyzer)

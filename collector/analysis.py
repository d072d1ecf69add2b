"""Analyzers in a collection: the store view they read, binding, and when they run.

An analyzer (core/analyzer.py) reads the store through :class:`StoreView`, the
collector's implementation of :class:`core.analyzer.EvidenceView` over
``store.identities``. It is configured like a connector (an optional ``[[connectors]]``
table of its type; without one, an instance with the analyzer's default name runs) and
run through the same engine (:func:`collector.runner.run_connector`) once the sources it
reads were collected: ``annexa collect`` runs every analyzer after the connectors;
schedulers that run each configured instance themselves (the daemon) :func:`bind` it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from collector.config import ConnectorConfig, LoadedConnector, Settings
from collector.plugins import AnalyzerRun, analyzer_run, is_analyzer
from core.analyzer import Analyzer, UnitState, available_analyzers
from core.connector import Connector
from mappings.loader import MappingIndex
from store.writer import RunSummary


class StoreView:
    """The store's latest evidence, read-only (:class:`core.analyzer.EvidenceView`).

    Each read is one short query on its own connection, materialised before it returns:
    no read transaction stays open while the analyzer's run writes.
    """

    def __init__(
        self, engine: Engine, instances: Mapping[str, type[Connector]], base_dir: Path
    ) -> None:
        self.engine = engine
        self.instances = dict(instances)
        self.base_dir = base_dir

    def current(
        self, resource_types: Sequence[str], sources: Sequence[str]
    ) -> list[dict[str, Any]]:
        from store.identities import current_identities

        with self.engine.connect() as conn:
            return list(current_identities(conn, resource_types, sources))

    def removed(
        self, resource_types: Sequence[str], sources: Sequence[str]
    ) -> list[dict[str, Any]]:
        from store.identities import removed_identities

        if not resource_types or not sources:
            return []
        with self.engine.connect() as conn:
            return list(removed_identities(conn, resource_types, sources))

    def unit_states(self, sources: Sequence[str], services: Iterable[str]) -> Sequence[UnitState]:
        from store.identities import latest_unit_states

        with self.engine.connect() as conn:
            return latest_unit_states(conn, list(sources), set(services))


def source_instances(settings: Settings) -> dict[str, type[Connector]]:
    """The enabled connector instances (not analyzers): what an analyzer may read."""
    return {
        c.name: c.cls for c in settings.connectors if c.cfg.enabled and not is_analyzer(c.cls)
    }


def view(settings: Settings, engine: Engine) -> StoreView:
    base = settings.path.parent if settings.path else Path.cwd()
    return StoreView(engine, source_instances(settings), base)


class _Bound(LoadedConnector):
    """An analyzer instance whose build() hands it the store view."""

    def __init__(self, base: LoadedConnector, store_view: StoreView) -> None:
        super().__init__(base.cfg, base.cls, base.options)
        self.view = store_view

    def build(self) -> Connector:
        return self.cls(  # type: ignore[call-arg]
            self.cfg.name, self.options, view=self.view, enabled_checks=set(self.enabled_checks)
        )


def bind(settings: Settings, lc: LoadedConnector, engine: Engine) -> LoadedConnector:
    """``lc`` ready to run: an analyzer instance gets the store view; any other instance
    is returned unchanged."""
    if not is_analyzer(lc.cls):
        return lc
    return _Bound(lc, view(settings, engine))


def without_analyzers(chosen: Iterable[LoadedConnector]) -> list[LoadedConnector]:
    """``chosen`` minus the analyzer instances, which run after the sources."""
    return [c for c in chosen if not is_analyzer(c.cls)]


def analyzer_instance(settings: Settings, type_name: str) -> LoadedConnector | None:
    """The configured instance of analyzer ``type_name`` (None when it is disabled), or
    the default instance named by the analyzer's ``default_name``."""
    for c in settings.connectors:
        if c.cfg.type == type_name:
            return c if c.cfg.enabled else None
    cls = available_analyzers()[type_name]
    cfg = ConnectorConfig(type=type_name, name=cls.default_name)
    return LoadedConnector(cfg, analyzer_run(cls), cls.Options())


def inputs(settings: Settings, lc: LoadedConnector) -> set[str]:
    """The source instances analyzer instance ``lc`` would read (empty: nothing to do)."""
    run: type[AnalyzerRun] = lc.cls  # type: ignore[assignment]
    analyzer: Analyzer = run.analyzer(lc.name, lc.options, set(lc.enabled_checks))
    return analyzer.inputs(source_instances(settings))


def run_analyzer(
    type_name: str,
    settings: Settings,
    engine: Engine,
    index: MappingIndex,
    chosen: Iterable[LoadedConnector] | None = None,
    *,
    progress: Callable[[str, int], None] | None = None,
    force: bool = False,
) -> RunSummary | None:
    """Run analyzer ``type_name`` as its own run, or return None when there is nothing
    to do: it is disabled, has no inputs, or — unless ``force`` — this invocation
    (``chosen``: what ``annexa collect`` ran; None = all) collected none of its inputs
    and did not name it."""
    from collector.runner import run_connector

    lc = analyzer_instance(settings, type_name)
    if lc is None:
        return None
    needed = inputs(settings, lc)
    if not needed:
        return None
    if chosen is not None and not force:
        names = {c.name for c in chosen}
        if lc.name not in names and not names & needed:
            return None
    return run_connector(settings, bind(settings, lc, engine), engine, index, progress=progress)


def run_analyzers(
    settings: Settings,
    engine: Engine,
    index: MappingIndex,
    chosen: Iterable[LoadedConnector] | None = None,
) -> list[RunSummary]:
    """Every installed analyzer after a collection of ``chosen``, in ``order``."""
    chosen = None if chosen is None else list(chosen)
    out = []
    for name, _ in sorted(available_analyzers().items(), key=lambda kv: (kv[1].order, kv[0])):
        summary = run_analyzer(name, settings, engine, index, chosen)
        if summary is not None:
            out.append(summary)
    return out

"""The two plugin kinds behind one ``[[connectors]]`` table: connectors and analyzers.

A configured instance names a ``type``: a connector (group ``annexa.connectors``) or an
analyzer (group ``annexa.analyzers``, core/analyzer.py). The run engine drives
connectors; an analyzer is driven through :class:`AnalyzerRun`, a connector whose
``collect`` calls the analyzer on the store view it was bound to
(``collector/analysis.py``). Everything downstream — checks, mappings, runs, digests,
``annexa checks`` — sees one kind of instance.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from functools import cache
from typing import ClassVar

from core.analyzer import Analyzer, EvidenceView, available_analyzers
from core.connector import (
    CollectContext,
    Connector,
    ConnectorOptions,
    available_connectors,
    class_of_type,
)
from core.records import Coverage, Record


class AnalyzerRun(Connector):
    """An analyzer as the run engine's connector; unbound (no view), it reports why."""

    analyzer: ClassVar[type[Analyzer]]

    def __init__(
        self,
        name: str,
        options: ConnectorOptions,
        view: EvidenceView | None = None,
        enabled_checks: Iterable[str] | None = None,
    ) -> None:
        super().__init__(name, options)
        self.view = view
        self.enabled_checks = enabled_checks

    @classmethod
    def checks(cls) -> list:
        return cls.analyzer.checks()

    def collect(self, ctx: CollectContext) -> Iterator[Record]:
        if self.view is None:
            yield Coverage(
                self.analyzer.scope,
                "global",
                "*",
                ok=False,
                error=f"the {self.type} analyzer runs after the sources whose stored evidence "
                "it reads (annexa collect, annexa correlate, the daemon), not on its own",
            )
            return
        analyzer = self.analyzer(self.name, self.options, self.enabled_checks)
        yield from analyzer.analyze(self.view, ctx)


@cache
def analyzer_run(cls: type[Analyzer]) -> type[AnalyzerRun]:
    """The :class:`AnalyzerRun` class of analyzer ``cls`` (one per analyzer class)."""
    return type(
        f"{cls.__name__}Run",
        (AnalyzerRun,),
        {"analyzer": cls, "type": cls.type, "prefix": cls.prefix, "Options": cls.Options},
    )


def is_analyzer(cls: type[Connector]) -> bool:
    return issubclass(cls, AnalyzerRun)


def available_plugins() -> dict[str, type[Connector]]:
    """Every installed connector, and every analyzer as its :class:`AnalyzerRun`."""
    found = dict(available_connectors())
    for name, cls in available_analyzers().items():
        if name in found:
            raise TypeError(f"{name!r} is registered both as a connector and as an analyzer")
        found[name] = analyzer_run(cls)
    return found


def load_plugin(type_name: str) -> type[Connector]:
    """The class of a configured ``type``: a connector, or an analyzer's run."""
    return class_of_type(available_plugins(), type_name)

"""An analyzer's checks are derived from its ``prefix``, exactly as a connector's are.

``Analyzer.checks()`` used to be abstract, and each analyzer filtered the registry by
hand; the base class now derives the set (core/analyzer.py), and no analyzer overrides
it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import ClassVar

import pytest

from core.analyzer import Analyzer, EvidenceView, available_analyzers
from core.checks import CheckRegistry, Verdict, check, passed
from core.connector import CollectContext
from core.records import Record


@pytest.mark.parametrize("name", sorted(available_analyzers()))
def test_each_analyzer_has_the_checks_of_its_prefix_without_overriding(name: str) -> None:
    cls = available_analyzers()[name]
    assert "checks" not in vars(cls), f"{name}: checks() is derived from prefix; keep it so"
    ids = {s.id for s in cls.checks()}
    assert ids, f"{name} registers no check under {cls.prefix}."
    assert ids == {s.id for s in cls.check_registry if s.id.split(".")[0] == cls.prefix}


def _verdict(_resource: object) -> Verdict:
    return passed("fine")


PRIVATE = CheckRegistry()
for _id in ("probe.one", "probe.two", "probely.other", "elsewhere.probe"):
    check(
        id=_id,
        title=_id,
        severity="low",
        resource_type=f"{_id}.thing",
        rationale="a test",
        remediation="none",
        registry=PRIVATE,
    )(_verdict)


class ProbeAnalyzer(Analyzer):
    """An analyzer that only declares its prefix and registry."""

    type = "probe"
    prefix = "probe"
    default_name = "probe"
    check_registry: ClassVar[CheckRegistry] = PRIVATE

    def analyze(self, view: EvidenceView, ctx: CollectContext) -> Iterator[Record]:
        yield from ()


def test_the_default_takes_the_ids_under_the_prefix_and_a_dot_only() -> None:
    assert [s.id for s in ProbeAnalyzer.checks()] == ["probe.one", "probe.two"]
    # Instantiable without an override: checks() is no longer abstract, and by default
    # every derived check is enabled.
    probe = ProbeAnalyzer("probe", ProbeAnalyzer.Options())
    assert probe.enabled_checks == {"probe.one", "probe.two"}

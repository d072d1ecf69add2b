"""An analyzer's checks are derived from its ``prefix``, exactly as a connector's are.

``Analyzer.checks()`` used to be abstract, and each analyzer filtered the registry by
hand; the base class now derives the set (core/analyzer.py), and no analyzer overrides
it without a reason recorded here.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import ClassVar

import pytest

from core.analyzer import Analyzer, EvidenceView, available_analyzers
from core.checks import CheckRegistry, Verdict, check, passed
from core.connector import CollectContext
from core.records import Record

#: Analyzers that keep their own ``checks()``, and why. None today.
OVERRIDES: dict[str, str] = {}


@pytest.mark.parametrize("name", sorted(available_analyzers()))
def test_each_analyzers_checks_are_those_of_its_prefix(name: str) -> None:
    cls = available_analyzers()[name]
    derived = sorted(s.id for s in cls.check_registry if s.id.startswith(f"{cls.prefix}."))
    assert sorted(s.id for s in cls.checks()) == derived
    assert derived, f"{name} registers no check under {cls.prefix}."
    assert ("checks" in vars(cls)) == (name in OVERRIDES), (
        f"{name}: checks() is derived from prefix; override it only with a reason in OVERRIDES"
    )


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

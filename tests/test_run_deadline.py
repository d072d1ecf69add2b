"""The per-run deadline (``collection.run_deadline``) through the real run engine: a
connector still reading when it passes is stopped, and what it had not read is an
``error`` for every check of the instance naming the bound — never a pass by absence."""

from __future__ import annotations

import threading

import structlog

from collector.config import CollectionConfig, ConnectorConfig, LoadedConnector
from collector.runner import drive
from tests.daemon_fixtures import PacedConnector, PacedOptions
from tests.fakes import fake_index
from tests.harness import EngineRun, _Sink


def test_a_run_past_its_deadline_errors_every_check_naming_the_bound(tmp_path) -> None:
    index = fake_index(tmp_path / "maps")
    options = {"records": 100_000, "delay": 0.01, "stamp": False}
    cfg = ConnectorConfig(type="paced", name="p1", options=options)
    lc = LoadedConnector(cfg, PacedConnector, PacedOptions(**options))
    run = EngineRun()
    outer = threading.Event()
    result = drive(
        lc,
        index,
        _Sink(run, lc.name),
        run_id="r1",
        rlog=structlog.get_logger("test"),
        cancel_event=outer,
        deadline=0.5,
    )
    assert not outer.is_set()  # the caller's event (shared by a CLI) is left alone
    assert result.status == "failed"  # nothing had been read completely
    assert 0 < len(run.evidence) < 100_000
    assert any("run_deadline=0.5s passed" in e for e in run.errors)
    [whole] = [c for c in run.coverage if c.service == "*"]
    assert not whole.ok and "run_deadline=0.5s" in (whole.error or "")
    errored = {f.check_id for f in run.findings if f.status == "error"}
    assert errored == set(lc.enabled_checks)
    assert not [f for f in run.findings if f.status == "error" and "run_deadline" not in f.message]


def test_run_deadline_config() -> None:
    assert CollectionConfig().run_deadline_seconds == 6 * 3600
    assert CollectionConfig(run_deadline="90s").run_deadline_seconds == 90
    assert CollectionConfig(run_deadline="0").run_deadline_seconds is None

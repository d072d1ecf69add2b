"""The unit ledger of distributed runs, in process, on a real PostgreSQL.

A real :class:`~collector.daemon.distribute.Distributor` (procrastinate's schema
applied, jobs really deferred) executes units through the run engine, reading a fake
HTTP source on 127.0.0.1 with httpx. Replicas that "died mid-unit" are what they
leave in the database: an attempt begun and never finished.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog
from sqlalchemy import Engine, func, select

from collector.config import load_settings
from collector.daemon.distribute import Distributor, ensure_queue_schema
from mappings.loader import load_mappings
from store.dispatch import begin_unit, units_of
from store.engine import make_engine
from store.integrity import verify
from store.leases import reap_stale
from store.migrate import upgrade
from store.schema import evidence, findings, runs
from tests import replica_fixtures as rfx
from tests.daemon_fixtures import write_config
from tests.replica_fixtures import GateServer

unitized_plugin = rfx.unitized_plugin

DISK = ("a1", "r1", "disk")
USER = ("a1", "r1", "user")


class Env:
    def __init__(self, dist: Distributor, engine: Engine) -> None:
        self.dist = dist
        self.engine = engine
        self.lc = dist.settings.connectors[0]

    def dispatch(self) -> str:
        run_id = "00000000-0000-4000-8000-" + format(id(self) % 10**12, "012d")
        assert self.dist.dispatch(self.lc, run_id) == 2
        return run_id

    def run(self, run_id: str) -> Any:
        with self.engine.connect() as conn:
            return conn.execute(select(runs).where(runs.c.id == run_id)).one()

    def rows(self, table: Any, run_id: str) -> list[Any]:
        with self.engine.connect() as conn:
            return conn.execute(select(table).where(table.c.run_id == run_id)).all()


@pytest.fixture
def env_factory(
    postgres_url: str, unitized_plugin: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Any]:
    # The plugin's .dist-info on sys.path registers the connector, as pip would.
    monkeypatch.syspath_prepend(str(unitized_plugin))
    gate = GateServer(expect=1, victim=-1).start()
    gate.victim_blocked.set()  # no victim here: every request is answered
    made: list[Distributor] = []
    engine = make_engine(postgres_url)
    upgrade(engine)
    ensure_queue_schema(postgres_url)

    def make(**daemon: Any) -> Env:
        cfg = write_config(
            tmp_path / f"c{len(made)}" / "annexa.toml",
            postgres_url,
            connectors=[{
                "type": "unitized", "name": "org", "schedule": "every 1h",
                "options": {"url": gate.url, "scopes": ["a1"], "regions": ["r1"],
                            "records": 2},
            }],
            daemon={"distribute": True, **daemon},
        )
        settings = load_settings(cfg)
        index = load_mappings(settings.mapping_dirs)
        d = settings.model.daemon
        dist = Distributor(
            settings, engine, index, f"test:{len(made)}:x", workers=1,
            attempts=d.unit_attempts, unit_timeout=d.seconds("unit_timeout"),
            heartbeat=0.5, stalled_after=2, grace=1, unit_lock=d.unit_lock,
        )
        dist._defer_app.open()
        made.append(dist)
        return Env(dist, engine)

    yield make
    for dist in made:
        dist._defer_app.close()
    gate.stop()
    engine.dispose()


def test_a_unit_that_exhausts_its_attempts_is_an_error_never_a_pass(env_factory: Any) -> None:
    env = env_factory(unit_attempts=2)
    run_id = env.dispatch()
    # Two replicas began the disk unit and died before finishing it.
    for who in ("dead:1:a", "dead:2:b"):
        with env.engine.begin() as conn:
            assert begin_unit(conn, run_id, DISK, who) is not None
    env.dist._task(run_id, "org", *DISK)  # the third attempt gives up
    assert env.run(run_id).status == "running"  # the user unit is still open
    env.dist._task(run_id, "org", *USER)
    run = env.run(run_id)
    assert run.status == "partial"
    states = {u.unit: (u.state, u.attempts) for u in _units(env, run_id)}
    assert states == {DISK: ("failed", 3), USER: ("done", 1)}
    fi = env.rows(findings, run_id)
    disk = [f for f in fi if f.check_id == "fake.disk.encrypted"]
    assert [(f.status, f.resource_type) for f in disk] == [("error", "fake.disk.unit")]
    assert "gave up after 2 attempts" in disk[0].message
    assert {f.status for f in fi if f.check_id == "fake.user.mfa"} == {"pass"}
    assert any("gave up" in e for e in json.loads(run.errors))
    assert verify(env.engine).ok


def test_a_late_second_attempt_at_a_done_unit_writes_nothing(env_factory: Any) -> None:
    env = env_factory()
    run_id = env.dispatch()
    env.dist._task(run_id, "org", *USER)
    before = len(env.rows(evidence, run_id))
    assert before == 2
    # An attempt that read the unit too (its replica was thought dead) commits last.
    log = structlog.get_logger("test")
    assert env.dist.execute(env.lc, run_id, USER, log) is False
    env.dist._task(run_id, "org", *USER)  # a redelivered job: the unit is final
    assert len(env.rows(evidence, run_id)) == before
    env.dist._task(run_id, "org", *DISK)
    run = env.run(run_id)
    assert run.status == "succeeded"
    with env.engine.connect() as conn:
        keys = conn.execute(
            select(evidence.c.key, func.count()).where(evidence.c.run_id == run_id)
            .group_by(evidence.c.key)
        ).all()
    assert len(keys) == 4 and all(n == 1 for _, n in keys)
    assert json.loads(run.counts)["units"] == 2
    assert verify(env.engine).ok


def test_units_past_their_deadline_time_out_and_the_run_is_sealed_once(
    env_factory: Any,
) -> None:
    env = env_factory(unit_timeout=0)
    run_id = env.dispatch()
    env.dist.sweep()
    run = env.run(run_id)
    assert run.status == "failed"
    assert {u.state for u in _units(env, run_id)} == {"timed_out"}
    fi = env.rows(findings, run_id)
    assert {f.check_id: f.status for f in fi} == {
        "fake.disk.encrypted": "error", "fake.user.mfa": "error"
    }
    assert all("unit_timeout" in f.message for f in fi)
    sealed_at = run.finished_at
    env.dist.sweep()
    assert env.dist.try_seal(run_id, "org") is False
    env.dist._task(run_id, "org", *USER)  # a job delivered after the timeout
    assert env.run(run_id).finished_at == sealed_at
    assert len(env.rows(evidence, run_id)) == 0
    assert verify(env.engine).ok


def test_a_distributed_run_is_not_reaped_before_its_units_deadline(env_factory: Any) -> None:
    env = env_factory(unit_timeout="1h")
    run_id = env.dispatch()
    # No heartbeat for "ever" (stale_after=0): a single-process run would be reaped.
    assert reap_stale(env.engine, stale_after=0, unscheduled_stale_after=0, me="t") == []
    assert env.run(run_id).status == "running"


def _units(env: Env, run_id: str) -> list[Any]:
    with env.engine.connect() as conn:
        return units_of(conn, run_id)


@pytest.mark.parametrize(
    ("unit_lock", "expected"),
    [("scope", {"org:a1"}), ("scope_region", {"org:a1/r1"}), ("none", {None})],
)
def test_units_of_one_account_share_a_queue_lock(
    env_factory: Any, postgres_url: str, unit_lock: str, expected: set[str | None]
) -> None:
    """Per-account rate limits across replicas: every job of one scope carries the same
    procrastinate lock, and procrastinate never runs two jobs of one lock at once on any
    replica. ``unit_lock = "none"`` leaves them unbounded."""
    import psycopg

    env = env_factory(unit_lock=unit_lock)
    run_id = env.dispatch()
    with psycopg.connect(postgres_url.replace("+psycopg", "")) as conn:
        locks = {
            row[0]
            for row in conn.execute(
                "SELECT lock FROM procrastinate_jobs WHERE args->>'run_id' = %s", (run_id,)
            )
        }
    assert locks == expected

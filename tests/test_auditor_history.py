"""Point-in-time answers over a real history, on SQLite and PostgreSQL.

The history is written by the real run writer, run after run, in real time: a
bucket starts failing, an approved exception covers it and then expires, the bucket
is fixed; a manual policy document is recorded and then expires. At every recorded
instant the ``--at`` answer must be the expected one, and the period replay (what
``history`` / ``controls --period`` / the audit package use) must give the same
status for every control at every instant.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine

from core.records import Coverage, Evidence, Finding, utcnow
from mappings.loader import MappingIndex, load_mappings
from store.exceptions import ExceptionRule
from store.manual import add_manual_evidence
from store.queries import findings_at, findings_in_period
from store.status import control_statuses
from store.timelines import control_timelines
from store.writer import RunWriter

pytestmark = pytest.mark.clock

CHECK = "aws.s3.bucket_default_encryption"
CONTROL = "A.8.24"
MANUAL_CONTROL = "A.5.2"  # manual: no check is linked (A.5.1 has policy checks)
ACCOUNT = "123456789012"


@pytest.fixture(scope="module")
def index() -> MappingIndex:
    return load_mappings()


def run(engine: Engine, index: MappingIndex, buckets: dict[str, str], source: str = "prod") -> str:
    """One collection: each bucket's evidence and its encryption finding; a clean unit."""
    w = RunWriter(
        engine, source=source, connector_type="aws", config_digest="c" * 64,
        mapping_digest=index.digest, agent_version="test",
    )
    w.start()
    for name, status in buckets.items():
        ev = Evidence(ACCOUNT, "us-east-1", "aws.s3.bucket", name,
                      {"Name": name, "Encrypted": status == "pass"})
        h = w.add_evidence(ev)
        w.add_finding(
            Finding(CHECK, ACCOUNT, "us-east-1", "aws.s3.bucket", name, status, "high",
                    f"{name} encryption {status}", evidence_hash=h,
                    controls=index.controls_for(CHECK))
        )
    w.add_coverage(Coverage(ACCOUNT, "global", "s3", ok=True))
    summary = w.finish("succeeded")
    return summary.run_id


def instant() -> datetime:
    t = utcnow()
    time.sleep(0.02)  # the next write is strictly later
    return t


@dataclass
class History:
    instants: dict[str, datetime] = field(default_factory=dict)
    rules: list[ExceptionRule] = field(default_factory=list)
    start: datetime = field(default_factory=utcnow)


def build_history(engine: Engine, index: MappingIndex, tmp_path: Path) -> History:
    """The scripted history; returns the named instants and the exception in force.

    Expiries are chosen from instants already recorded (or in the future), so the
    script needs no sleeping and no assumption on how long a run takes.
    """
    h = History()
    # The documented part of A.8.24 (a cryptography policy), valid throughout: the
    # control then passes when its checks do (two-part status).
    crypto = tmp_path / "crypto-policy.pdf"
    crypto.write_bytes(b"%PDF-1.4 cryptography policy\n")
    add_manual_evidence(
        engine, control=CONTROL, file=crypto, valid_until=utcnow() + timedelta(days=300),
        note="cryptography policy", added_by="alice", mapping_digest=index.digest,
        config_digest="c" * 64, agent_version="test",
        valid_from=utcnow() - timedelta(seconds=1),
    )
    h.start = instant()
    run(engine, index, {"logs": "pass", "legacy-export-1": "pass", "old": "pass"})
    h.instants["all_pass"] = instant()
    policy = tmp_path / "policy.pdf"
    policy.write_bytes(b"%PDF-1.4 information security policy v1\n")
    added = add_manual_evidence(
        engine, control=MANUAL_CONTROL, file=policy, valid_until=utcnow() + timedelta(days=1),
        note="ISMS policy approved by the board", added_by="alice", mapping_digest=index.digest,
        config_digest="c" * 64, agent_version="test",
    )
    h.instants["policy_valid"] = instant()
    # "old" disappears (closed by the clean unit), legacy-export-1 starts failing.
    run(engine, index, {"logs": "pass", "legacy-export-1": "fail"})
    failing = instant()
    h.instants["failing_excepted"] = failing
    h.rules.append(
        ExceptionRule(
            id="EX-1", check=CHECK, resource="legacy-export-*", reason="decommissioning",
            approved_by="CISO", expires=failing + timedelta(milliseconds=1),
        )
    )
    h.instants["exception_expired"] = failing + timedelta(milliseconds=2)
    run(engine, index, {"logs": "pass", "legacy-export-1": "pass"})
    h.instants["fixed"] = instant()
    h.instants["policy_expired"] = added.valid_until + timedelta(seconds=1)
    return h


EXPECTED = {
    # instant: (A.8.24, A.5.2)
    "all_pass": ("pass", "manual"),
    "policy_valid": ("pass", "pass"),
    "failing_excepted": ("excepted", "pass"),
    "exception_expired": ("fail", "pass"),
    "fixed": ("pass", "pass"),
    "policy_expired": ("pass", "stale"),
}


def test_at_answers_follow_the_history(engine: Engine, index: MappingIndex, tmp_path: Path) -> None:
    h = build_history(engine, index, tmp_path)
    for name, (auto, manual) in EXPECTED.items():
        at = h.instants[name]
        got = {c.id: c for c in control_statuses(engine, index, at, exceptions=h.rules)}
        assert (got[CONTROL].status, got[MANUAL_CONTROL].status) == (auto, manual), name
    # Without the exception the failure is a failure, also in the past.
    failing = h.instants["failing_excepted"]
    plain = {c.id: c.status for c in control_statuses(engine, index, failing)}
    assert plain[CONTROL] == "fail"
    excepted = {
        c.id: c for c in control_statuses(engine, index, h.instants["failing_excepted"],
                                          exceptions=h.rules)
    }[CONTROL]
    assert excepted.excepted == [f"legacy-export-1 ({CHECK})"] and not excepted.failing
    # Before anything was collected nothing passes.
    before = {c.id: c.status for c in control_statuses(engine, index, h.start)}
    assert before[CONTROL] == "no_evidence" and before[MANUAL_CONTROL] == "manual"
    # The disappeared bucket is gone after its unit was read cleanly, present before.
    with engine.connect() as conn:
        then = {f["resource_id"] for f in findings_at(conn, h.instants["all_pass"])}
        now = {f["resource_id"] for f in findings_at(conn, h.instants["fixed"])}
        population = findings_in_period(conn, h.start, h.instants["fixed"])
    assert "old" in then and "old" not in now
    legacy = [(f["status"], f["valid_to"] is None) for f in population
              if f["resource_id"] == "legacy-export-1"]
    assert legacy == [("pass", False), ("fail", False), ("pass", True)]


def test_period_replay_agrees_with_at_everywhere(
    engine: Engine, index: MappingIndex, tmp_path: Path
) -> None:
    h = build_history(engine, index, tmp_path)
    end = h.instants["policy_expired"]
    timelines = control_timelines(engine, index, h.start, end, exceptions=h.rules)
    assert len(timelines) == 93
    for name, at in h.instants.items():
        snapshot = {c.id: c.status for c in control_statuses(engine, index, at,
                                                             exceptions=h.rules)}
        replayed = {cid: tl.status_at(at) for cid, tl in timelines.items()}
        assert replayed == snapshot, name
    a824 = [s for _, s in timelines[CONTROL].changes]
    # A pass is confirmed by its own observation: no "stale" blip while the first run
    # was still going (its unit's clean read is recorded only when it finishes).
    assert a824 == ["no_evidence", "pass", "excepted", "fail", "pass"]
    assert [s for _, s in timelines[MANUAL_CONTROL].changes] == ["manual", "pass", "stale"]
    # The exception expired at its expiry instant, not at the next run.
    fail_from = timelines[CONTROL].changes[3][0]
    assert fail_from == h.rules[0].expires
    stale_from = timelines[MANUAL_CONTROL].changes[2][0]
    assert stale_from == h.instants["policy_expired"] - timedelta(seconds=1)
    fails = timelines[CONTROL].as_dict()["fail_periods"]
    assert len(fails) == 1
    span = datetime.fromisoformat(fails[0]["to"]) - datetime.fromisoformat(fails[0]["from"])
    assert timedelta(0) < span < timedelta(seconds=30)
    # A single control's history (what `annexa history` asks) is the same.
    one = control_timelines(engine, index, h.start, end, exceptions=h.rules, controls=[CONTROL])
    assert one[CONTROL].changes == timelines[CONTROL].changes


def test_stale_when_units_not_read_within_freshness(engine: Engine, index: MappingIndex) -> None:
    run(engine, index, {"logs": "pass"})
    t = utcnow()
    fresh = {c.id: c.status for c in control_statuses(engine, index, t, timedelta(days=1))}
    later = t + timedelta(days=2)
    old = {c.id: c.status for c in control_statuses(engine, index, later, timedelta(days=1))}
    # No cryptography policy recorded: passing checks are "undocumented"; once their
    # source is no longer read, "stale" outranks it.
    assert fresh[CONTROL] == "undocumented" and old[CONTROL] == "stale"
    tl = control_timelines(engine, index, t, later, timedelta(days=1), controls=[CONTROL])
    changes = tl[CONTROL].changes
    assert [s for _, s in changes] == ["undocumented", "stale"]
    assert changes[1][0] - t < timedelta(days=1, seconds=1)
    assert datetime(2000, 1, 1, tzinfo=UTC) < changes[1][0]

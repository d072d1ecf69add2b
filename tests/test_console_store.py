"""The store reads the console adds: one item's versions, findings by their checks' key
ranges, runs up to an instant — on both engines, against the full walks they shortcut."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Engine

from core.records import Coverage, Evidence, Finding
from store.queries import findings_at, item_versions, list_runs
from store.writer import RunWriter

CHECKS = ["a.s3.x", "a.s3.x_more", "a.s3.xy", "b.iam.y"]  # prefixes of one another


def run(engine: Engine, version: int) -> datetime:
    w = RunWriter(engine, source="src", connector_type="t", config_digest="c" * 64,
                  mapping_digest="m" * 64, agent_version="test")
    w.start()
    for i in range(3):
        eh = w.add_evidence(Evidence("acct", "eu", "a.s3.bucket", f"b{i}", {"v": version, "i": i}))
        for c in CHECKS:
            status = "fail" if (i + version) % 2 else "pass"
            w.add_finding(Finding(c, "acct", "eu", "a.s3.bucket", f"b{i}", status, "high",
                                  f"b{i} {c}", evidence_hash=eh, controls=("A.8.24",)))
    w.add_coverage(Coverage("acct", "eu", "s3", ok=True))
    w.finish("succeeded")
    return datetime.now(UTC)


def test_ranges_versions_and_runs_agree_with_the_full_walk(engine: Engine) -> None:
    first = run(engine, 1)
    run(engine, 2)
    with engine.connect() as conn:
        everything = list(findings_at(conn))
        for wanted in ({"a.s3.x"}, {"a.s3.x", "b.iam.y"}, {"a.s3.xy"}, {"nope"}, set()):
            got = list(findings_at(conn, check_ids=wanted))
            assert got == [f for f in everything if f["check_id"] in wanted], wanted
        then = [f["status"] for f in findings_at(conn, first, check_ids={"a.s3.x"})]
        assert then == ["fail", "pass", "fail"]  # b0, b1, b2 at version 1
        versions = item_versions(conn, "src", "a.s3.bucket|acct|eu|b0")
        assert len(versions) == 2 and versions[0]["id"] < versions[1]["id"]
        assert len(item_versions(conn, "src", "a.s3.bucket|acct|eu|b0", first)) == 1
        fv = item_versions(conn, "src", "a.s3.x|acct|eu|b0", kind="findings")
        assert [v["status"] for v in fv] == ["fail", "pass"] and fv[0]["controls"] == ["A.8.24"]
        assert len(list_runs(conn, at=first)) == 1 and len(list_runs(conn)) == 2

"""SQL for auditors: typed JSON columns that keep every digest, the evidence version each
finding judged, and an upgrade that changes no signed text.

The upgrade test writes its history with the *previous release's own code* (the tree of
:data:`PREVIOUS`, read from this repository's git history and run in a subprocess at
schema 0004), then upgrades with today's code and verifies: nothing of the old code is
imitated here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, insert, select, text

from core.records import Coverage, Evidence, Finding
from core.signing import Signer
from store.engine import make_engine
from store.integrity import verify
from store.migrate import current_revision, upgrade
from store.schema import SignedJSONError, evidence, findings, runs
from store.writer import RunWriter
from tests.tamper import tamper

ROOT = Path(__file__).resolve().parents[1]
#: The last commit of main before migration 0005: its code wrote schema 0004.
PREVIOUS = "31f88a5b889d0fa42cb26608c93a86773829d0a0"
ACCOUNT = "123456789012"


def _previous_tree(dest: Path) -> Path:
    """The packages of :data:`PREVIOUS`, extracted from git into ``dest``."""
    archive = dest / "previous.tar"
    try:
        subprocess.run(
            ["git", "-C", str(ROOT), "archive", "--format=tar", "-o", str(archive), PREVIOUS,
             "collector", "connectors", "core", "mappings", "store"],
            check=True, capture_output=True, timeout=120,
        )
    except (OSError, subprocess.CalledProcessError) as exc:
        detail = getattr(exc, "stderr", b"") or b""
        pytest.fail(f"the previous release's code ({PREVIOUS[:12]}) is not in this checkout's "
                    f"git history: {exc} {detail.decode(errors='replace')}")
    tree = dest / "previous"
    with tarfile.open(archive) as tar:
        tar.extractall(tree, filter="data")
    return tree


# Run by the previous release: every way a run's counts/errors and a finding's controls
# were written — collections (with unit errors in three scripts and a NUL), a change and
# a tombstone, manual evidence, recorded decisions, a run reaped on behalf of a dead
# agent — signed like a production store.
_OLD_WRITER = textwrap.dedent(
    """
    import json, sys
    from datetime import UTC, datetime, timedelta
    from pathlib import Path
    from core.records import Coverage, Evidence, Finding
    from core.signing import Signer
    from store.engine import make_engine
    from store.migrate import upgrade, head_revision
    from store.writer import RunWriter
    from store.sealing import seal_run
    from store.manual import add_manual_evidence
    from store.decisions import record_decisions, exception_decision
    from store.exceptions import ExceptionRule

    url, key_pem, work = sys.argv[1], Path(sys.argv[2]).read_bytes(), Path(sys.argv[3])
    signer = Signer.from_pem(key_pem)
    engine = make_engine(url)
    upgrade(engine)
    assert head_revision() == "0004", head_revision()
    t0 = datetime(2026, 2, 1, 10, 0, tzinfo=UTC)

    def collect(when, users, errors=()):
        w = RunWriter(engine, source="aws-prod", connector_type="aws",
                      config_digest="0" * 64, mapping_digest="1" * 64,
                      agent_version="previous", signer=signer)
        w.start()
        for user, mfa in users:
            arn = f"arn:aws:iam::123456789012:user/{user}"
            h = w.add_evidence(Evidence(scope="123456789012", region="global",
                                        resource_type="aws.iam.user", resource_id=arn,
                                        payload={"UserName": user, "MFA": mfa},
                                        collected_at=when))
            w.add_finding(Finding(check_id="aws.iam.user_console_mfa", scope="123456789012",
                                  region="global", resource_type="aws.iam.user",
                                  resource_id=arn, status="pass" if mfa else "fail",
                                  severity="high", message="ok" if mfa else "no MFA \u2013 café",
                                  evidence_hash=h, observed_at=when,
                                  controls=("A.8.5", "A.5.17")))
        w.add_coverage(Coverage(scope="123456789012", region="global", service="iam", ok=True))
        for e in errors:
            w.add_coverage(Coverage(scope="123456789012", region="eu-west-1", service="s3",
                                    ok=False, error=e))
        return w.finish("partial" if errors else "succeeded")

    collect(t0, [("alice", False), ("bob", True), ("carol", False)],
            errors=["AccessDenied: s3:ListBuckets — no «permission» 日本語 😀",
                    'quote " and backslash \\\\ and tab \\t'])
    collect(t0 + timedelta(days=1), [("alice", True), ("bob", True)])  # carol tombstoned
    doc = work / "policy.pdf"
    doc.write_bytes(b"%PDF-1.4 policy")
    add_manual_evidence(engine, control="A.5.1", file=doc, valid_until=t0 + timedelta(days=400),
                        valid_from=t0, mapping_digest="1" * 64, config_digest="0" * 64,
                        agent_version="previous", added_by="auditee", signer=signer)
    rule = ExceptionRule(id="EX-1", check="aws.iam.user_console_mfa", resource="*carol",
                         reason="leaver", approved_by="CISO", expires=t0 + timedelta(days=90))
    record_decisions(engine, [exception_decision(rule, explicit_id=True)],
                     services=["exceptions"], signer=signer, config_digest="0" * 64,
                     mapping_digest="1" * 64, agent_version="previous")
    w = RunWriter(engine, source="gcp-prod", connector_type="gcp", config_digest="0" * 64,
                  mapping_digest="1" * 64, agent_version="previous", signer=signer)
    w.start()
    w.add_evidence(Evidence(scope="p1", region="global", resource_type="gcp.project",
                            resource_id="p1", payload={"id": "p1"}, collected_at=t0))
    w.flush()
    w.close()  # the agent died: sealed on its behalf, counts from the rows
    with engine.begin() as conn:
        assert seal_run(conn, w.run_id, status="aborted", counts=None,
                        errors=["agent lost: 'heartbeat' stopped"], signer=signer)
    """
)


def _raw_texts(engine: Engine) -> dict[str, object]:
    """Every signed text as the database's own client prints it."""
    with engine.connect() as conn:
        cast = "::text" if engine.dialect.name == "postgresql" else ""
        run_rows = conn.execute(text(
            f"SELECT id, counts{cast}, errors{cast}, digest FROM runs ORDER BY id")).all()
        controls = conn.execute(text(f"SELECT id, controls{cast} FROM findings ORDER BY id")).all()
    return {"runs": [tuple(r) for r in run_rows], "controls": [tuple(r) for r in controls]}


def test_upgrade_keeps_every_digest_written_by_the_previous_release(
    db_url: str, tmp_path: Path
) -> None:
    signer = Signer.generate()
    key = tmp_path / "signing.pem"
    key.write_bytes(signer.private_pem())
    tree = _previous_tree(tmp_path)
    script = tmp_path / "old_writer.py"
    script.write_text(_OLD_WRITER)
    env = {**os.environ, "PYTHONPATH": str(tree)}
    done = subprocess.run([sys.executable, str(script), db_url, str(key), str(tmp_path)],
                          env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]

    engine = make_engine(db_url)
    try:
        assert current_revision(engine) == "0004"
        before = _raw_texts(engine)
        with engine.connect() as conn:
            digests = dict(conn.execute(select(runs.c.id, runs.c.digest)).all())
        assert len(digests) == 5 and all(digests.values())
        assert any("\\u65e5" in str(r[2]) for r in before["runs"])  # escaped as written

        upgrade(engine)

        assert current_revision(engine) != "0004"
        result = verify(engine, trusted_keys={signer.key_id: signer.public})
        assert result.ok, result.problems
        assert result.runs_checked == 5 and result.signed == 5
        with engine.connect() as conn:
            assert dict(conn.execute(select(runs.c.id, runs.c.digest)).all()) == digests
            # Through the store, every text is the one that was signed, byte for byte.
            old_runs = {r[0]: r[1:3] for r in before["runs"]}
            for rid, counts, errors in conn.execute(select(runs.c.id, runs.c.counts,
                                                           runs.c.errors)):
                assert (counts, errors) == old_runs[rid]
            old_controls = dict(before["controls"])
            for fid, controls, evid in conn.execute(
                select(findings.c.id, findings.c.controls, findings.c.evidence_id)
            ):
                assert controls == old_controls[fid]
                assert evid is None  # rows written before the column: left NULL
            _assert_json_typed(conn, engine.dialect.name)

        # Today's writer continues the chains; the new rows name their evidence version.
        new = RunWriter(engine, source="aws-prod", connector_type="aws",
                        config_digest="0" * 64, mapping_digest="1" * 64,
                        agent_version="next", signer=signer)
        new.start()
        when = datetime(2026, 2, 3, 10, 0, tzinfo=UTC)
        h = new.add_evidence(_user("alice", False, when))
        new.add_finding(_mfa("alice", False, h, when))
        new.add_coverage(Coverage(scope=ACCOUNT, region="global", service="iam", ok=True))
        new.add_error("a NUL \x00 and a lone surrogate \udc80 from a vendor")
        summary = new.finish("partial")
        result = verify(engine, trusted_keys={signer.key_id: signer.public})
        assert result.ok, result.problems
        with engine.connect() as conn:
            (stored,) = conn.execute(
                select(runs.c.errors).where(runs.c.id == summary.run_id)).one()
            assert json.loads(stored) == ["a NUL \ufffd and a lone surrogate \ufffd from a vendor"]
            judged = conn.execute(
                select(findings.c.evidence_id, evidence.c.content_hash, evidence.c.run_id)
                .join(evidence, evidence.c.id == findings.c.evidence_id)
                .where(findings.c.run_id == summary.run_id)
            ).all()
            assert judged == [(judged[0][0], h, summary.run_id)]
    finally:
        engine.dispose()


def _assert_json_typed(conn, dialect: str) -> None:
    if dialect == "postgresql":
        types = dict(conn.execute(text(
            "SELECT table_name || '.' || column_name, data_type FROM information_schema.columns "
            "WHERE column_name IN ('counts', 'errors', 'controls') "
            "AND table_name IN ('runs', 'findings')")).all())
        assert types == {"runs.counts": "jsonb", "runs.errors": "jsonb",
                         "findings.controls": "jsonb"}
    else:
        for table, cols in (("runs", ("counts", "errors")), ("findings", ("controls",))):
            declared = {r[1]: r[2] for r in conn.execute(text(f"PRAGMA table_info({table})"))}
            assert all(declared[c] == "JSON" for c in cols), declared


def _user(user: str, mfa: bool, when: datetime, body: dict | None = None) -> Evidence:
    return Evidence(scope=ACCOUNT, region="global", resource_type="aws.iam.user",
                    resource_id=f"arn:aws:iam::{ACCOUNT}:user/{user}",
                    payload=body or {"UserName": user, "MFA": mfa}, collected_at=when)


def _mfa(user: str, mfa: bool, h: str | None, when: datetime) -> Finding:
    return Finding(check_id="aws.iam.user_console_mfa", scope=ACCOUNT, region="global",
                   resource_type="aws.iam.user", resource_id=f"arn:aws:iam::{ACCOUNT}:user/{user}",
                   status="pass" if mfa else "fail", severity="high",
                   message="ok" if mfa else "no MFA", evidence_hash=h, observed_at=when,
                   controls=("A.8.5",))


def _collect(engine: Engine, when: datetime, users: dict[str, bool],
             same_body: bool = False) -> str:
    w = RunWriter(engine, source="aws-prod", connector_type="aws", config_digest="0" * 64,
                  mapping_digest="1" * 64, agent_version="t", batch_size=2)
    w.start()
    for user, mfa in users.items():
        body = {"MFA": mfa} if same_body else None  # identical bodies for different users
        h = w.add_evidence(_user(user, mfa, when, body))
        w.add_finding(_mfa(user, mfa, h, when))
    w.add_coverage(Coverage(scope=ACCOUNT, region="global", service="iam", ok=True))
    return w.finish("succeeded").run_id


def test_each_finding_names_the_evidence_version_it_judged(engine: Engine) -> None:
    """A → B → A flips, an unchanged re-read, and two users whose bodies are identical:
    joining on the hash alone would give each finding two evidence rows."""
    t0 = datetime(2026, 3, 1, tzinfo=UTC)
    flips = [False, True, True, False]  # the third run re-reads an unchanged state
    for i, mfa in enumerate(flips):
        _collect(engine, t0 + timedelta(days=i), {"alice": mfa, "bob": mfa}, same_body=True)
    with engine.connect() as conn:
        rows = conn.execute(text(
            "SELECT f.resource_id, f.valid_from, e.resource_id, e.valid_from, e.content_hash, "
            "f.evidence_hash FROM findings_history f JOIN evidence_history e "
            "ON e.id = f.evidence_id ORDER BY f.resource_id, f.valid_from")).all()
        unjudged = conn.execute(text(
            "SELECT count(*) FROM findings WHERE evidence_id IS NULL")).scalar_one()
        by_hash = conn.execute(text(
            "SELECT count(*) FROM findings_history f JOIN evidence_history e "
            "ON e.content_hash = f.evidence_hash")).scalar_one()
    assert unjudged == 0
    # alice and bob: a version at each change (runs 1, 2, 4), each with its own evidence.
    assert len(rows) == 6
    for f_res, f_from, e_res, e_from, e_hash, f_hash in rows:
        assert e_res == f_res and e_hash == f_hash
        assert e_from == f_from  # the version read by the same run, not the older A
    assert by_hash > len(rows), "joined on the hash alone, findings meet other users' evidence"


def test_verify_names_a_finding_whose_evidence_id_was_altered(
    engine: Engine, db_url: str
) -> None:
    t0 = datetime(2026, 3, 1, tzinfo=UTC)
    _collect(engine, t0, {"alice": False, "bob": True})
    assert verify(engine).ok
    with engine.connect() as conn:
        alice, bob = conn.execute(
            select(findings.c.id, findings.c.evidence_id).order_by(findings.c.resource_id)).all()
    # Not covered by the finding hash (no digest changed): checked against what is.
    tamper(db_url, f"UPDATE findings SET evidence_id = {bob[1]} WHERE id = {alice[0]}")
    result = verify(engine)
    assert not result.ok
    (problem,) = result.problems
    assert f"evidence_id {bob[1]}" in problem.reason and "alice" in problem.reason


@pytest.mark.parametrize("written", [
    '["A.8.5","A.5.17"]',          # not the writers' form: spaces, order
    '{"b": 1, "a": 2}',            # keys unsorted: jsonb would reorder them
    '["\\u0000"]',                 # jsonb refuses NUL
])
def test_a_signed_json_text_the_database_cannot_give_back_is_refused(
    engine: Engine, written: str
) -> None:
    with engine.begin() as conn, pytest.raises(Exception) as caught:
        conn.execute(insert(runs).values(
            id="r", source="s", connector_type="t", status="running",
            started_at=datetime.now(UTC), agent_version="t", config_digest="0" * 64,
            mapping_digest="0" * 64, counts=written))
    assert isinstance(caught.value.orig if hasattr(caught.value, "orig") else caught.value,
                      SignedJSONError)

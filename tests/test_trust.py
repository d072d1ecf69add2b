"""Evidence that survives an adversary (issue: trust), on SQLite and PostgreSQL.

Each test plays someone with write access to the database — or to an exported
package — and checks that what they did either changes no answer or is named by
``verify`` / ``verify-package``. The collector runs through the real run engine
(``run_connector``) with a scripted connector plugin; the attacker uses plain SQL, or
the store's own writer without the signing key.
"""

from __future__ import annotations

import base64
import json
import os
import uuid
import zipfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, delete, insert, select, text

from collector.config import SecretRef, Settings, SigningConfig
from collector.decisions import file_decisions, sync
from collector.runner import run_connector
from core.csvsafe import neutralise, restore
from core.signing import PublicKey, Signer
from exports.package import build_package
from exports.verify import verify_package
from mappings.loader import MappingIndex
from store.decisions import recorded_exceptions
from store.integrity import verify
from store.queries import findings_at
from store.retention import apply_retention
from store.schema import blobs, evidence, findings, retention_log, runs
from store.status import control_statuses
from store.writer import RunWriter
from tests.fakes import FakeConnector, estate, fake_settings, index
from tests.forgery import rezip, unzip
from tests.tamper import tamper
from tests.tsa import local_tsa

__all__ = ["index", "local_tsa"]  # fixtures

KEY_ENV = "ANNEXA_TEST_SIGNING_KEY"


@pytest.fixture
def signer(monkeypatch: pytest.MonkeyPatch) -> Signer:
    s = Signer.generate()
    monkeypatch.setenv(KEY_ENV, s.private_pem().decode())
    return s


def settings_for(db_url: str, **kw: object) -> Settings:
    settings = fake_settings(db_url, **kw)
    settings.model.signing = SigningConfig(key=SecretRef(env=KEY_ENV))
    return settings


def collect(engine: Engine, index: MappingIndex, records: list, db_url: str = "x"):
    FakeConnector.script = records
    settings = settings_for(db_url)
    return run_connector(settings, settings.connectors[0], engine, index)


def documented(
    engine: Engine, index: MappingIndex, tmp_path: Path, control: str, signer: Signer
) -> None:
    """Record the control's documented part (its policy), valid for a month."""
    from store.manual import add_manual_evidence

    doc = tmp_path / f"{control}-policy.pdf"
    doc.write_bytes(b"%PDF-1.4 policy\n")
    now = datetime.now(UTC)
    add_manual_evidence(
        engine, control=control, file=doc, valid_from=now - timedelta(seconds=1),
        valid_until=now + timedelta(days=30), mapping_digest=index.digest,
        config_digest="c" * 64, agent_version="t", added_by="alice", signer=signer,
    )


def statuses(engine: Engine, index: MappingIndex, at: datetime | None = None, **kw) -> dict:
    return {c.id: c.status for c in control_statuses(engine, index, at, **kw)
            if c.id in ("A.8.5", "A.8.24")}


FAILING = estate({"d1": False, "d2": True}, {"alice": False, "bob": True})


def _failing_rows(engine: Engine) -> list[dict]:
    with engine.connect() as conn:
        return [dict(f) for f in findings_at(conn, status="fail")]


def _insert_as_pass(engine: Engine, rows: list[dict], run_id: str) -> None:
    """Plain INSERTs, no trigger touched: each failing finding again, now 'pass'."""
    with engine.begin() as conn:
        for f in rows:
            row = {k: f[k] for k in f if k not in ("id",)}
            row.update(
                run_id=run_id,
                status="pass",
                message="fixed",
                controls=json.dumps(f["controls"]),
                observed_at=datetime.now(UTC),
            )
            conn.execute(insert(findings).values(**row))


def test_orphan_rows_change_no_status_and_verify_names_them(engine, index, signer):
    collect(engine, index, FAILING)
    before = statuses(engine, index)
    assert before == {"A.8.5": "fail", "A.8.24": "fail"}
    orphan_run = str(uuid.uuid4())
    _insert_as_pass(engine, _failing_rows(engine), orphan_run)
    assert statuses(engine, index) == before  # the forged passes count for nothing
    result = verify(engine)
    assert not result.ok
    (problem,) = [p for p in result.problems if p.run_id == orphan_run]
    assert "orphans" in problem.reason and "2 findings row(s)" in problem.reason
    assert "fake.disk.encrypted" in problem.reason or "d1" in problem.reason


def test_rows_under_a_running_run_are_not_evidence(engine, index, signer):
    collect(engine, index, FAILING)
    run_id = str(uuid.uuid4())
    now = datetime.now(UTC)
    with engine.begin() as conn:
        conn.execute(
            insert(runs).values(
                id=run_id, source="fake-1", connector_type="fake", status="running",
                started_at=now, heartbeat_at=now - timedelta(hours=1), host="forged",
                agent_version="x", config_digest="0" * 64, mapping_digest="0" * 64,
            )
        )
    _insert_as_pass(engine, _failing_rows(engine), run_id)
    assert statuses(engine, index) == {"A.8.5": "fail", "A.8.24": "fail"}
    result = verify(engine, allow_running=timedelta(minutes=2))  # its heartbeat is stale
    named = [p for p in result.problems if p.run_id == run_id]
    assert named and "not sealed" in named[0].reason


def test_a_run_sealed_by_someone_without_the_key_fails_trusted_verification(
    engine, index, signer, tmp_path
):
    documented(engine, index, tmp_path, "A.8.24", signer)
    first = collect(engine, index, FAILING)
    assert first.key_id == signer.key_id
    # The attacker drives the store's own writer: only the INSERTs and the seal UPDATE
    # the triggers allow. The chain is correct, so plain `verify` cannot tell...
    forged = RunWriter(
        engine, source="fake-1", connector_type="fake", config_digest="c" * 64,
        mapping_digest=index.digest, agent_version="0.1.0",
    )
    forged.start()
    for r in estate({"d1": True, "d2": True}, {"alice": True, "bob": True}):
        if hasattr(r, "payload"):
            forged.add_evidence(r)
        else:
            forged.add_coverage(r)
    with engine.connect() as conn:
        fails = [f for f in findings_at(conn, status="fail")]
    from core.records import Finding

    for f in fails:
        forged.add_finding(
            Finding(check_id=f["check_id"], scope=f["scope"], region=f["region"],
                    resource_type=f["resource_type"], resource_id=f["resource_id"],
                    status="pass", severity=f["severity"], message="ok",
                    controls=tuple(f["controls"]))
        )
    summary = forged.finish("succeeded")
    assert statuses(engine, index) == {"A.8.5": "pass", "A.8.24": "pass"}
    assert verify(engine).ok  # consistent, but...
    trusted = {signer.key_id: signer.public}
    result = verify(engine, trusted_keys=trusted)
    assert [p.run_id for p in result.problems] == [summary.run_id]
    assert "not signed" in result.problems[0].reason
    # ...and one signed with the attacker's own key is not trusted either.
    other = Signer.generate()
    forged2 = RunWriter(
        engine, source="fake-1", connector_type="fake", config_digest="c" * 64,
        mapping_digest=index.digest, agent_version="0.1.0", signer=other,
    )
    forged2.start()
    s2 = forged2.finish("succeeded")
    result = verify(engine, trusted_keys=trusted)
    assert {p.run_id for p in result.problems} == {summary.run_id, s2.run_id}
    assert any(other.key_id in p.reason and "not among the trusted keys" in p.reason
               for p in result.problems)


def test_a_signature_over_another_digest_is_refused(engine, index, db_url, signer):
    first = collect(engine, index, FAILING, db_url)
    second = collect(engine, index, FAILING, db_url)
    with engine.connect() as conn:
        sig1 = conn.execute(select(runs.c.signature).where(runs.c.id == first.run_id)).scalar()
    tamper(db_url, f"UPDATE runs SET signature = '{sig1}' WHERE id = '{second.run_id}'")
    result = verify(engine, trusted_keys={signer.key_id: signer.public})
    assert [p.run_id for p in result.problems] == [second.run_id]
    assert "does not match the run's digest" in result.problems[0].reason


def test_an_edited_row_of_a_killed_run_is_named_after_recovery(engine, index, db_url, signer):
    collect(engine, index, FAILING, db_url)
    # A collector killed mid-run: its run and rows stay, nothing sealed them.
    settings = settings_for(db_url)
    killed = RunWriter(
        engine, source="fake-1", connector_type="fake", config_digest=settings.digest(),
        mapping_digest=index.digest, agent_version="0.1.0",
    )
    killed.start()
    killed.add_evidence(estate({"d9": False}, {})[0])
    killed.flush()
    killed._conn.close()  # the process is gone; its heartbeat stops
    killed._conn = None
    tamper(db_url, f"UPDATE runs SET heartbeat_at = started_at - interval '1 hour' "
           f"WHERE id = '{killed.run_id}'" if engine.dialect.name == "postgresql" else
           f"UPDATE runs SET heartbeat_at = '2000-01-01 00:00:00.000000' "
           f"WHERE id = '{killed.run_id}'")
    # The next run of the source seals it first (no daemon needed), signed and chained.
    collect(engine, index, FAILING, db_url)
    with engine.connect() as conn:
        row = conn.execute(select(runs).where(runs.c.id == killed.run_id)).mappings().one()
    assert row["status"] == "aborted" and row["signature"] and "no heartbeat" in row["errors"]
    trusted = {signer.key_id: signer.public}
    assert verify(engine, trusted_keys=trusted).ok
    tamper(db_url, f"UPDATE evidence SET content_hash = '{'0' * 64}' "
           f"WHERE run_id = '{killed.run_id}'")
    result = verify(engine, trusted_keys=trusted)
    assert {p.run_id for p in result.problems} == {killed.run_id}


def test_a_row_added_under_a_sealed_run_is_named(engine, index, db_url, signer):
    first = collect(engine, index, FAILING, db_url)
    with engine.connect() as conn:
        row = dict(
            conn.execute(select(evidence).where(evidence.c.run_id == first.run_id).limit(1))
            .mappings()
            .one()
        )
    row.pop("id")
    row.update(key=row["key"] + "-copy", resource_id="sneaky")
    with engine.begin() as conn:
        conn.execute(insert(evidence).values(**row))
    result = verify(engine)
    reasons = " ".join(p.reason for p in result.problems if p.run_id == first.run_id)
    assert "digest mismatch" in reasons and "its digest does not cover" in reasons
    assert "-copy" in reasons


def test_a_forged_retention_entry_removing_a_body_in_force_is_detected(
    engine, index, db_url, signer
):
    collect(engine, index, FAILING, db_url)
    with engine.connect() as conn:
        h = conn.execute(
            select(evidence.c.content_hash).where(evidence.c.resource_id == "d1")
        ).scalar_one()
    # The blobs guard lets a body go when a retention_log row naming it comes first.
    if engine.dialect.name == "sqlite":
        with engine.begin() as conn:
            rowid = conn.execute(text(f"SELECT rowid FROM blobs WHERE hash = '{h}'")).scalar()
            conn.execute(
                insert(retention_log).values(
                    hash=h, size=10, cutoff=datetime(2000, 1, 1, tzinfo=UTC), keep="1d",
                    removed_at=datetime.now(UTC), removed_by="mallory", token=rowid,
                )
            )
            conn.execute(delete(blobs).where(blobs.c.hash == h))
    else:
        with engine.begin() as conn:
            txid = conn.execute(text("SELECT txid_current()")).scalar()
            conn.execute(
                insert(retention_log).values(
                    hash=h, size=10, cutoff=datetime(2000, 1, 1, tzinfo=UTC), keep="1d",
                    removed_at=datetime.now(UTC), removed_by="mallory", token=txid,
                )
            )
            conn.execute(delete(blobs).where(blobs.c.hash == h))
    result = verify(engine)
    assert any("still in force" in p.reason for p in result.problems), result.problems
    result = verify(engine, trusted_keys={signer.key_id: signer.public})
    assert any("not signed" in p.reason and p.run_id.startswith("retention#")
               for p in result.problems)


def test_genuine_retention_is_signed_and_verifies(engine, index, db_url, signer):
    collect(engine, index, estate({"d1": False}, {}), db_url)
    collect(engine, index, estate({"d1": True}, {}), db_url)  # d1's old body superseded
    res = apply_retention(
        engine, timedelta(seconds=0), "0d", removed_by="ops", signer=signer,
        now=datetime.now(UTC) + timedelta(seconds=1),
    )
    assert res.bodies == 1
    trusted = {signer.key_id: signer.public}
    assert verify(engine, trusted_keys=trusted).ok
    # A configured minimum retention longer than what was kept is a problem.
    result = verify(engine, trusted_keys=trusted, retention_keep=timedelta(days=30))
    assert any("minimum retention" in p.reason for p in result.problems)


def test_a_backdated_exception_never_changes_an_earlier_answer(
    engine, index, db_url, signer, tmp_path
):
    documented(engine, index, tmp_path, "A.8.24", signer)
    collect(engine, index, FAILING, db_url)
    before_recording = datetime.now(UTC)
    month_ago = (before_recording - timedelta(days=30)).date().isoformat()
    exc_file = tmp_path / "exceptions.toml"
    exc_file.write_text(
        f"""
[[exception]]
id = "EX-1"
check = "fake.disk.encrypted"
resource = "d1"
reason = "legacy disk"
approved_by = "CISO"
approved_on = {month_ago}
expires = 2099-01-01
"""
    )
    settings = settings_for(db_url)
    settings.path = tmp_path / "annexa.toml"
    settings.model.audit.exceptions_file = exc_file
    known = {"fake.disk.encrypted", "fake.user.mfa"}
    summary = sync(settings, engine, index, file_decisions(settings, index, known))
    assert summary is not None and summary.key_id == signer.key_id
    assert sync(settings, engine, index, file_decisions(settings, index, known)) is None
    with engine.connect() as conn:
        (rule,) = recorded_exceptions(conn)
    assert rule.backdated and rule.recorded_at > before_recording
    # Before the recording, A.8.24 failed, whatever approved_on says; after, excepted.
    assert statuses(engine, index, before_recording, exceptions=[rule])["A.8.24"] == "fail"
    assert statuses(engine, index, None, exceptions=[rule])["A.8.24"] == "excepted"
    # Removing it from the file revokes it from the next sync on, not before.
    exc_file.write_text("")
    revoke = sync(settings, engine, index, file_decisions(settings, index, known))
    assert revoke is not None and revoke.counts["evidence_closed"] == 1
    with engine.connect() as conn:
        (rule,) = recorded_exceptions(conn)
    assert rule.revoked_at is not None
    assert rule.recorded_at is not None
    between = rule.recorded_at + (rule.revoked_at - rule.recorded_at) / 2
    assert not rule.active(datetime.now(UTC)) and rule.active(between)
    trusted = {signer.key_id: signer.public}
    assert verify(engine, trusted_keys=trusted).ok


# -- packages ------------------------------------------------------------------------------


@pytest.fixture
def package(engine, index, db_url, signer, tmp_path) -> Iterator[tuple[Path, dict]]:
    start = datetime.now(UTC) - timedelta(seconds=1)
    hostile = estate({"d1": False}, {"=HYPERLINK(\"http://x\",\"y\")": False})
    collect(engine, index, hostile, db_url)
    collect(engine, index, estate({"d1": True}, {"alice": True}), db_url)
    end = datetime.now(UTC) + timedelta(seconds=1)
    from mappings.soa import default_scope

    out = tmp_path / "audit.zip"
    build_package(
        engine, index, start=start, end=end, out=out, freshness=timedelta(days=7),
        exceptions=[], scope=default_scope(index.catalog), agent_version="t", signer=signer,
    )
    yield out, {signer.key_id: signer.public}


def _rewrite(src: Path, dst: Path, edit, *, rehash: bool) -> None:
    """Rewrite a package: ``edit(files)`` changes contents; ``rehash`` fixes the manifest."""
    files = unzip(src)
    edit(files)
    rezip(files, dst, rehash=rehash)


def test_a_signed_package_verifies_offline_and_against_the_database(package, engine):
    path, trusted = package
    res = verify_package(path, trusted_keys=trusted, engine=engine)
    assert res.ok, res.problems
    assert res.signed_by in trusted and res.runs_signed == res.runs_recomputed >= 2
    assert res.rows_compared > 0


def _cell(files: dict) -> None:
    text_ = files["findings.csv"].decode()
    files["findings.csv"] = text_.replace(",fail,", ",pass,", 1).encode()


def _repoint(files: dict) -> None:
    rows = files["evidence.csv"].decode().splitlines()
    head = rows[0].split(",")
    i = head.index("run_id")
    cells = rows[1].split(",")
    cells[i] = str(uuid.uuid4())
    rows[1] = ",".join(cells)
    files["evidence.csv"] = ("\n".join(rows) + "\n").encode()


def _strip_signature(files: dict) -> None:
    m = json.loads(files["manifest.json"])
    m.pop("signature")
    files["manifest.json"] = json.dumps(m).encode()


def _other_key(files: dict) -> None:
    from exports.package import manifest_digest

    other = Signer.generate()
    m = json.loads(files["manifest.json"])
    m["signature"] = {"key_id": other.key_id,
                      "value": other.sign("annexa-package-v1", manifest_digest(m))}
    files["manifest.json"] = json.dumps(m).encode()


@pytest.mark.parametrize(
    ("edit", "rehash", "expected"),
    [
        (_cell, False, "SHA-256 does not match"),
        (_cell, True, "signature by key"),
        (_repoint, True, "is not among the package's runs"),
        (_strip_signature, False, "not signed"),
        (_other_key, False, "not among the trusted keys"),
    ],
    ids=["one-cell", "rehashed", "repointed-rows", "signature-stripped", "other-key"],
)
def test_an_altered_package_fails_verification(package, tmp_path, edit, rehash, expected):
    path, trusted = package
    bad = tmp_path / "bad.zip"
    _rewrite(path, bad, edit, rehash=rehash)
    res = verify_package(bad, trusted_keys=trusted)
    assert not res.ok
    assert any(expected in p.reason for p in res.problems), res.problems


def test_formula_cells_are_neutralised_in_package_csvs_and_read_back(package):
    path, trusted = package
    with zipfile.ZipFile(path) as zf:
        findings_csv = zf.read("findings.csv").decode()
        evidence_csv = zf.read("evidence.csv").decode()
    assert "'=HYPERLINK" in findings_csv and ",=HYPERLINK" not in findings_csv
    assert "'=HYPERLINK" in evidence_csv
    # Hashes are recomputed from the restored cells: the package still verifies.
    assert verify_package(path, trusted_keys=trusted).ok


@pytest.mark.parametrize("value", ["=1+1", "+1", "-1", "@SUM(A1)", "\tx", "\rx", "'=x", "'a", "a"])
def test_neutralise_is_undone_exactly(value):
    assert restore(neutralise(value)) == value
    assert not neutralise(value).startswith(("=", "+", "-", "@", "\t", "\r"))


def test_public_key_lines_round_trip_and_a_wrong_id_is_refused():
    from core.signing import SigningKeyError, parse_public_keys

    s = Signer.generate()
    keys = parse_public_keys(s.public.line() + " ops team\n# comment\n")
    assert keys[s.key_id].raw == s.public.raw
    bad = s.public.line().replace(s.key_id, "0" * 16)
    with pytest.raises(SigningKeyError, match="does not match"):
        parse_public_keys(bad)
    assert PublicKey.from_b64(base64.b64encode(s.public.raw).decode()).id == s.key_id
    os.environ.pop("UNUSED", None)


# -- RFC 3161 time stamps ---------------------------------------------------------------


def test_runs_are_time_stamped_and_tokens_verify_offline(engine, index, db_url, signer,
                                                        local_tsa, tmp_path):
    from core.timestamping import load_roots
    from store.timestamps import tokens

    authority, url, roots_pem = local_tsa
    roots = load_roots(roots_pem)

    def collect_stamped(records: list) -> object:
        FakeConnector.script = records
        settings = settings_for(db_url)
        settings.model.signing.tsa_url = url
        return run_connector(settings, settings.connectors[0], engine, index)

    first = collect_stamped(FAILING)
    with engine.connect() as conn:
        (t,) = list(tokens(conn))
    assert t["run_id"] == first.run_id and t["digest"] == first.digest
    result = verify(engine, trusted_keys={signer.key_id: signer.public}, tsa_roots=roots)
    assert result.ok and result.timestamps_checked == 1, result.problems
    # The TSA is down: the run is sealed all the same, and stamped by the next run.
    authority.up = False
    second = collect_stamped(FAILING)
    with engine.connect() as conn:
        assert {t["run_id"] for t in tokens(conn)} == {first.run_id}
    authority.up = True
    third = collect_stamped(FAILING)
    with engine.connect() as conn:
        stamped = {t["run_id"] for t in tokens(conn)}
    assert stamped == {first.run_id, second.run_id, third.run_id}
    assert verify(engine, tsa_roots=roots).ok
    # Another TSA's root does not vouch for these tokens.
    from tests.tsa import LocalTsa

    stranger = load_roots_from(LocalTsa().root_pem(), tmp_path)
    bad = verify(engine, tsa_roots=stranger)
    assert not bad.ok and all("time stamp" in p.reason for p in bad.problems)
    # A package carries the tokens; verify-package checks them offline.
    from mappings.soa import default_scope

    out = tmp_path / "audit.zip"
    build_package(
        engine, index, start=datetime.now(UTC) - timedelta(hours=1),
        end=datetime.now(UTC) + timedelta(seconds=1), out=out, freshness=timedelta(days=7),
        exceptions=[], scope=default_scope(index.catalog), agent_version="t", signer=signer,
    )
    res = verify_package(out, trusted_keys={signer.key_id: signer.public}, tsa_roots=roots)
    assert res.ok and res.timestamps_verified == 3, res.problems


def test_a_token_moved_to_another_run_is_refused(engine, index, db_url, signer, local_tsa):
    from core.timestamping import load_roots

    _, url, roots_pem = local_tsa
    FakeConnector.script = FAILING
    settings = settings_for(db_url)
    settings.model.signing.tsa_url = url
    a = run_connector(settings, settings.connectors[0], engine, index)
    b = run_connector(settings, settings.connectors[0], engine, index)
    with engine.connect() as conn:
        token_a = conn.execute(
            text(f"SELECT token FROM run_timestamps WHERE run_id = '{a.run_id}'")
        ).scalar()
    tamper(db_url, f"UPDATE run_timestamps SET token = '{token_a}' "
           f"WHERE run_id = '{b.run_id}'")
    result = verify(engine, tsa_roots=load_roots(roots_pem))
    assert [p.run_id for p in result.problems] == [b.run_id]
    assert "does not verify" in result.problems[0].reason


def load_roots_from(pem: bytes, tmp_path: Path) -> list:
    from core.timestamping import load_roots

    p = tmp_path / f"other-{uuid.uuid4().hex}.pem"
    p.write_bytes(pem)
    return load_roots(p)

"""Every run ends sealed, whatever happens to the ``annexa collect`` process.

Real ``annexa collect`` processes collect a paced connector plugin (registered through
an entry point, as a third-party package would); the tests interrupt them with
SIGINT, kill them with SIGKILL, or cut their PostgreSQL connection through a TCP
proxy, then check what the database holds: the run sealed (``aborted`` or written from
its journal under its own id), every record read before the event stored exactly
once, and ``verify --trusted-keys`` passing. No test races a sleep against a timer:
each waits for a condition (records in the journal, the process's exit).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, select

from core.signing import Signer, write_private_key
from store.engine import make_engine
from store.migrate import upgrade
from store.schema import evidence, findings, runs
from tests.daemon_fixtures import REPO, TcpProxy, pg_proxy, plugin_path, wait_for, write_config

__all__ = ["pg_proxy", "plugin_path"]

ANNEXA = [sys.executable, "-m", "collector"]


@pytest.fixture
def spool(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    d = tmp_path / "spool"
    monkeypatch.setenv("ANNEXA_SPOOL_DIR", str(d))
    return d


@pytest.fixture
def key(tmp_path: Path) -> tuple[Path, Path]:
    signer = Signer.generate()
    priv = tmp_path / "signing.key"
    write_private_key(signer, priv)
    pub = tmp_path / "trusted.pub"
    pub.write_text(signer.public.line() + "\n")
    return priv, pub


def config(tmp_path: Path, db_url: str, key: Path, *, records: int, delay: float,
           name: str = "annexa.toml") -> Path:
    cfg = write_config(
        tmp_path / name,
        db_url,
        connectors=[
            {
                "type": "paced",
                "name": "paced-1",
                "options": {"records": records, "delay": delay, "stamp": False},
            }
        ],
    )
    cfg.write_text(cfg.read_text() + f'[signing]\nkey = {{ file = "{key}" }}\n')
    return cfg


def env(plugin: Path) -> dict[str, str]:
    e = {**os.environ, "PYTHONPATH": os.pathsep.join([str(plugin), str(REPO)])}
    e.pop("ANNEXA_CONFIG", None)
    e.pop("ANNEXA_DATABASE_URL", None)
    return e


def start(cfg: Path, plugin: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*ANNEXA, "collect", "--config", str(cfg)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env(plugin),
        cwd=cfg.parent,
    )


def start_and_read(cfg: Path, plugin: Path, spool: Path, records: int) -> subprocess.Popen[str]:
    """A collect started, once ``records`` are in its journal (or it ended early)."""
    proc = start(cfg, plugin)
    wait_for(lambda: len(journal_keys(spool)) >= records or proc.poll() is not None, 120,
             f"{records} records read")
    return proc


def annexa(cfg: Path, plugin: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*ANNEXA, *args, "--config", str(cfg)],
        capture_output=True,
        text=True,
        env=env(plugin),
        cwd=cfg.parent,
        timeout=180,
    )


def journal_keys(spool: Path) -> set[str]:
    """Resource ids of the evidence lines in the spool's journals (a torn last line
    is skipped, as replay skips it)."""
    out: set[str] = set()
    for p in spool.glob("*.jsonl"):
        for line in p.read_text(errors="replace").splitlines(keepends=True):
            if not line.endswith("\n"):
                break
            try:
                obj = json.loads(line)
            except json.JSONDecodeError:
                break
            if obj.get("t") == "E":
                out.add(obj["resource_id"])
    return out


def run_row(engine: Engine, run_id: str) -> dict[str, Any]:
    with engine.connect() as conn:
        return dict(conn.execute(select(runs).where(runs.c.id == run_id)).mappings().one())


def the_run(engine: Engine) -> dict[str, Any]:
    with engine.connect() as conn:
        (row,) = conn.execute(select(runs).where(runs.c.source == "paced-1")).mappings().all()
    return dict(row)


def evidence_ids(engine: Engine, run_id: str) -> list[str]:
    with engine.connect() as conn:
        return [
            r[0]
            for r in conn.execute(
                select(evidence.c.resource_id).where(
                    evidence.c.run_id == run_id, evidence.c.resource_type == "fake.disk.volume"
                )
            )
        ]


@pytest.fixture
def db(db_url: str) -> Iterator[tuple[str, Engine]]:
    engine = make_engine(db_url)
    upgrade(engine)
    yield db_url, engine
    engine.dispose()


def test_sigint_seals_the_run_aborted_keeps_what_was_read_and_says_so(
    tmp_path, db, plugin_path, spool, key
):
    db_url, engine = db
    cfg = config(tmp_path, db_url, key[0], records=2000, delay=0.01)
    proc = start_and_read(cfg, plugin_path, spool, 25)
    assert proc.poll() is None, proc.communicate()
    proc.send_signal(signal.SIGINT)
    _out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    lines = [x for x in err.splitlines() if x.startswith("interrupted (SIGINT)")]
    assert len(lines) == 1 and "sealed aborted" in lines[0], err
    run = the_run(engine)
    assert run["status"] == "aborted" and run["signature"]
    assert any("interrupted" in e for e in json.loads(run["errors"]))
    ids = evidence_ids(engine, run["id"])
    n = len(ids)
    # Everything read before the interrupt is stored, once, in order of reading.
    assert n >= 25 and sorted(ids) == sorted(f"d{i}" for i in range(n))
    assert not list(spool.glob("*.jsonl"))  # sealed: the journal is gone
    check = annexa(cfg, plugin_path, "verify", "--trusted-keys", str(key[1]))
    assert check.returncode == 0, check.stderr + check.stdout


def test_a_sigkilled_collect_is_written_from_its_journal_and_sealed_by_the_next_one(
    tmp_path, db, plugin_path, spool, key
):
    db_url, engine = db
    cfg = config(tmp_path, db_url, key[0], records=3000, delay=0.01)
    proc = start_and_read(cfg, plugin_path, spool, 40)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    read_before_kill = journal_keys(spool)
    killed = the_run(engine)
    assert killed["status"] == "running"  # nothing could seal it
    # The next collect (of anything) first writes the journal and seals the run.
    quick = config(tmp_path, db_url, key[0], records=3, delay=0, name="quick.toml")
    nxt = annexa(quick, plugin_path, "collect")
    assert nxt.returncode == 0, nxt.stderr
    assert f"recovered: run {killed['id']} (paced-1)" in nxt.stderr
    row = run_row(engine, killed["id"])
    assert row["status"] == "aborted" and row["signature"]
    ids = evidence_ids(engine, killed["id"])
    assert read_before_kill <= set(ids)  # nothing read before the kill is lost
    assert len(ids) == len(set(ids))  # and nothing is there twice
    with engine.connect() as conn:
        dup = conn.execute(
            select(findings.c.key, func.count())
            .where(findings.c.run_id == killed["id"])
            .group_by(findings.c.key)
            .having(func.count() > 1)
        ).all()
    assert dup == []
    check = annexa(cfg, plugin_path, "verify", "--trusted-keys", str(key[1]))
    assert check.returncode == 0, check.stderr + check.stdout


def test_a_collect_that_loses_its_database_is_replayed_under_its_id_by_the_next_command(
    tmp_path, postgres_url, plugin_path, spool, key, pg_proxy
):
    from sqlalchemy.engine import make_url

    db_url = postgres_url
    direct = make_engine(db_url)
    upgrade(direct)
    proxy: TcpProxy = pg_proxy(make_url(db_url).port or 5432)
    via_proxy = make_url(db_url).set(host="127.0.0.1", port=proxy.port)
    cut_url = via_proxy.render_as_string(hide_password=False)
    cfg = config(tmp_path, cut_url, key[0], records=400, delay=0.01)
    proc = start_and_read(cfg, plugin_path, spool, 60)
    proxy.close()  # the database goes away mid-run
    _out, err = proc.communicate(timeout=180)
    assert proc.returncode == 4, err
    assert "database lost" in err and "written under the same run id" in " ".join(err.split())
    (journal,) = spool.glob("*.jsonl")
    run_id = journal.stem
    proxy.open()
    listed = annexa(cfg, plugin_path, "runs", "--format", "json")
    assert any(r["id"] == run_id and r["status"] in ("spooled", "running")
               for r in json.loads(listed.stdout)), listed.stdout
    nxt = annexa(cfg, plugin_path, "collect")
    assert nxt.returncode == 0, nxt.stderr
    assert f"recovered: run {run_id} (paced-1) was written from its journal" in nxt.stderr
    row = run_row(direct, run_id)
    assert row["status"] == "succeeded" and row["signature"]
    assert sorted(evidence_ids(direct, run_id)) == sorted(f"d{i}" for i in range(400))
    # The same rows as an uninterrupted run of the same estate, in another database.
    ref_dir = tmp_path / "ref"
    ref_dir.mkdir()
    ref_url = f"sqlite:///{ref_dir / 'ref.db'}"
    ref_cfg = config(ref_dir, ref_url, key[0], records=400, delay=0)
    assert annexa(ref_cfg, plugin_path, "collect").returncode == 0
    ref = make_engine(ref_url)

    def rows(engine: Engine, rid: str | None) -> set[tuple[str, str | None]]:
        with engine.connect() as conn:
            q = select(evidence.c.key, evidence.c.content_hash)
            if rid:
                q = q.where(evidence.c.run_id == rid)
            else:
                first = conn.execute(select(runs.c.id).where(runs.c.source == "paced-1")).scalar()
                q = q.where(evidence.c.run_id == first)
            return set(conn.execute(q).all())

    assert rows(direct, run_id) == rows(ref, None)
    check = annexa(cfg, plugin_path, "verify", "--trusted-keys", str(key[1]))
    assert check.returncode == 0, check.stderr + check.stdout
    direct.dispose()
    ref.dispose()


def test_verify_works_on_a_read_only_copy_as_another_user(tmp_path, plugin_path, spool, key):
    db_url = f"sqlite:///{tmp_path / 'annexa.db'}"
    cfg = config(tmp_path, db_url, key[0], records=5, delay=0)
    assert annexa(cfg, plugin_path, "collect").returncode == 0
    ro = tmp_path / "auditor-copy"
    ro.mkdir()
    src = Path(db_url.removeprefix("sqlite:///"))
    with sqlite3.connect(src) as con:  # a consistent copy, as `sqlite3 .backup` makes
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    shutil.copy(src, ro / "annexa.db")
    shutil.copy(key[1], ro / "trusted.pub")
    (ro / "annexa.toml").write_text(f'[database]\nurl = "sqlite:///{ro / "annexa.db"}"\n')
    os.chmod(ro / "annexa.db", 0o444)
    os.chmod(ro / "trusted.pub", 0o444)
    os.chmod(ro / "annexa.toml", 0o444)
    os.chmod(ro, 0o555)
    os.chmod(tmp_path, 0o755)
    for parent in tmp_path.parents:
        if str(parent) in ("/", "/tmp"):
            break
        os.chmod(parent, os.stat(parent).st_mode | 0o005)
    # Another OS user (nobody), who can read the copy and write nothing of it.
    site = next(p for p in sys.path if p.endswith("site-packages"))
    python = shutil.which("python3.11", path="/usr/bin") or sys.executable
    cmd = [
        "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
        "env", f"PYTHONPATH={REPO}{os.pathsep}{site}", "HOME=/tmp",
        python, "-m", "collector",
    ]
    if shutil.which("setpriv") is None or os.geteuid() != 0:
        cmd = [sys.executable, "-m", "collector"]  # already another user than the owner
    for args in (["verify", "--trusted-keys", str(ro / "trusted.pub")], ["controls", "-f", "json"],
                 ["runs"]):
        proc = subprocess.run(
            [*cmd, *args, "--config", str(ro / "annexa.toml")],
            capture_output=True, text=True, cwd="/tmp", timeout=120,
        )
        assert proc.returncode == 0, (args, proc.stderr)
    assert sorted(p.name for p in ro.iterdir()) == ["annexa.db", "annexa.toml", "trusted.pub"]
    os.chmod(ro, 0o755)


def test_read_commands_never_create_a_database(tmp_path, plugin_path, spool):
    cfg = tmp_path / "annexa.toml"
    cfg.write_text(f'[database]\nurl = "sqlite:///{tmp_path / "none.db"}"\n')
    for args in (["controls"], ["findings"], ["runs"], ["verify"]):
        proc = annexa(cfg, plugin_path, *args)
        assert proc.returncode == 7, (args, proc.stderr)
        assert "no Annexa database" in " ".join(proc.stderr.split())
    assert not (tmp_path / "none.db").exists()


def test_a_formula_in_a_source_value_is_neutralised_in_cli_csv(tmp_path, db, plugin_path, spool,
                                                               key):
    from collector.config import SecretRef, SigningConfig
    from collector.runner import run_connector
    from tests.fakes import FakeConnector, estate, fake_index, fake_settings

    db_url, engine = db
    index = fake_index(tmp_path / "maps")
    hostile = '=HYPERLINK("http://x","y")'
    FakeConnector.script = estate({"d1": False}, {hostile: False})
    settings = fake_settings(db_url)
    settings.model.signing = SigningConfig(key=SecretRef(file=str(key[0])))
    run_connector(settings, settings.connectors[0], engine, index)
    cfg = tmp_path / "annexa.toml"
    cfg.write_text(f'[database]\nurl = "{db_url}"\n[mappings]\npaths = ["maps"]\n')
    for args in (["findings", "--format", "csv"], ["evidence", "show", "--format", "csv"],
                 ["controls", "--format", "csv"]):
        proc = annexa(cfg, plugin_path, *args)
        assert proc.returncode == 0, (args, proc.stderr)
        for line in proc.stdout.splitlines()[1:]:
            for cell in line.split(","):
                assert not cell.lstrip('"').startswith(("=", "+", "@")), (args, line)
        if args[0] == "findings":
            assert "'=HYPERLINK" in proc.stdout

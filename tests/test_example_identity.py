"""Must-show: a new identity source is correlated without touching a file outside tests/.

tests/example_identity.py defines the Acme Directory, an identity provider known to no
product file. This test installs it the way a third-party package would — a
distribution whose ``entry_points.txt`` registers it under ``annexa.connectors``, put on
the path of an ``annexa collect`` subprocess — configures it beside the product's HR
connector (a CSV export) in an ``annexa.toml``, and checks that the ``identity``
analyzer, run by ``annexa collect`` after the sources through the real run engine,
correlated the directory's accounts with the HR records through the directory's own
account hook: a leaver still enabled in the directory fails A.5.18's leaver check.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.configs import connector_table, write_config

ROOT = Path(__file__).resolve().parent.parent
LEAVER = "identity.person.leaver_access_removed"
HEADER = (
    "employee_id,work_email,name,employment_status,hire_date,termination_date,"
    "department,manager,background_check_date,contract_signed_date,nda_signed_date\n"
)


def day(offset: int) -> str:
    return (datetime.now(UTC) + timedelta(days=offset)).date().isoformat()


def install_plugin(site: Path) -> None:
    """A distribution registering the Acme Directory, as ``pip install`` would leave it."""
    dist = site / "acme_annexa_directory-1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: acme-annexa-directory\nVersion: 1.0\n", encoding="utf-8"
    )
    (dist / "entry_points.txt").write_text(
        "[annexa.connectors]\n"
        "acme_directory = tests.example_identity:AcmeDirectoryConnector\n",
        encoding="utf-8",
    )


@pytest.fixture
def estate(tmp_path: Path) -> Path:
    users = [
        {"uid": "a1", "mail": "Alice@acme.example", "state": "enabled",
         "created": "2023-01-09T09:00:00Z"},
        {"uid": "b2", "mail": "bob@acme.example", "state": "enabled",
         "created": "2023-01-09T09:00:00Z"},
        {"uid": "c3", "mail": "carol@acme.example", "state": "disabled",
         "disabled_at": day(-29) + "T17:00:00Z", "created": "2023-01-09T09:00:00Z"},
    ]  # fmt: skip
    (tmp_path / "acme.json").write_text(json.dumps({"users": users}), encoding="utf-8")
    (tmp_path / "people.csv").write_text(
        HEADER
        + f"e1,alice@acme.example,Alice,Terminated,2023-01-09,{day(-30)},Eng,Boss,"
        "2023-01-02,2023-01-02,2023-01-02\n"
        + "e2,bob@acme.example,Bob,Active,2023-01-09,,Eng,Boss,2023-01-02,2023-01-02,"
        "2023-01-02\n"
        + f"e3,carol@acme.example,Carol,Terminated,2023-01-09,{day(-30)},Eng,Boss,"
        "2023-01-02,2023-01-02,2023-01-02\n",
        encoding="utf-8",
    )
    write_config(
        tmp_path / "annexa.toml",
        f"sqlite:///{tmp_path / 'annexa.db'}",
        connector_table("acme_directory", "acme", {"path": tmp_path / "acme.json"}),
        connector_table("hr", "people", {"source": "csv", "path": tmp_path / "people.csv"}),
    )
    install_plugin(tmp_path / "site")
    return tmp_path


def annexa(tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env.pop("ANNEXA_DATABASE_URL", None)
    env["PYTHONPATH"] = os.pathsep.join([str(tmp / "site"), str(ROOT)])
    return subprocess.run(
        [sys.executable, "-m", "collector", *args, "--config", str(tmp / "annexa.toml")],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=300,
    )  # fmt: skip


def test_a_test_only_identity_source_is_correlated_by_the_identity_analyzer(estate: Path):
    proc = annexa(estate, "collect", "--format", "json")
    # The HR checks on the test's own dates may fail (that is not this test's subject);
    # exit 1 is "a finding failed", anything else is a broken collection.
    assert proc.returncode in (0, 1), proc.stderr
    runs = {r["connector"]: r for r in json.loads(proc.stdout)}
    assert set(runs) == {"acme", "people", "identity-correlation"}, runs
    assert runs["identity-correlation"]["status"] == "succeeded", proc.stderr
    with sqlite3.connect(estate / "annexa.db") as db:
        rows = db.execute(
            "SELECT resource_id, status, message FROM findings WHERE check_id = ?", (LEAVER,)
        ).fetchall()
        people = {
            r[0]: json.loads(r[1])
            for r in db.execute(
                "SELECT e.resource_id, b.body FROM evidence e JOIN blobs b "
                "ON b.hash = e.content_hash WHERE e.resource_type = 'identity.person.link'"
            )
        }
    verdicts = {rid: status for rid, status, _ in rows}
    assert verdicts == {
        "alice@acme.example": "fail",  # left 30 days ago, still enabled in Acme
        "bob@acme.example": "pass",  # employed
        "carol@acme.example": "pass",  # left, and disabled in Acme
    }, rows
    (alice_msg,) = [m for rid, _, m in rows if rid == "alice@acme.example"]
    assert "acme" in alice_msg and "enabled" in alice_msg
    # The directory's accounts were read through its own hook: kind and state are its.
    alice = {a["source"]: a for a in people["alice@acme.example"]["accounts"]}
    assert alice["acme"]["kind"] == "acme_directory" and alice["acme"]["state"] == "active"
    assert alice["people"]["hr"] is True and alice["people"]["state"] == "offboarded"

"""End to end: a seeded moto estate → ``annexa collect`` → read commands → ``verify``.

Everything is real: the ``annexa`` CLI runs as a subprocess, boto3 speaks HTTP to moto's
server on 127.0.0.1 (through the standard ``AWS_ENDPOINT_URL``), and the store is a
SQLite file or a fresh PostgreSQL database.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from annexa_demo.aws.estate import seed_demo_estate
from store.engine import make_engine
from store.schema import evidence, findings
from tests.tamper import tamper

MAIN = "123456789012"


def annexa(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "collector", *args],
        capture_output=True,
        text=True,
        env=env or dict(os.environ),
        cwd=cwd,
        timeout=300,
    )


def write_config(
    tmp_path: Path, db_url: str, extra_options: str = "", mapping_dir: Path | None = None
) -> Path:
    cfg = tmp_path / "annexa.toml"
    maps = f'[mappings]\npaths = ["{mapping_dir}"]\n' if mapping_dir else ""
    cfg.write_text(
        f"""
[database]
url = "{db_url}"
{maps}
[log]
format = "json"

[[connectors]]
type = "aws"
name = "prod"
options = {{ regions = ["us-east-1", "eu-west-1"]{extra_options} }}
"""
    )
    return cfg


def json_out(proc: subprocess.CompletedProcess[str]) -> Any:
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def history_counts(db_url: str) -> dict[str, int]:
    eng = make_engine(db_url)
    try:
        with eng.connect() as conn:
            return {
                t.name: conn.execute(select(func.count()).select_from(t)).scalar_one()
                for t in (evidence, findings)
            }
    finally:
        eng.dispose()


@pytest.fixture
def unused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def estate(aws_module_env: str) -> dict[str, Any]:
    """The demo estate, planted once for the module: these tests only read it (the ones
    that change the estate or reset moto are in ``test_e2e_cli_changes.py``)."""
    return seed_demo_estate(aws_module_env)


def test_collect_reports_failing_controls_and_manual_ones(
    estate: dict[str, Any], tmp_path: Path, db_url: str
) -> None:
    cfg = write_config(tmp_path, db_url)
    proc = annexa("collect", "--config", str(cfg), "--format", "json")
    assert proc.returncode == 0, proc.stderr
    [run] = json.loads(proc.stdout)
    assert run["status"] == "succeeded" and run["errors"] == 0

    controls = {
        c["control"]: c
        for c in json_out(annexa("controls", "--config", str(cfg), "--format", "json"))
    }
    assert len(controls) == 93
    fail = estate["accounts"][MAIN]["fail"]
    assert controls["A.5.17"]["status"] == "fail"
    assert controls["A.8.5"]["status"] == "fail"
    # The failing resources are named.
    mfa_failing = " ".join(controls["A.8.5"]["failing_resources"])
    for arn in fail["aws.iam.user_console_mfa"]:
        assert arn in mfa_failing
    weak = " ".join(controls["A.5.17"]["failing_resources"])
    assert f"{MAIN} (aws.iam.password_policy_min_length)" in weak
    # Physical controls cannot be evidenced by a cloud API: manual, never pass. A.7.7 and
    # A.7.9 have device checks (screen lock, disk encryption): no evidence without an MDM.
    a7 = [c for cid, c in controls.items() if cid.startswith("A.7.")]
    assert len(a7) == 14
    assert {c["control"]: c["status"] for c in a7 if c["status"] != "manual"} == {
        "A.7.7": "no_evidence",
        "A.7.9": "no_evidence",
    }
    assert all(c["expected_evidence"] for c in a7)
    assert not any(c["status"] == "pass" for c in controls.values() if not c["checks"])

    failing = json_out(
        annexa(
            "findings",
            "--config",
            str(cfg),
            "--control",
            "A.8.5",
            "--status",
            "fail",
            "--format",
            "json",
        )
    )
    assert {f["resource_id"] for f in failing} == set(fail["aws.iam.user_console_mfa"])

    # The table output is for people and names the failing users too.
    table = annexa("controls", "--config", str(cfg), "--status", "fail")
    assert table.returncode == 0 and "A.8.5" in table.stdout and "bob-console" in table.stdout


def _tamper_blob(db_url: str, run_id: str) -> None:
    """An attacker with file/superuser access rewrites one evidence body, bypassing triggers."""
    changed = tamper(
        db_url,
        "UPDATE blobs SET body = replace(body, 'false', 'true') WHERE hash IN "
        "(SELECT content_hash FROM evidence WHERE run_id = %s "
        "AND resource_type = 'aws.iam.password_policy')",
        params=(run_id,),
    )
    assert changed == 1


def test_verify_passes_then_names_the_tampered_run(
    estate: dict[str, Any], tmp_path: Path, db_url: str
) -> None:
    cfg = write_config(tmp_path, db_url)
    assert annexa("collect", "--config", str(cfg)).returncode == 0
    assert annexa("collect", "--config", str(cfg)).returncode == 0
    ok = annexa("verify", "--config", str(cfg))
    assert ok.returncode == 0 and "verify OK: 2 runs" in ok.stdout
    first_run = json_out(annexa("runs", "--config", str(cfg), "--format", "json"))[-1]["id"]
    _tamper_blob(db_url, first_run)
    bad = annexa("verify", "--config", str(cfg), "--format", "json")
    assert bad.returncode == 5
    problems = json.loads(bad.stdout)
    assert problems[0]["run_id"] == first_run
    assert "does not match its hash" in problems[0]["problem"]


def test_bad_mapping_is_refused_and_nothing_is_written(
    estate: dict[str, Any], tmp_path: Path, db_url: str
) -> None:
    maps = tmp_path / "maps"
    maps.mkdir()
    (maps / "ours.toml").write_text(
        '[[link]]\ncheck = "aws.iam.user_console_mfa"\ncontrol = "A.9.9"\nrationale = "x"\n'
    )
    cfg = write_config(tmp_path, db_url, mapping_dir=maps)
    proc = annexa("mappings", "validate", "--config", str(cfg))
    assert proc.returncode == 2
    assert (
        "ours.toml" in proc.stderr and "A.9.9" in proc.stderr and "unknown control" in proc.stderr
    )
    proc = annexa("collect", "--config", str(cfg))
    assert proc.returncode == 2 and "ours.toml" in proc.stderr
    if db_url.startswith("sqlite"):
        assert not Path(make_url(db_url).database).exists()
    else:
        eng = make_engine(db_url)
        with eng.connect() as conn:
            assert not eng.dialect.has_table(conn, "evidence")
        eng.dispose()


def test_unreachable_endpoint_is_partial_or_failed_and_loses_nothing(
    estate: dict[str, Any], tmp_path: Path, db_url: str, unused_port: int
) -> None:
    cfg = write_config(tmp_path, db_url)
    assert annexa("collect", "--config", str(cfg)).returncode == 0
    before = history_counts(db_url)
    env = dict(os.environ, AWS_ENDPOINT_URL=f"http://127.0.0.1:{unused_port}")
    for proxy in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        env.pop(proxy, None)  # the fixture routes through moto as a proxy; go direct
    cfg2 = write_config(tmp_path, db_url, extra_options=", connect_timeout = 1, max_attempts = 1")
    proc = annexa("collect", "--config", str(cfg2), "--format", "json", env=env)
    assert proc.returncode in (3, 4), proc.stderr
    [run] = json.loads(proc.stdout)
    assert run["status"] in ("partial", "failed") and run["errors"] >= 1
    after = history_counts(db_url)
    assert after["evidence"] == before["evidence"]  # nothing closed by absence
    # Every control that passed still has its evidence; what could not be read is error.
    errors = json_out(
        annexa("findings", "--config", str(cfg), "--status", "error", "--format", "json")
    )
    assert errors and all("could not read" in f["message"] for f in errors)
    assert annexa("verify", "--config", str(cfg)).returncode == 0

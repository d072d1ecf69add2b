"""Configuration: every error names file, key path and reason; exit 2; nothing written."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from collector.config import ConfigError, load_settings, parse_duration
from core.connector import SecretRef, SecretUnavailableError

GOOD = """
[database]
url = "sqlite:///{db}"

[collection]
freshness = "2d"

[[connectors]]
type = "aws"
name = "prod"
options = {{ regions = ["eu-west-1"] }}

[connectors.checks."aws.iam.access_key_rotated"]
max_age_days = 30
"""


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "annexa.toml"
    p.write_text(text)
    return p


def problems(tmp_path: Path, text: str) -> list[tuple[str, str]]:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    assert info.value.file == str(path)
    assert str(path) in str(info.value)
    return info.value.problems


def test_good_config_loads_with_overrides(tmp_path: Path) -> None:
    s = load_settings(write(tmp_path, GOOD.format(db=tmp_path / "a.db")))
    assert [c.name for c in s.connectors] == ["prod"]
    assert s.connectors[0].params["aws.iam.access_key_rotated"]["max_age_days"] == 30
    assert s.freshness.days == 2
    assert s.database_url.endswith("a.db")


def test_database_url_env_overrides_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANNEXA_DATABASE_URL", "postgresql://u@db/annexa")
    s = load_settings(write(tmp_path, GOOD.format(db="x.db")))
    assert s.database_url == "postgresql://u@db/annexa"


def test_default_is_sqlite_in_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ANNEXA_DATABASE_URL", raising=False)
    monkeypatch.delenv("ANNEXA_CONFIG", raising=False)
    s = load_settings(None)
    assert s.database_url == "sqlite:///annexa.db" and s.connectors == []


@pytest.mark.parametrize(
    "text, key, reason",
    [
        ("[database\nurl = 1", "<file>", "invalid TOML"),
        ("[databse]\nurl = 'x'", "databse", "Extra inputs are not permitted"),
        ("[collection]\nfreshness = 'soon'", "collection.freshness", "not a duration"),
        (
            "[[connectors]]\ntype = 'aws'\nname = 'p'\noptions = { regionz = ['x'] }",
            "connectors[0].options.regionz",
            "Extra inputs are not permitted",
        ),
        (
            "[[connectors]]\ntype = 'aws'\nname = 'p'\noptions = { max_workers = 'many' }",
            "connectors[0].options.max_workers",
            "valid integer",
        ),
        (
            "[[connectors]]\ntype = 'nope'\nname = 'p'",
            "connectors[0].type",
            "unknown connector type",
        ),
        ("[[connectors]]\ntype = 'aws'\nname = 'bad name!'", "connectors[0].name", "pattern"),
        (
            "[[connectors]]\ntype = 'aws'\nname = 'p'\n[[connectors]]\ntype = 'aws'\nname = 'p'",
            "connectors[1].name",
            "duplicate connector name",
        ),
        (
            "[[connectors]]\ntype = 'aws'\nname = 'p'\n[connectors.checks.'aws.nope']\nx = 1",
            "connectors[0].checks.aws.nope",
            "has no check",
        ),
        (
            "[[connectors]]\ntype = 'aws'\nname = 'p'\n"
            "[connectors.checks.'aws.iam.access_key_rotated']\nmax_age = 1",
            "connectors[0].checks",
            "no parameter 'max_age'",
        ),
        (
            "[[connectors]]\ntype = 'aws'\nname = 'p'\n"
            "[connectors.checks.'aws.iam.access_key_rotated']\nmax_age_days = 'ninety'",
            "connectors[0].checks",
            "must be int",
        ),
        (
            "[[connectors]]\ntype = 'aws'\nname = 'p'\noptions = { api_token = 'hunter2hunter2' }",
            "connectors[0].options.api_token",
            "secrets may not be written inline",
        ),
        ("[mappings]\npaths = ['does-not-exist']", "mappings.paths[0]", "is not a directory"),
    ],
)
def test_errors_name_key_and_reason(tmp_path: Path, text: str, key: str, reason: str) -> None:
    found = problems(tmp_path, text)
    assert any(k == key and reason in r for k, r in found), found


def test_secret_ref_reads_env_and_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANNEXA_T_TOKEN", "s3cr3t-value")
    assert SecretRef(env="ANNEXA_T_TOKEN").get() == "s3cr3t-value"
    f = tmp_path / "tok"
    f.write_text("from-file-secret\n")
    assert SecretRef(file=str(f)).get() == "from-file-secret"
    assert "from-file" not in repr(SecretRef(file=str(f)))
    with pytest.raises(SecretUnavailableError, match="ANNEXA_T_MISSING is not set"):
        SecretRef(env="ANNEXA_T_MISSING").get()
    with pytest.raises(ValueError, match="exactly one"):
        SecretRef(env="A", file="b")


def test_durations() -> None:
    assert parse_duration("90s").total_seconds() == 90
    assert parse_duration("6h").total_seconds() == 6 * 3600
    with pytest.raises(ValueError):
        parse_duration("6 hours")


def test_cli_bad_config_exits_2_and_writes_nothing(tmp_path: Path) -> None:
    db = tmp_path / "never.db"
    cfg = write(tmp_path, GOOD.format(db=db).replace('regions = ["eu-west-1"]', "regions = 7"))
    env = {k: v for k, v in os.environ.items() if k not in ("ANNEXA_DATABASE_URL", "ANNEXA_CONFIG")}
    proc = subprocess.run(
        [sys.executable, "-m", "collector", "collect", "--config", str(cfg)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    assert str(cfg) in proc.stderr and "connectors[0].options.regions" in proc.stderr
    assert not db.exists()
    assert not (tmp_path / "annexa.db").exists()

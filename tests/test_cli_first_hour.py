"""What a new user meets on the demo database (issue 18): filters that refuse nonsense
with a suggestion, globs over resources, checks and sources, and errors that stay
one readable line.

The database is the real one `annexa demo` writes (moto on 127.0.0.1, the real run
engine), made once per module.
"""

from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def _env(db: Path | None = None, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANNEXA_", "AWS_"))}
    env["PYTHONPATH"] = str(REPO)
    env.pop("COLUMNS", None)
    if db is not None:
        env["ANNEXA_DATABASE_URL"] = f"sqlite:///{db}"
    return env | extra


@pytest.fixture(scope="module")
def demo_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("demo")
    proc = subprocess.run([sys.executable, "-m", "collector", "demo", "--db", "annexa.db"],
                          cwd=work, env=_env(), capture_output=True, text=True, timeout=900)
    assert (work / "annexa.db").exists(), proc.stderr[-2000:]
    return work / "annexa.db"


def annexa(db: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "collector", *args], cwd=db.parent,
                          env=_env(db, **env), capture_output=True, text=True, timeout=300)


def rows(proc: subprocess.CompletedProcess[str]) -> list[dict[str, str]]:
    assert proc.returncode == 0, proc.stderr
    return list(csv.DictReader(io.StringIO(proc.stdout)))


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["findings", "--status", "failed"], "did you mean fail?"),
        (["controls", "--theme", "technical"], "did you mean technological?"),
        (["controls", "--status", "failing"], "did you mean fail?"),
        (["findings", "--control", "A.9.99"], "'A.9.99' is not an Annex A control"),
        (["findings", "--check", "aws.s3.bucket_versionin"],
         "did you mean aws.s3.bucket_versioning?"),
    ],
)
def test_a_filter_outside_the_known_values_is_exit_2_with_a_suggestion(demo_db, args, said):
    proc = annexa(demo_db, *args)
    assert proc.returncode == 2, (args, proc.returncode, proc.stdout[-500:])
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert said in lines[0], proc.stderr
    assert proc.stdout == ""


def test_valid_filters_still_answer(demo_db):
    failing = rows(annexa(demo_db, "findings", "--status", "fail", "-f", "csv"))
    assert failing and {r["status"] for r in failing} == {"fail"}
    mapped = rows(annexa(demo_db, "findings", "--control", "A.8.24", "-f", "csv"))
    assert mapped and all("A.8.24" in r["controls"] for r in mapped)


def test_resource_check_and_source_take_globs(demo_db):
    every = rows(annexa(demo_db, "findings", "-f", "csv"))
    s3 = rows(annexa(demo_db, "findings", "--check", "aws.s3.*", "-f", "csv"))
    assert s3 and {r["check_id"] for r in s3} == {
        r["check_id"] for r in every if r["check_id"].startswith("aws.s3.")
    }
    bucket = next(r["resource_id"] for r in s3)
    # Without a wildcard --resource is a substring; with one, a glob over the whole id.
    by_text = rows(annexa(demo_db, "findings", "--resource", bucket[2:-2], "-f", "csv"))
    assert by_text and all(bucket[2:-2] in r["resource_id"] for r in by_text)
    by_glob = rows(annexa(demo_db, "findings", "--resource", f"{bucket[:4]}*", "-f", "csv"))
    assert {r["resource_id"] for r in by_glob} == {
        r["resource_id"] for r in every if r["resource_id"].startswith(bucket[:4])
    }
    assert rows(annexa(demo_db, "findings", "--resource", f"{bucket}?*", "-f", "csv")) == [
        r for r in rows(annexa(demo_db, "findings", "-f", "csv"))
        if r["resource_id"].startswith(bucket) and len(r["resource_id"]) > len(bucket)
    ]
    sources = {r["source"] for r in every}
    assert rows(annexa(demo_db, "findings", "--source", "demo-*", "-f", "csv")) == [
        r for r in every if r["source"].startswith("demo-")
    ]
    assert len(sources) >= 1
    assert rows(annexa(demo_db, "findings", "--source", "nomatch-*", "-f", "csv")) == []


def test_an_error_naming_a_toml_table_is_printed_literally(tmp_path):
    cfg = tmp_path / "annexa.toml"
    cfg.write_text(f'[database]\nurl = "sqlite:///{tmp_path / "a.db"}"\n')
    proc = subprocess.run([sys.executable, "-m", "collector", "collect", "-c", str(cfg)],
                          cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    assert "add a [[connectors]] table" in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert not (tmp_path / "a.db").exists()

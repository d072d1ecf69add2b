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


# -- tables on an 80x24 terminal (tmux) ---------------------------------------------------


def _tmux_run(tmp: Path, db: Path, args: list[str], expect: int = 0, **env: str) -> list[str]:
    """Run ``annexa args`` in a detached tmux session of 80x24 and return every line it
    printed (scrollback included; wrapped lines joined, so an over-long line shows)."""
    conf = tmp / "tmux.conf"
    conf.write_text("set -g history-limit 100000\nset -g remain-on-exit on\n")
    sock = f"annexa-{os.getpid()}-{abs(hash(tuple(args))) % 10**8}"
    exports = " ".join(f"{k}={v}" for k, v in _env(db, TERM="xterm-256color", **env).items()
                       if k in ("PATH", "PYTHONPATH", "HOME", "TERM", "ANNEXA_DATABASE_URL",
                                "PAGER", "ANNEXA_PAGER", "LANG", "LC_ALL") or k in env)
    shell = f"env -u COLUMNS -u LINES {exports} {sys.executable} -m collector {' '.join(args)}"
    shell += "; echo __EXIT_$?__"
    tmux = ["tmux", "-L", sock, "-f", str(conf)]
    subprocess.run([*tmux, "new-session", "-d", "-x", "80", "-y", "24", "-s", "t", shell],
                   check=True, cwd=db.parent, timeout=60)
    try:
        import time

        deadline = time.monotonic() + 300
        while True:
            out = subprocess.run([*tmux, "capture-pane", "-p", "-J", "-S", "-", "-t", "t"],
                                 capture_output=True, text=True, check=True, timeout=60).stdout
            if "__EXIT_" in out or time.monotonic() > deadline:
                break
            time.sleep(0.5)
    finally:
        subprocess.run([*tmux, "kill-server"], check=False, timeout=60)
    assert f"__EXIT_{expect}__" in out, out[-2000:]
    lines = out.rstrip("\n").split("\n")
    return lines[: next(i for i, line in enumerate(lines) if "__EXIT_" in line)]


@pytest.mark.parametrize(
    "args",
    [["findings"], ["findings", "--status", "fail"], ["controls"], ["runs"], ["soa"]],
    ids=lambda a: "-".join(a),
)
def test_tables_fit_an_80_by_24_terminal(demo_db, tmp_path, args):
    count = len(json_rows(annexa(demo_db, *args, "-f", "json")))
    assert count > 0
    lines = _tmux_run(tmp_path, demo_db, ["--no-pager", *args])
    too_long = [line for line in lines if len(line.rstrip()) > 80]
    assert not too_long, too_long[:3]
    body = [line for line in lines if line.startswith("│")]
    assert count <= len(body) <= 3 * count, (count, len(body), lines[:12])
    headers = next(line for line in lines if line.startswith("┃"))
    assert "│k" not in headers and all(len(h.strip()) > 2 for h in headers.split("┃")[1:-1])


def test_long_output_on_a_terminal_goes_through_the_pager(demo_db, tmp_path):
    """As git does: $PAGER gets a long table on a TTY; --no-pager prints it directly."""
    paged = tmp_path / "paged.txt"
    pager = tmp_path / "pager.sh"
    pager.write_text(f"#!/bin/sh\ncat > {paged}\n")
    pager.chmod(0o755)
    lines = _tmux_run(tmp_path, demo_db, ["findings"], PAGER=str(pager))
    assert paged.exists() and paged.read_text().count("\n") > 24
    assert not [line for line in lines if line.startswith("│")]


def test_piped_tables_are_complete_and_never_wrapped(demo_db):
    proc = annexa(demo_db, "findings", "--status", "fail")
    assert proc.returncode == 0, proc.stderr
    failing = json_rows(annexa(demo_db, "findings", "--status", "fail", "-f", "json"))
    body = [line for line in proc.stdout.splitlines() if line.startswith("│")]
    assert len(body) == len(failing)  # one line per row, whatever the width
    assert "Observed" in proc.stdout and "Scope" in proc.stdout  # every column
    assert all(r["message"] in proc.stdout for r in failing)


def json_rows(proc: subprocess.CompletedProcess[str]) -> list[dict]:
    import json

    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_a_failed_collect_says_why_one_line_each_and_logs_never_cross_the_spinner(tmp_path):
    """An Okta org that refuses connections (a closed loopback port): on a terminal the
    human log lines print whole above the progress display, and after the table each
    error has one line with its reason."""
    cfg = tmp_path / "annexa.toml"
    cfg.write_text(
        f'[database]\nurl = "sqlite:///{tmp_path / "annexa.db"}"\n\n'
        '[[connectors]]\ntype = "okta"\nname = "okta"\n[connectors.options]\n'
        'org_url = "http://127.0.0.1:9"\napi_token = { env = "OKTA_TOKEN_FOR_TEST" }\n'
        '[connectors.options.http]\nmax_attempts = 1\n'
    )
    db = tmp_path / "annexa.db"
    lines = _tmux_run(tmp_path, db, ["--no-pager", "collect", "-c", str(cfg)], expect=4,
                      OKTA_TOKEN_FOR_TEST="t0ken")
    spinner = set("⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏")
    started = [i for i, line in enumerate(lines) if "[info     ] run started" in line]
    assert len(started) == 1 and lines[started[0]][:4].isdigit(), lines[:5]
    assert not [line for line in lines if spinner & set(line)], lines
    reasons = [line for line in lines if line.startswith("failed run ")]
    assert len(reasons) == 4, lines[-10:]
    assert all("Connection refused" in line and "okta: 127.0.0.1/global/" in line
               for line in reasons)
    assert "t0ken" not in "\n".join(lines)


def test_wide_shows_every_column_in_full_one_line_per_row(demo_db):
    failing = json_rows(annexa(demo_db, "findings", "--status", "fail", "-f", "json"))
    proc = annexa(demo_db, "findings", "--status", "fail", "--wide", COLUMNS="80")
    assert proc.returncode == 0, proc.stderr
    body = [line for line in proc.stdout.splitlines() if line.startswith("│")]
    assert len(body) == len(failing)
    header = next(line for line in proc.stdout.splitlines() if line.startswith("┃"))
    for title in ("Check", "Severity", "Scope", "Controls", "Message", "Observed"):
        assert f" {title} " in header
    assert all(r["resource_id"] in proc.stdout and r["message"] in proc.stdout for r in failing)
    narrow = annexa(demo_db, "findings", "--status", "fail", COLUMNS="80")
    assert max(len(line) for line in narrow.stdout.splitlines()) <= 80

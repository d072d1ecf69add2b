"""The first minute with `annexa`: a fast --help, --version, and read commands that
never create a database (issue 18).

Start-up time itself is measured by ``benchmarks/startup.py``, not asserted here; these
tests keep the cause true: the CLI module imports no database, logging or SDK library.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
HEAVY = ("sqlalchemy", "alembic", "structlog", "boto3", "botocore", "pydantic", "httpx",
         "cryptography", "psycopg", "rich.markdown")


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANNEXA_")}
    env["PYTHONPATH"] = str(REPO)
    return env | extra


def test_importing_the_cli_imports_no_database_logging_or_sdk_library():
    code = (
        "import sys, collector.cli\n"
        f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=_clean_env(), timeout=120, check=True)
    assert proc.stdout.strip() == "", f"imported at CLI start-up: {proc.stdout.strip()}"


def test_help_lists_every_command_without_loading_heavy_modules():
    code = (
        "import sys\n"
        "sys.argv = ['annexa', '--help']\n"
        "import collector.cli\n"
        "try:\n"
        "    collector.cli.main()\n"
        "except SystemExit:\n"
        "    pass\n"
        f"print('HEAVY=' + ','.join(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=_clean_env(), timeout=120, check=True)
    assert "HEAVY=\n" in proc.stdout, proc.stdout[-300:]
    for command in ("collect", "controls", "findings", "runs", "soa", "demo", "daemon"):
        assert f"  {command} " in proc.stdout


def test_version_names_release_commit_and_schema_revision():
    from store.migrate import head_revision

    proc = subprocess.run([sys.executable, "-m", "collector", "--version"], capture_output=True,
                          text=True, env=_clean_env(), timeout=120, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    line = proc.stdout.strip()
    assert line.startswith("annexa 0.") and f"schema {head_revision()}" in line, line
    git = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short=12", "HEAD"],
                         capture_output=True, text=True, check=False)
    if git.returncode == 0:  # a checkout: the commit is known
        assert f"commit {git.stdout.strip()}" in line, line


def test_read_commands_in_an_empty_directory_create_nothing(tmp_path):
    """No config, no ANNEXA_DATABASE_URL: the default ./annexa.db is absent, so every
    read command says so with exit 7 and leaves the directory empty."""
    for args in (["controls"], ["findings"], ["runs"], ["soa"], ["verify"],
                 ["evidence", "show"]):
        proc = subprocess.run([sys.executable, "-m", "collector", *args], capture_output=True,
                              text=True, env=_clean_env(), timeout=120, cwd=tmp_path)
        said = " ".join(proc.stderr.split())
        assert proc.returncode == 7, (args, proc.returncode, proc.stderr)
        assert "no Annexa database at" in said and "ANNEXA_DATABASE_URL" in said, said
        assert "annexa collect" in said, said
        assert list(tmp_path.iterdir()) == [], (args, list(tmp_path.iterdir()))


def test_fast_top_level_help_lists_exactly_the_commands_typer_builds():
    """`annexa --help` is written from the registered commands without building them;
    it must list what the full typer app would, and its options."""
    import click
    import typer.main

    from collector.cli import app, top_level_help

    group = typer.main.get_command(app)
    ctx = click.Context(group)
    expected = {n for n in group.list_commands(ctx) if not group.get_command(ctx, n).hidden}
    text = top_level_help()
    listed = {line.split()[0] for line in text.split("Commands:\n", 1)[1].splitlines()}
    assert listed == expected
    options = {p.opts[0] for p in group.get_params(ctx)}
    assert options == {"--version", "--no-pager", "--help"}
    assert all(o in text for o in options)
    assert max(len(line) for line in text.splitlines()) <= 80

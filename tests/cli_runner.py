"""``annexa`` run in-process through Click's test runner: the same Typer app, options,
rendering and exit codes as the installed command, only the interpreter start-up saved."""

from __future__ import annotations

import sys
from typing import NamedTuple

from typer.testing import CliRunner


class CliResult(NamedTuple):
    """What the command returned and wrote; unpacks as ``code, out, err``."""

    returncode: int
    stdout: str
    stderr: str


def annexa(*args: str) -> CliResult:
    """Run ``annexa ARGS`` in-process, with ``ANNEXA_DATABASE_URL`` unset so that only the
    config named in ``args`` decides the database. An exception other than the command's
    exit is raised, so a crash never passes for an exit code."""
    from collector.cli import app
    from collector.logs import configure_logging

    try:
        res = CliRunner().invoke(app, list(args), env={"ANNEXA_DATABASE_URL": None})
    finally:
        # The command pointed logging at the runner's captured stream, now closed.
        configure_logging("console", "warning", stream=sys.stderr)
    if res.exception is not None and not isinstance(res.exception, SystemExit):
        raise res.exception
    return CliResult(res.exit_code, res.stdout, res.stderr)

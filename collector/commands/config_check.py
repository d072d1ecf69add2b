"""``annexa config check [--connect]``: is this configuration going to work?

Static checks need no network and write nothing: the file, every secret reference,
the mapping and decision files, the signing key. ``--connect`` adds each connector's
cheapest read-only calls (see collector/configcheck.py). Exit 0 when everything
works, 2 otherwise; one line per verdict, its reason on the same line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from collector.clikit import EXIT_USAGE, ConfigOpt, _cli_errors, app, known_checks

config_app = typer.Typer(help="Check the configuration file.", no_args_is_help=True)
app.add_typer(config_app, name="config")


def _say(ok: bool, what: str, detail: str) -> None:
    mark = "ok  " if ok else "FAIL"
    typer.echo(f"{mark}  {what}" + (f": {detail}" if detail else ""))


@config_app.command("check")
def config_check(
    config: ConfigOpt = None,
    connect: Annotated[
        bool,
        typer.Option(
            "--connect",
            help="Also make each connector's cheapest read-only calls and name any "
            "missing permission.",
        ),
    ] = False,
) -> None:
    """Validate the file, every secret reference, the mapping and decision files and
    the signing key; with --connect, try each source. Writes nothing."""
    from collector.config import ConfigError, load_settings
    from collector.configcheck import connect_lines, sdk_lines, secret_lines
    from collector.decisions import DecisionFileError, file_decisions
    from mappings.loader import load_mappings, validate_mappings

    failed = 0
    with _cli_errors():
        try:
            settings = load_settings(config)
        except ConfigError as exc:
            for where, problem in exc.problems:
                _say(False, f"config {where}", problem)
            raise typer.Exit(EXIT_USAGE) from None
        path = settings.path or Path("(no file: defaults)")
        names = ", ".join(c.name for c in settings.connectors) or "none"
        _say(True, f"config {path}", f"{len(settings.connectors)} connector(s): {names}")
        enabled = [c for c in settings.connectors if c.cfg.enabled]
        for line in [*sdk_lines(enabled), *secret_lines(settings, list(settings.connectors))]:
            failed += not line.ok
            _say(line.ok, line.what, line.detail)
        checks = known_checks()
        problems = validate_mappings(settings.mapping_dirs, set(checks))
        for p in problems:
            _say(False, "mappings", p)
        failed += len(problems)
        if not problems:
            index = load_mappings(settings.mapping_dirs, known_checks=set(checks))
            _say(True, "mappings", f"{len(index.catalog)} controls, {len(index.links)} links")
            try:
                decisions = file_decisions(settings, index, checks)
            except DecisionFileError as exc:
                failed += 1
                _say(False, "decision files", str(exc))
            else:
                _say(True, "decision files", f"{len(decisions)} decision(s)")
        try:
            signer = settings.signer()
        except ConfigError as exc:
            failed += 1
            _say(False, "signing key", " ".join(str(exc).split()))
        else:
            _say(True, "signing key", signer.key_id if signer else "none: runs are unsigned")
        if connect:
            for lc in settings.connectors:
                if not lc.cfg.enabled:
                    _say(True, f"{lc.name}", "disabled: not contacted")
                    continue
                for line in connect_lines(lc):
                    failed += not line.ok
                    _say(line.ok, f"{lc.name}: {line.what}", line.detail)
    if failed:
        typer.echo(f"{failed} problem(s)", err=True)
        raise typer.Exit(EXIT_USAGE)

"""What every ``annexa`` command module builds on: the Typer app and its sub-apps, exit
codes, shared options, and opening settings, mappings and the database with the CLI's
error handling.

Why a module of its own: command modules (``collector/commands/``, ``collector/demo``)
need these, and ``collector/cli.py`` imports the command modules; when the plumbing
lived in ``cli.py`` every command module and ``cli.py`` formed one import cycle.
Command modules import from here; only ``collector/__main__`` imports ``collector.cli``
(``tests/test_architecture.py`` enforces it). The exit codes are documented in
``collector/cli.py``'s docstring, which the CLI reference is generated from.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError, ProgrammingError, SQLAlchemyError

from collector.config import ConfigError, Settings, load_settings
from collector.logs import configure_logging
from collector.output import OutputFormat
from connectors.base import available_connectors
from connectors.checks import CheckSpec
from mappings.loader import MappingError, MappingIndex, load_mappings
from store.engine import NoDatabaseError, make_engine, redacted_url
from store.migrate import current_revision, head_revision, upgrade

EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_USAGE = 2
EXIT_PARTIAL = 3
EXIT_FAILED = 4
EXIT_VERIFY = 5
EXIT_DATABASE = 6
EXIT_NO_DATABASE = 7

app = typer.Typer(
    name="annexa",
    help="Automated evidence collection for ISO/IEC 27001:2022 Annex A.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
mappings_app = typer.Typer(help="Validate the Annex A mapping files.", no_args_is_help=True)
db_app = typer.Typer(help="Manage the evidence database schema.", no_args_is_help=True)
evidence_app = typer.Typer(help="Read stored evidence.", no_args_is_help=True)
app.add_typer(mappings_app, name="mappings")
app.add_typer(db_app, name="db")
app.add_typer(evidence_app, name="evidence")

err = Console(stderr=True)

ConfigOpt = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="Config file (default: $ANNEXA_CONFIG or ./annexa.toml)."),
]
FormatOpt = Annotated[
    OutputFormat, typer.Option("--format", "-f", help="Output format: table, json or csv.")
]
AtOpt = Annotated[
    str | None,
    typer.Option("--at", help="Answer as of this instant (ISO 8601, UTC if no offset)."),
]


class CliExit(Exception):
    def __init__(self, code: int, message: str | None = None) -> None:
        self.code = code
        self.message = message


def parse_instant(text: str | None) -> datetime | None:
    """ISO 8601 date or date-time; naive values are UTC. ``None`` means now."""
    if text is None or text == "now":
        return None
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise CliExit(EXIT_USAGE, f"--at: {text!r} is not an ISO 8601 date or date-time") from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def _stamp(instant: datetime | None) -> str:
    return (instant or datetime.now(UTC)).isoformat(timespec="seconds")


def _settings(config: Path | None) -> Settings:
    try:
        settings = load_settings(config)
    except ConfigError as exc:
        raise CliExit(EXIT_USAGE, f"invalid configuration:\n{exc}") from None
    configure_logging(settings.model.log.format, settings.model.log.level)
    return settings


def known_checks() -> dict[str, CheckSpec]:
    out: dict[str, CheckSpec] = {}
    for cls in available_connectors().values():
        for spec in cls.checks():
            out[spec.id] = spec
    return out


def _index(settings: Settings, *, check_ids: bool = True) -> MappingIndex:
    """The mapping index; ``check_ids=False`` skips checking that every mapped check
    exists, which needs every connector imported (about half a second of start-up).
    Read commands skip it: ``collect`` and ``mappings validate`` always check."""
    try:
        known = set(known_checks()) if check_ids else None
        return load_mappings(settings.mapping_dirs, known_checks=known)
    except MappingError as exc:
        raise CliExit(EXIT_USAGE, f"invalid mapping: {exc}") from None


def _engine(settings: Settings, *, migrate: bool, write: bool = False) -> Engine:
    """An engine whose schema is current, or exit.

    ``migrate``: create or upgrade the schema (writing commands). ``write`` without
    ``migrate``: a writable engine on a current schema. Neither: read-only — a read
    never creates a database, upgrades it or switches its journal mode, so it works on
    a read-only copy (exit 7 when there is no database at all).
    """
    url = settings.database_url
    try:
        engine = make_engine(url, readonly=not (migrate or write))
        if migrate:
            upgrade(engine)
        else:
            current = current_revision(engine)
            if current is None:
                raise CliExit(
                    EXIT_NO_DATABASE,
                    f"no Annexa database at {redacted_url(url)}: run `annexa collect` (or "
                    "`annexa demo`) first, or set ANNEXA_DATABASE_URL",
                )
            if current != head_revision():
                raise CliExit(
                    EXIT_DATABASE,
                    f"database {redacted_url(url)} has schema {current}, expected "
                    f"{head_revision()}: run `annexa db upgrade` (or `annexa collect`) first",
                )
    except NoDatabaseError:
        raise CliExit(
            EXIT_NO_DATABASE,
            f"no Annexa database at {redacted_url(url)}: run `annexa collect` (or "
            "`annexa demo`) first, or set ANNEXA_DATABASE_URL",
        ) from None
    except CliExit:
        raise
    except SQLAlchemyError as exc:
        raise CliExit(
            EXIT_DATABASE,
            f"database {redacted_url(url)} is unreachable: {exc.__class__.__name__}: "
            f"{str(exc).splitlines()[0]}",
        ) from None
    return engine


@contextmanager
def _cli_errors() -> Iterator[None]:
    try:
        yield
    except CliExit as exc:
        if exc.message:
            err.print(f"[bold red]error:[/] {exc.message}", highlight=False, markup=True)
        raise typer.Exit(exc.code) from None
    except ConfigError as exc:
        # Raised late (a signing key or trusted-keys file read on use): still exit 2.
        err.print("[bold red]error:[/] invalid configuration:", highlight=False)
        err.print(str(exc), highlight=False, markup=False)
        raise typer.Exit(EXIT_USAGE) from None
    except (OperationalError, ProgrammingError) as exc:
        err.print(f"[bold red]error:[/] database error: {str(exc).splitlines()[0]}")
        raise typer.Exit(EXIT_DATABASE) from None

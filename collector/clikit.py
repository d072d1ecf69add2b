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

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from collector.output import OutputFormat

# Start-up is part of the product: `annexa --help` must not pay for alembic,
# SQLAlchemy, structlog, pydantic or any SDK. Commands import what they use when they
# run (tests/test_cli_startup.py keeps this true; benchmarks/startup.py measures it).
if TYPE_CHECKING:
    from rich.console import Console
    from sqlalchemy import Engine

    from collector.config import Settings
    from core.checks import CheckSpec
    from mappings.loader import MappingIndex

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
    # Plain click help: typer's Rich help imports rich.markdown and friends, which
    # alone doubles the time of `annexa --help` (benchmarks/startup.py).
    rich_markup_mode=None,
)
mappings_app = typer.Typer(help="Validate the Annex A mapping files.", no_args_is_help=True)
db_app = typer.Typer(help="Manage the evidence database schema.", no_args_is_help=True)
evidence_app = typer.Typer(help="Read stored evidence.", no_args_is_help=True)
app.add_typer(mappings_app, name="mappings")
app.add_typer(db_app, name="db")
app.add_typer(evidence_app, name="evidence")

class _StderrConsole:
    """The Rich console on stderr, made on first use: importing ``rich.console`` is a
    good part of what `annexa --help` would otherwise spend."""

    _console: Console | None = None

    @property
    def real(self) -> Console:
        if self._console is None:
            from rich.console import Console

            self._console = Console(stderr=True)
        return self._console

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


err: Any = _StderrConsole()


def version_text() -> str:
    """``annexa <version> (commit <sha>, schema <revision>)``: what a bug report needs.

    The commit is known when the package runs from a git checkout (an editable
    install); the schema revision is the newest store migration this build writes.
    """
    import subprocess
    from importlib.metadata import PackageNotFoundError, version

    try:
        release = version("annexa")
    except PackageNotFoundError:
        release = "unknown"
    root = Path(__file__).resolve().parent.parent
    commit = "unknown"
    if (root / ".git").exists():
        try:
            done = subprocess.run(  # noqa: S603 - fixed argv, no shell
                ["git", "-C", str(root), "rev-parse", "--short=12", "HEAD"],  # noqa: S607
                capture_output=True,
                text=True,
                timeout=5,
                check=False,
            )
            if done.returncode == 0 and done.stdout.strip():
                commit = done.stdout.strip()
        except (OSError, subprocess.SubprocessError):
            pass
    from store.migrate import head_revision

    return f"annexa {release} (commit {commit}, schema {head_revision()})"


def _print_version(value: bool) -> None:
    if value:
        typer.echo(version_text())
        raise typer.Exit(EXIT_OK)


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            is_eager=True,
            callback=_print_version,
            help="Print the version, git commit (when known) and schema revision; exit.",
        ),
    ] = False,
    no_pager: Annotated[
        bool,
        typer.Option(
            "--no-pager",
            help="Never page long tables on a terminal ($ANNEXA_PAGER, $PAGER or less).",
        ),
    ] = False,
) -> None:
    """Automated evidence collection for ISO/IEC 27001:2022 Annex A."""
    if no_pager:
        from collector import output

        output.PAGER_ENABLED = False

ConfigOpt = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="Config file (default: $ANNEXA_CONFIG or ./annexa.toml)."),
]
FormatOpt = Annotated[
    OutputFormat, typer.Option("--format", "-f", help="Output format: table, json or csv.")
]
WideOpt = Annotated[
    bool,
    typer.Option(
        "--wide", help="Table: every column, values in full (default: what fits 80 columns)."
    ),
]
AtOpt = Annotated[
    str | None,
    typer.Option("--at", help="Answer as of this instant (ISO 8601, UTC if no offset)."),
]
PeriodOpt = Annotated[
    str | None,
    typer.Option(
        "--period",
        help="START..END (ISO 8601 dates or date-times, UTC if no offset; a date END "
        "includes that whole day).",
    ),
]


class CliExit(Exception):
    def __init__(self, code: int, message: str | None = None) -> None:
        self.code = code
        self.message = message


class UsageError(CliExit):
    """Invalid usage, configuration or mapping: exit 2, nothing written."""

    def __init__(self, message: str) -> None:
        super().__init__(EXIT_USAGE, message)


def parse_instant(text: str | None) -> datetime | None:
    """ISO 8601 date or date-time; naive values are UTC. ``None`` means now."""
    if text is None or text == "now":
        return None
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(f"--at: {text!r} is not an ISO 8601 date or date-time") from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def _stamp(instant: datetime | None) -> str:
    return (instant or datetime.now(UTC)).isoformat(timespec="seconds")


def choose(option: str, value: str | None, choices: Sequence[str], *, what: str = "") -> None:
    """Exit 2 unless ``value`` (when given) is one of ``choices``, naming the closest.

    A filter that matches nothing because of a typo would print an empty table and
    exit 0 — indistinguishable from "all clear"; so a value outside the known set is an
    error that suggests the nearest spelling ("did you mean fail?").
    """
    if value is None or value in choices:
        return
    import difflib

    close = difflib.get_close_matches(value, list(choices), n=1, cutoff=0.5)
    hint = f"; did you mean {close[0]}?" if close else ""
    listed = ", ".join(choices) if len(choices) <= 12 else f"{choices[0]} … {choices[-1]}"
    raise UsageError(f"{option}: {value!r} is not {what or 'one of'} {listed}{hint}")


def is_glob(pattern: str | None) -> bool:
    return pattern is not None and any(c in pattern for c in "*?[")


def glob_match(value: Any, pattern: str | None, *, substring: bool = False) -> bool:
    """``pattern`` with ``*``, ``?`` or ``[...]`` is a glob over the whole value;
    without, an exact value (or a substring when ``substring``)."""
    if pattern is None:
        return True
    text = "" if value is None else str(value)
    if is_glob(pattern):
        from fnmatch import fnmatchcase

        return fnmatchcase(text, pattern)
    return pattern in text if substring else text == pattern


def _settings(config: Path | None) -> Settings:
    from collector.config import ConfigError, load_settings
    from collector.logs import configure_logging

    try:
        settings = load_settings(config)
    except ConfigError as exc:
        raise UsageError(f"invalid configuration:\n{exc}") from None
    configure_logging(settings.model.log.format, settings.model.log.level)
    return settings


def known_checks() -> dict[str, CheckSpec]:
    from collector.plugins import available_plugins

    out: dict[str, CheckSpec] = {}
    for cls in available_plugins().values():
        for spec in cls.checks():
            out[spec.id] = spec
    return out


def _index(settings: Settings, *, check_ids: bool = True) -> MappingIndex:
    """The mapping index; ``check_ids=False`` skips checking that every mapped check
    exists, which needs every connector imported (about half a second of start-up).
    Read commands skip it: ``collect`` and ``mappings validate`` always check."""
    from mappings.loader import MappingError, load_mappings

    try:
        known = set(known_checks()) if check_ids else None
        return load_mappings(settings.mapping_dirs, known_checks=known)
    except MappingError as exc:
        raise UsageError(f"invalid mapping: {exc}") from None


def _engine(settings: Settings, *, migrate: bool, write: bool = False) -> Engine:
    """An engine whose schema is current, or exit.

    ``migrate``: create or upgrade the schema (writing commands). ``write`` without
    ``migrate``: a writable engine on a current schema. Neither: read-only — a read
    never creates a database, upgrades it or switches its journal mode, so it works on
    a read-only copy (exit 7 when there is no database at all).
    """
    from sqlalchemy.exc import SQLAlchemyError

    from store.engine import NoDatabaseError, make_engine, redacted_url
    from store.migrate import current_revision, head_revision, upgrade

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


def error_line(message: str, *, label: str = "error") -> None:
    """``error: <message>`` on stderr, unwrapped and literal: a reason is one line that
    people and scripts grep, and text such as ``[[connectors]]`` is not Rich markup."""
    from rich.markup import escape

    err.print(f"[bold red]{label}:[/] {escape(message)}", highlight=False, soft_wrap=True)


@contextmanager
def _cli_errors() -> Iterator[None]:
    # Imported when a command runs, not when the CLI loads (see the imports above).
    from sqlalchemy.exc import OperationalError, ProgrammingError

    from collector.config import ConfigError

    try:
        yield
    except CliExit as exc:
        if exc.message:
            error_line(exc.message)
        raise typer.Exit(exc.code) from None
    except ConfigError as exc:
        # Raised late (a signing key or trusted-keys file read on use): still exit 2.
        err.print("[bold red]error:[/] invalid configuration:", highlight=False)
        err.print(str(exc), highlight=False, markup=False, soft_wrap=True)
        raise typer.Exit(EXIT_USAGE) from None
    except (OperationalError, ProgrammingError) as exc:
        error_line(f"database error: {str(exc).splitlines()[0]}")
        raise typer.Exit(EXIT_DATABASE) from None


@dataclass
class Command:
    """What a command reads, each when it first asks: the ``--at`` instant (parsed on
    entry; None is now), the settings, the mappings and the store."""

    config: Path | None
    instant: datetime | None

    @cached_property
    def settings(self) -> Settings:
        """The configuration (see :func:`_settings`), loaded once."""
        return _settings(self.config)

    def index(self, *, check_ids: bool = True) -> MappingIndex:
        """The mapping index (see :func:`_index`)."""
        return _index(self.settings, check_ids=check_ids)

    def engine(self, *, migrate: bool = False, write: bool = False) -> Engine:
        """The store, read-only unless asked (see :func:`_engine`)."""
        return _engine(self.settings, migrate=migrate, write=write)

    @property
    def stamp(self) -> str:
        """The instant answered for, as titles show it."""
        return _stamp(self.instant)


@contextmanager
def command(config: Path | None, *, at: str | None = None) -> Iterator[Command]:
    """The body of a command: ``--at`` parsed, the rest read on demand, and every error
    inside turned into its message and exit code (:func:`_cli_errors`)."""
    with _cli_errors():
        yield Command(config, parse_instant(at))

"""The ``annexa`` command line.

Exit codes (documented in README):

====  ==================================================================
0     success
1     unexpected internal error (a bug: please report it)
2     invalid usage, configuration or mapping — nothing was written
3     collection finished *partial*: some scopes could not be read
      (recorded as ``error`` findings; everything else was stored)
4     collection *failed* or was aborted for at least one connector
5     integrity verification failed (``annexa verify``)
6     database unreachable, or its schema is missing / out of date
====  ==================================================================
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import structlog
import typer
from rich.console import Console
from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError, ProgrammingError, SQLAlchemyError

from collector.config import ConfigError, Settings, load_settings
from collector.logs import configure_logging
from collector.output import OutputFormat, render
from connectors.base import available_connectors
from connectors.checks import CheckSpec
from mappings.loader import MappingError, MappingIndex, load_mappings, validate_mappings
from store.engine import make_engine, redacted_url
from store.migrate import current_revision, head_revision, upgrade

EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_USAGE = 2
EXIT_PARTIAL = 3
EXIT_FAILED = 4
EXIT_VERIFY = 5
EXIT_DATABASE = 6

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


def _engine(settings: Settings, *, migrate: bool) -> Engine:
    """An engine whose schema is current (migrated when ``migrate``), or exit 6."""
    url = settings.database_url
    try:
        engine = make_engine(url)
        if migrate:
            upgrade(engine)
        else:
            current = current_revision(engine)
            if current != head_revision():
                raise CliExit(
                    EXIT_DATABASE,
                    f"database {redacted_url(url)} has schema {current or 'none'}, expected "
                    f"{head_revision()}: run `annexa db upgrade` (or `annexa collect`) first",
                )
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
    except (OperationalError, ProgrammingError) as exc:
        err.print(f"[bold red]error:[/] database error: {str(exc).splitlines()[0]}")
        raise typer.Exit(EXIT_DATABASE) from None


# -- collect --------------------------------------------------------------------------


@app.command()
def collect(
    config: ConfigOpt = None,
    only: Annotated[
        list[str] | None, typer.Option("--only", help="Collect only this connector (repeatable).")
    ] = None,
    fmt: FormatOpt = OutputFormat.table,
) -> None:
    """Run every enabled connector once and store what it finds."""
    with _cli_errors():
        settings = _settings(config)
        index = _index(settings)
        chosen = [c for c in settings.connectors if c.cfg.enabled]
        if only:
            names = {c.name for c in settings.connectors}
            unknown = sorted(set(only) - names)
            if unknown:
                raise CliExit(
                    EXIT_USAGE,
                    f"--only: no connector named {', '.join(unknown)} "
                    f"(configured: {', '.join(sorted(names)) or 'none'})",
                )
            chosen = [c for c in settings.connectors if c.name in only]
        if not chosen:
            raise CliExit(
                EXIT_USAGE,
                "no connector to collect: add a [[connectors]] table to "
                "the config (see config.example.toml)",
            )
        engine = _engine(settings, migrate=True)
        from collector.correlate import run_correlation, without_correlation

        summaries = _collect_with_progress(settings, without_correlation(chosen), engine, index)
        # Cross-source identity checks run after the sources they read from.
        correlation = run_correlation(settings, engine, index, chosen)
        if correlation is not None:
            summaries.append(correlation)
        rows = [
            {
                "connector": s.source,
                "run_id": s.run_id,
                "status": s.status,
                "evidence": s.counts["evidence_seen"],
                "new_evidence": s.counts["evidence_written"],
                "findings": s.counts["findings_seen"],
                "new_findings": s.counts["findings_written"],
                "errors": len(s.errors),
                "digest": s.digest[:16],
            }
            for s in summaries
        ]
        render(
            rows,
            [
                ("connector", "Connector"),
                ("status", "Status"),
                ("evidence", "Evidence"),
                ("new_evidence", "New"),
                ("findings", "Findings"),
                ("new_findings", "New"),
                ("errors", "Errors"),
                ("run_id", "Run"),
            ],
            fmt,
            title="Collection",
        )
        statuses = {s.status for s in summaries}
        if statuses & {"failed", "aborted"}:
            raise typer.Exit(EXIT_FAILED)
        if "partial" in statuses:
            raise typer.Exit(EXIT_PARTIAL)


def _collect_with_progress(
    settings: Settings, chosen: list, engine: Engine, index: MappingIndex
) -> list:
    from collector.runner import run_connector

    if not err.is_terminal:
        return [run_connector(settings, lc, engine, index) for lc in chosen]
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    summaries = []
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        TextColumn("{task.completed} records"),
        TimeElapsedColumn(),
        console=err,
        transient=True,
    ) as progress:
        for lc in chosen:
            task = progress.add_task(f"collecting {lc.name}", total=None)

            def tick(_name: str, n: int, task: Any = task) -> None:
                progress.update(task, completed=n)

            summaries.append(run_connector(settings, lc, engine, index, progress=tick))
    return summaries


# -- controls / findings / evidence ------------------------------------------------------


@app.command()
def controls(
    config: ConfigOpt = None,
    at: AtOpt = None,
    theme: Annotated[
        str | None, typer.Option(help="organizational, people, physical or technological.")
    ] = None,
    status: Annotated[str | None, typer.Option(help="Only controls with this status.")] = None,
    period: Annotated[
        str | None,
        typer.Option(
            "--period",
            help="START..END: per control, the status at END, the worst status, time failing "
            "and every change during the period.",
        ),
    ] = None,
    framework: Annotated[
        str,
        typer.Option(
            "--framework", help="iso27001-2022 (default), iso27001-2013 or soc2 (crosswalks)."
        ),
    ] = "iso27001-2022",
    fmt: FormatOpt = OutputFormat.table,
) -> None:
    """Status of every Annex A control, now, --at an instant, or over a --period."""
    from collector.commands.auditor import exceptions_for, parse_period, scope_for
    from store.queries import CONTROL_STATUSES, STATUS_RANK, control_statuses, control_timelines

    with _cli_errors():
        settings = _settings(config)
        index = _index(settings, check_ids=False)
        if status and status not in CONTROL_STATUSES:
            raise CliExit(EXIT_USAGE, f"--status must be one of {', '.join(CONTROL_STATUSES)}")
        if period and at:
            raise CliExit(EXIT_USAGE, "--at and --period cannot be combined")
        crosswalk = None
        if framework != "iso27001-2022":
            from mappings.crosswalk import load_framework

            try:
                crosswalk = load_framework(framework, index.catalog)
            except MappingError as exc:
                raise CliExit(EXIT_USAGE, f"--framework: {exc}") from None
        rules, _ = exceptions_for(settings)
        instant = parse_instant(at)
        engine = _engine(settings, migrate=False)
        timelines = None
        if period:
            start, instant = parse_period(period)
            timelines = control_timelines(
                engine, index, start, instant, settings.freshness, exceptions=rules
            )
        rows = [
            c.as_dict()
            for c in control_statuses(engine, index, instant, settings.freshness, exceptions=rules)
        ]
        if timelines is not None:
            for r in rows:
                tl = timelines[r["control"]].as_dict()
                r["worst"] = tl["worst"]
                r["compliant_pct"] = tl["compliant_pct"]
                r["fail_hours"] = round(sum(p["hours"] for p in tl["fail_periods"]), 2)
                r["period"] = tl
        if crosswalk is not None:
            from mappings.crosswalk import report_through

            # Every 2022 control counts (a --theme filter would make the others look
            # unevidenced); controls the SoA excludes count as not applicable.
            scope = scope_for(settings, index)
            rows = report_through(
                crosswalk,
                {r["control"]: r["status"] for r in rows},
                STATUS_RANK,
                excluded={c for c, a in scope.controls.items() if not a.applicable},
            )
            if status:
                rows = [r for r in rows if r["status"] == status]
            render(
                rows,
                [
                    ("control", "Control"),
                    ("title", "Title"),
                    ("status", "Status"),
                    ("unevidenced", "Unevidenced"),
                    ("iso27001_2022", "ISO/IEC 27001:2022"),
                ],
                fmt,
                title=f"{crosswalk.title} at {_stamp(instant)} (through {crosswalk.file})",
            )
            return
        if theme:
            rows = [r for r in rows if r["theme"] == theme]
        if status:
            rows = [r for r in rows if r["status"] == status]
        for r in rows:
            c = r["counts"]
            r["summary"] = " ".join(f"{k}={v}" for k, v in c.items())
            listed = r["failing_resources"] or r["error_scopes"] or r["excepted_resources"]
            r["resources"] = listed[:5] + (
                [f"… +{len(listed) - 5} more"] if len(listed) > 5 else []
            )
        columns = [
            ("control", "Control"),
            ("title", "Title"),
            ("theme", "Theme"),
            ("status", "Status"),
            ("summary", "Findings"),
            ("resources", "Failing / erroring / excepted resources"),
        ]
        if timelines is not None:
            columns[4:4] = [
                ("worst", "Worst"),
                ("fail_hours", "Hours failing"),
                ("compliant_pct", "Compliant %"),
            ]
        render(
            rows,
            columns,
            fmt,
            title=f"Annex A controls at {_stamp(instant)}",
        )


@app.command()
def findings(
    config: ConfigOpt = None,
    control: Annotated[
        str | None, typer.Option(help="Only findings mapped to this control.")
    ] = None,
    check: Annotated[str | None, typer.Option(help="Only this check id.")] = None,
    status: Annotated[
        str | None, typer.Option(help="pass, fail, error, not_applicable or excepted.")
    ] = None,
    source: Annotated[str | None, typer.Option(help="Only this connector instance.")] = None,
    at: AtOpt = None,
    period: Annotated[
        str | None,
        typer.Option(
            "--period", help="START..END: every finding version in force during the period."
        ),
    ] = None,
    fmt: FormatOpt = OutputFormat.table,
) -> None:
    """Findings in force now, --at an instant, or during a --period (the population)."""
    from collector.commands.auditor import exceptions_for, parse_period
    from store.queries import exception_for, findings_at, findings_in_period

    with _cli_errors():
        settings = _settings(config)
        if period and at:
            raise CliExit(EXIT_USAGE, "--at and --period cannot be combined")
        rules, _ = exceptions_for(settings)
        instant = parse_instant(at)
        engine = _engine(settings, migrate=False)
        stored_status = None if status == "excepted" else status
        with engine.connect() as conn:
            if period:
                start, end = parse_period(period)
                found = findings_in_period(
                    conn, start, end, check_id=check, source=source, status=stored_status
                )
                when = end
            else:
                found = list(
                    findings_at(conn, instant, check_id=check, source=source, status=stored_status)
                )
                when = instant or datetime.now(UTC)
            rows = []
            for r in found:
                if control is not None and control not in r["controls"]:
                    continue
                at_when = r.get("valid_to") is None
                exc = exception_for(rules, r, when) if at_when else None
                r["effective_status"] = "excepted" if exc else r["status"]
                r["exception"] = exc.id if exc else None
                if status == "excepted" and not exc:
                    continue
                rows.append(r)
        columns = [
            ("check_id", "Check"),
            ("status", "Status"),
            ("effective_status", "Effective"),
            ("severity", "Severity"),
            ("source", "Source"),
            ("scope", "Scope"),
            ("region", "Region"),
            ("resource_id", "Resource"),
            ("controls", "Controls"),
            ("message", "Message"),
            ("observed_at", "Observed"),
        ]
        if period:
            columns += [("valid_from", "From"), ("valid_to", "To")]
        render(rows, columns, fmt, title="Findings")


@evidence_app.command("show")
def evidence_show(
    config: ConfigOpt = None,
    resource: Annotated[str | None, typer.Option(help="Substring of the resource id.")] = None,
    resource_type: Annotated[
        str | None, typer.Option("--type", help="Resource type, e.g. aws.s3.bucket.")
    ] = None,
    content_hash: Annotated[
        str | None, typer.Option("--hash", help="Evidence content hash.")
    ] = None,
    source: Annotated[str | None, typer.Option(help="Only this connector instance.")] = None,
    at: AtOpt = None,
    period: Annotated[
        str | None,
        typer.Option(
            "--period", help="START..END: every evidence version in force during the period."
        ),
    ] = None,
    fmt: FormatOpt = OutputFormat.table,
) -> None:
    """Evidence snapshots in force now, --at an instant or during a --period, with payloads."""
    from collector.commands.auditor import parse_period
    from store.queries import bodies, evidence_at, evidence_in_period

    with _cli_errors():
        settings = _settings(config)
        if period and at:
            raise CliExit(EXIT_USAGE, "--at and --period cannot be combined")
        instant = parse_instant(at)
        engine = _engine(settings, migrate=False)
        with engine.connect() as conn:
            if period:
                start, end = parse_period(period)
                rows = evidence_in_period(
                    conn,
                    start,
                    end,
                    source=source,
                    resource=resource,
                    resource_type=resource_type,
                    content_hash=content_hash,
                )
                stored = bodies(conn, (r["content_hash"] for r in rows))
                for r in rows:
                    body = stored.get(r["content_hash"])
                    r["payload"] = json.loads(body) if body is not None else None
                    r["body_removed"] = body is None
            else:
                rows = list(
                    evidence_at(
                        conn,
                        instant,
                        resource=resource,
                        resource_type=resource_type,
                        content_hash=content_hash,
                        source=source,
                    )
                )
        for r in rows:
            # A manual file's bytes are not for a terminal: show what they are instead.
            p = r.get("payload")
            if isinstance(p, dict) and "content_base64" in p:
                r["payload"] = {k: v for k, v in p.items() if k != "content_base64"} | {
                    "content": f"<{p.get('size')} bytes; export the audit package to get it>"
                }
        if fmt is OutputFormat.table:
            console = Console()
            for r in rows:
                console.rule(f"{r['resource_type']}  {r['resource_id']}")
                console.print(
                    f"source={r['source']} scope={r['scope']} region={r['region']} "
                    f"collected_at={r['collected_at'].isoformat()} hash={r['content_hash']}"
                    + (
                        f" valid_to={r['valid_to'].isoformat() if r['valid_to'] else '-'}"
                        if period
                        else ""
                    ),
                    highlight=False,
                    markup=False,
                )
                if r["payload"] is None:
                    console.print("(body removed by retention; its hash is kept)")
                else:
                    console.print_json(data=r["payload"])
            if not rows:
                console.print("no evidence matches")
            return
        columns = [
            ("source", "source"),
            ("scope", "scope"),
            ("region", "region"),
            ("resource_type", "resource_type"),
            ("resource_id", "resource_id"),
            ("content_hash", "content_hash"),
            ("collected_at", "collected_at"),
            ("payload", "payload"),
        ]
        if period:
            columns += [("valid_from", "valid_from"), ("valid_to", "valid_to")]
        render(rows, columns, fmt)


@app.command()
def runs(
    config: ConfigOpt = None,
    source: Annotated[str | None, typer.Option(help="Only this connector instance.")] = None,
    limit: Annotated[int, typer.Option(help="How many runs, newest first.")] = 20,
    fmt: FormatOpt = OutputFormat.table,
) -> None:
    """Recent runs with their status, counts and digests."""
    from store.queries import list_runs

    with _cli_errors():
        settings = _settings(config)
        engine = _engine(settings, migrate=False)
        with engine.connect() as conn:
            rows = list_runs(conn, source=source, limit=limit)
        render(
            rows,
            [
                ("id", "Run"),
                ("source", "Source"),
                ("status", "Status"),
                ("started_at", "Started"),
                ("finished_at", "Finished"),
                ("errors", "Errors"),
                ("digest", "Digest"),
            ],
            fmt,
            title="Runs",
        )


# -- checks / mappings / verify / db ---------------------------------------------------------


@app.command()
def checks(config: ConfigOpt = None, fmt: FormatOpt = OutputFormat.table) -> None:
    """Every check with its metadata, parameters and the controls it evidences."""
    with _cli_errors():
        settings = _settings(config)
        index = _index(settings)
        rows = [
            {
                "id": s.id,
                "title": s.title,
                "severity": s.severity,
                "resource_type": s.resource_type,
                "controls": list(index.controls_for(s.id)),
                "parameters": dict(s.parameters),
                "rationale": s.rationale,
                "remediation": s.remediation,
            }
            for s in sorted(known_checks().values(), key=lambda s: s.id)
        ]
        render(
            rows,
            [
                ("id", "Check"),
                ("severity", "Severity"),
                ("controls", "Controls"),
                ("title", "Title"),
                ("parameters", "Parameters"),
                ("rationale", "Rationale"),
                ("remediation", "Remediation"),
            ],
            fmt,
            title="Checks",
        )


@mappings_app.command("validate")
def mappings_validate(config: ConfigOpt = None) -> None:
    """Validate the catalog, built-in and configured mapping files; list every problem."""
    with _cli_errors():
        settings = _settings(config)
        problems = validate_mappings(settings.mapping_dirs, set(known_checks()))
        if problems:
            for p in problems:
                err.print(f"[bold red]error:[/] {p}", highlight=False)
            raise CliExit(EXIT_USAGE, f"{len(problems)} mapping problem(s)")
        index = load_mappings(settings.mapping_dirs, known_checks=set(known_checks()))
        typer.echo(
            f"mappings OK: {len(index.catalog)} controls, {len(index.links)} links, "
            f"{len(index.parts)} documented parts ({len(index.manual)} manual controls), "
            f"{len(index.files)} files, digest {index.digest[:16]}"
        )


@app.command()
def verify(config: ConfigOpt = None, fmt: FormatOpt = OutputFormat.table) -> None:
    """Recompute every run's digest chain from the stored rows; exit 5 on any break."""
    from store.integrity import verify as verify_store

    with _cli_errors():
        settings = _settings(config)
        engine = _engine(settings, migrate=False)
        result = verify_store(engine)
        rows = [{"run_id": p.run_id, "problem": p.reason} for p in result.problems]
        if fmt is not OutputFormat.table:
            render(rows, [("run_id", "run_id"), ("problem", "problem")], fmt)
        if result.ok:
            if fmt is OutputFormat.table:
                typer.echo(f"verify OK: {result.runs_checked} runs in {result.sources} chains")
            return
        if fmt is OutputFormat.table:
            render(
                rows,
                [("run_id", "Run"), ("problem", "Problem")],
                fmt,
                title="Integrity problems",
                console=err,
            )
        err.print(f"[bold red]verify FAILED[/]: first broken run {result.first_broken_run}")
        raise typer.Exit(EXIT_VERIFY)


@db_app.command("upgrade")
def db_upgrade(config: ConfigOpt = None) -> None:
    """Create or migrate the schema to the current version."""
    with _cli_errors():
        settings = _settings(config)
        _engine(settings, migrate=True)
        typer.echo(f"database {redacted_url(settings.database_url)} is at schema {head_revision()}")


@app.command()
def demo(
    db: Annotated[Path, typer.Option(help="SQLite file to collect into.")] = Path("annexa.db"),
    fmt: FormatOpt = OutputFormat.table,
) -> None:
    """Collect a simulated AWS estate (moto on 127.0.0.1) and print the control table."""
    from collector.demo import run_demo

    with _cli_errors():
        code = run_demo(db, fmt)
        raise typer.Exit(code)


@app.command()
def daemon(
    config: ConfigOpt = None,
    port: Annotated[
        int | None,
        typer.Option(help="Port of /healthz, /readyz and /metrics (default: daemon.port)."),
    ] = None,
) -> None:
    """Collect every connector on its schedule until SIGTERM/SIGINT (replicas welcome)."""
    from collector.daemon import DaemonError, run_daemon

    with _cli_errors():
        settings = _settings(config)
        index = _index(settings)
        engine = _engine(settings, migrate=True)
        try:
            code = run_daemon(settings, index=index, engine=engine, port=port)
        except DaemonError as exc:
            raise CliExit(exc.code, str(exc)) from None
        raise typer.Exit(code)


def _load_command_modules() -> None:
    from collector.commands import load_all

    load_all()


_load_command_modules()


def main() -> None:
    try:
        app()
    except SystemExit:
        raise
    except Exception:  # noqa: BLE001 - last resort: say it is a bug, exit 1
        structlog.get_logger("annexa").error("internal error", exc_info=True)
        err.print("[bold red]internal error[/]: this is a bug in annexa; please report it")
        sys.exit(EXIT_INTERNAL)

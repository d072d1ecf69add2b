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
6     database unreachable, or its schema is out of date
7     no Annexa database there (read commands never create one)
130   interrupted by SIGINT: the run was sealed ``aborted``
143   interrupted by SIGTERM: the run was sealed ``aborted``
====  ==================================================================
"""
from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from collector.clikit import (
    EXIT_DATABASE,  # noqa: F401 - every exit code is named here, beside the docstring
    EXIT_FAILED,
    EXIT_INTERNAL,
    EXIT_NO_DATABASE,  # noqa: F401 - every exit code is named here, beside the docstring
    EXIT_OK,
    EXIT_PARTIAL,
    EXIT_VERIFY,
    AtOpt,
    CliExit,
    ConfigOpt,
    FormatOpt,
    PeriodOpt,
    UsageError,
    WideOpt,
    _cli_errors,
    _stamp,
    app,
    choose,
    command,
    db_app,
    err,
    error_line,
    evidence_app,
    glob_match,
    is_glob,
    known_checks,
    mappings_app,
)
from collector.output import CONTROL_COLUMNS, FINDING_COLUMNS, RUN_COLUMNS, OutputFormat, render

# Start-up is part of the product: `annexa --help` must not pay for alembic,
# SQLAlchemy, structlog, pydantic or any SDK. Commands import what they use when they
# run (tests/test_cli_startup.py keeps this true; benchmarks/startup.py measures it).
if TYPE_CHECKING:
    from sqlalchemy import Engine

    from collector.config import Settings
    from mappings.loader import MappingIndex


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
    with command(config) as cmd:
        settings = cmd.settings
        index = cmd.index()
        chosen = [c for c in settings.connectors if c.cfg.enabled]
        if only:
            names = {c.name for c in settings.connectors}
            unknown = sorted(set(only) - names)
            if unknown:
                raise UsageError(
                    f"--only: no connector named {', '.join(unknown)} "
                    f"(configured: {', '.join(sorted(names)) or 'none'})",
                )
            chosen = [c for c in settings.connectors if c.name in only]
        if not chosen:
            raise UsageError(
                "no connector to collect: add a [[connectors]] table to "
                "the config (see config.example.toml)",
            )
        from collector.analysis import run_analyzers, without_analyzers
        from collector.decisions import DecisionFileError, file_decisions
        from collector.interrupts import Interrupts
        from collector.runner import recover

        _refuse_unresolved_secrets(settings, chosen)
        settings.signer()  # an unusable key: exit 2 before anything is written
        try:
            decisions = file_decisions(settings, index, known_checks())
        except DecisionFileError as exc:
            raise UsageError(str(exc)) from None
        engine = cmd.engine(migrate=True)
        for line in recover(settings, engine):
            typer.echo(f"recovered: {line}", err=True)
        _record_decisions(settings, engine, index, decisions)
        with Interrupts("collecting") as stop:
            summaries, spooled = _collect_with_progress(
                settings,
                without_analyzers(chosen),
                engine,
                index,
                stop.cancel_event,
            )
            # Analyzers (identity correlation, device ownership…) read what the sources
            # stored: they run after them.
            if not stop.interrupted and not spooled:
                summaries += run_analyzers(settings, engine, index, chosen)
        _print_collection(summaries, fmt)
        _print_run_errors(summaries)
        # One line each, never wrapped: scripts and people grep for them.
        for exc in spooled:
            typer.echo(f"database lost: {exc}", err=True)
        if stop.interrupted:
            for s in summaries:
                if s.status == "aborted":
                    typer.echo(
                        f"interrupted ({stop.name}): run {s.run_id} ({s.source}) sealed "
                        f"aborted after {s.counts['evidence_seen']} evidence item(s); "
                        "everything read before the interrupt is stored",
                        err=True,
                    )
            raise typer.Exit(stop.exit_code)
        statuses = {s.status for s in summaries}
        if spooled or statuses & {"failed", "aborted"}:
            raise typer.Exit(EXIT_FAILED)
        if "partial" in statuses:
            raise typer.Exit(EXIT_PARTIAL)


#: Error lines printed per run after a collection; the rest are in `annexa runs` and
#: `annexa findings --status error`.
MAX_ERROR_LINES = 20


def _print_run_errors(summaries: list) -> None:
    """One line per error with its reason, on stderr: the table's "Errors 1" says that
    something failed, this says what."""
    for s in summaries:
        for reason in s.errors[:MAX_ERROR_LINES]:
            error_line(f"{s.source}: {reason}", label=f"{s.status} run {s.run_id}")
        if len(s.errors) > MAX_ERROR_LINES:
            error_line(
                f"{s.source}: … {len(s.errors) - MAX_ERROR_LINES} more: `annexa findings "
                f"--status error --source {s.source}`",
                label=f"{s.status} run {s.run_id}",
            )


def _refuse_unresolved_secrets(settings: Settings, chosen: list) -> None:
    """The static part of `annexa config check`, before anything is written: a secret
    that does not resolve would only make a ``failed`` run full of ``error`` findings."""
    from collector.configcheck import sdk_lines, secret_lines

    bad = [line for line in [*sdk_lines(chosen), *secret_lines(settings, chosen)] if not line.ok]
    for line in bad:
        error_line(f"{line.what}: {line.detail}")
    if bad:
        raise UsageError(
            f"{len(bad)} problem(s) with SDKs or secret references: nothing collected "
            "(`annexa config check` checks them all)",
        )


def _record_decisions(
    settings: Settings, engine: Engine, index: MappingIndex, decisions: list
) -> None:
    """Record what the decision files state now (exceptions, SoA), if it changed."""
    from collector.decisions import sync

    summary = sync(settings, engine, index, decisions)
    if summary is not None:
        err.print(
            f"decisions recorded: run {summary.run_id} "
            f"({summary.counts['evidence_written']} new or changed, "
            f"{summary.counts['evidence_closed']} revoked)",
            highlight=False,
            markup=False,
        )


def _print_collection(summaries: list, fmt: OutputFormat) -> None:
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
            "signed_by": s.key_id,
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


def _collect_with_progress(
    settings: Settings,
    chosen: list,
    engine: Engine,
    index: MappingIndex,
    cancel_event: Any,
) -> tuple[list, list]:
    """Run ``chosen`` one after the other; stop starting new ones once cancelled.

    Returns the summaries, and the runs that lost the database (spooled: written by
    the next command).
    """
    from collector.runner import RunSpooledError, run_connector

    summaries: list = []
    spooled: list[RunSpooledError] = []

    def one(lc: Any, tick: Any = None) -> None:
        try:
            summaries.append(
                run_connector(
                    settings, lc, engine, index, cancel_event=cancel_event, progress=tick
                )
            )
        except RunSpooledError as exc:
            spooled.append(exc)

    if not err.is_terminal:
        for lc in chosen:
            if cancel_event.is_set():
                break
            one(lc)
        return summaries, spooled
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        TextColumn("{task.completed} records"),
        TimeElapsedColumn(),
        console=err.real,
        transient=True,
    ) as progress:
        for lc in chosen:
            if cancel_event.is_set():
                break
            task = progress.add_task(f"collecting {lc.name}", total=None)

            def tick(_name: str, n: int, task: Any = task) -> None:
                progress.update(task, completed=n)

            one(lc, tick)
    return summaries, spooled


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
            "--framework",
            help="iso27001-2022 (default), or a crosswalk: iso27001-2013, soc2, nist-csf-2.0, "
            "nis2, pci-dss-4.0, hipaa-security, gdpr-art32.",
        ),
    ] = "iso27001-2022",
    fmt: FormatOpt = OutputFormat.table,
    wide: WideOpt = False,
) -> None:
    """Status of every Annex A control, now, --at an instant, or over a --period."""
    from collector.commands.auditor import instant_or_period, recorded_decisions
    from store.status import CONTROL_STATUSES, STATUS_RANK, control_statuses
    from store.timelines import control_timelines

    with command(config) as cmd:
        settings = cmd.settings
        index = cmd.index(check_ids=False)
        from mappings.loader import THEMES

        choose("--status", status, CONTROL_STATUSES)
        choose("--theme", theme, THEMES)
        instant, span = instant_or_period(at, period)
        crosswalk = None
        if framework != "iso27001-2022":
            from mappings.crosswalk import load_framework
            from mappings.loader import MappingError

            try:
                crosswalk = load_framework(framework, index.catalog)
            except MappingError as exc:
                raise UsageError(f"--framework: {exc}") from None
        engine = cmd.engine(migrate=False)
        rules, scope = recorded_decisions(settings, engine, index, instant)
        timelines = None
        if span:
            start, instant = span
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
            from collector.commands.isms import clause_status_map
            from mappings.crosswalk import report_through

            # Every 2022 control counts (a --theme filter would make the others look
            # unevidenced); controls the SoA excludes count as not applicable; clauses
            # 4-10 (which official mappings reference) count with their readiness.
            statuses = {r["control"]: r["status"] for r in rows}
            statuses |= clause_status_map(settings, engine, index, instant, statuses, rules)
            rows = report_through(
                crosswalk,
                statuses,
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
        columns = list(CONTROL_COLUMNS)
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
            narrow=("control", "title", "status", "worst", "summary"),
            wide=wide,
        )


@app.command()
def findings(
    config: ConfigOpt = None,
    control: Annotated[
        str | None, typer.Option(help="Only findings mapped to this control (e.g. A.8.5).")
    ] = None,
    check: Annotated[
        str | None, typer.Option(help="Only this check id, or a glob (aws.s3.*).")
    ] = None,
    status: Annotated[
        str | None, typer.Option(help="pass, fail, error, not_applicable or excepted.")
    ] = None,
    source: Annotated[
        str | None, typer.Option(help="Only this connector instance, or a glob.")
    ] = None,
    resource: Annotated[
        str | None,
        typer.Option(help="Resource ids containing this text, or a glob (arn:*:prod-*)."),
    ] = None,
    at: AtOpt = None,
    period: PeriodOpt = None,
    fmt: FormatOpt = OutputFormat.table,
    wide: WideOpt = False,
) -> None:
    """Findings in force now, --at an instant, or during a --period (the population)."""
    from collector.commands.auditor import instant_or_period, recorded_decisions
    from core.records import FINDING_STATUSES
    from store.exceptions import exception_for
    from store.queries import findings_at, findings_in_period

    with command(config) as cmd:
        settings = cmd.settings
        choose("--status", status, (*FINDING_STATUSES, "excepted"))
        if control is not None:
            catalog = list(cmd.index(check_ids=False).catalog)
            choose("--control", control, catalog, what="an Annex A control:")
        instant, span = instant_or_period(at, period)
        engine = cmd.engine(migrate=False)
        rules, _ = recorded_decisions(settings, engine, None, instant)
        stored_status = None if status == "excepted" else status
        # Exact ids go to SQL; globs are matched here.
        exact_check = None if is_glob(check) else check
        exact_source = None if is_glob(source) else source
        with engine.connect() as conn:
            if span:
                start, end = span
                found = findings_in_period(
                    conn, start, end, check_id=exact_check, source=exact_source,
                    status=stored_status,
                )
                when = end
            else:
                found = list(
                    findings_at(
                        conn, instant, check_id=exact_check, source=exact_source,
                        status=stored_status,
                    )
                )
                when = instant or datetime.now(UTC)
            rows = []
            for r in found:
                if control is not None and control not in r["controls"]:
                    continue
                if not (
                    glob_match(r["check_id"], check)
                    and glob_match(r["source"], source)
                    and glob_match(r["resource_id"], resource, substring=True)
                ):
                    continue
                at_when = r.get("valid_to") is None
                exc = exception_for(rules, r, when) if at_when else None
                r["effective_status"] = "excepted" if exc else r["status"]
                r["exception"] = exc.id if exc else None
                if status == "excepted" and not exc:
                    continue
                rows.append(r)
        columns = list(FINDING_COLUMNS)
        if period:
            columns += [("valid_from", "From"), ("valid_to", "To")]
        if not rows and check and not is_glob(check):
            # Only now pay for importing every connector: a typo in a check id.
            choose("--check", check, sorted(known_checks()), what="a known check:")
        render(
            rows,
            columns,
            fmt,
            title="Findings",
            narrow=("check_id", "effective_status", "resource_id", "message"),
            wide=wide,
        )


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
    period: PeriodOpt = None,
    fmt: FormatOpt = OutputFormat.table,
) -> None:
    """Evidence snapshots in force now, --at an instant or during a --period, with payloads."""
    from collector.commands.auditor import instant_or_period
    from store.queries import bodies, evidence_at, evidence_in_period

    with command(config) as cmd:
        instant, span = instant_or_period(at, period)
        engine = cmd.engine(migrate=False)
        with engine.connect() as conn:
            if span:
                start, end = span
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
            from rich.console import Console

            console = Console()
            for r in rows:
                console.rule(f"{r['resource_type']}  {r['resource_id']}")
                console.print(
                    f"source={r['source']} scope={r['scope']} region={r['region']} "
                    f"collected_at={r['collected_at'].isoformat()} hash={r['content_hash']}"
                    + (
                        f" source_as_of={r['source_updated_at'].isoformat()}"
                        if r.get("source_updated_at")
                        else ""
                    )
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
            # The inventory's snapshot time the data is as of (bulk modes; empty: direct).
            ("source_updated_at", "source_updated_at"),
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
    wide: WideOpt = False,
) -> None:
    """Recent runs: status, why a run ended as it did, digest and signature; and runs
    waiting in the local journal for the database."""
    from collector.daemon.spool import pending, read
    from store.queries import list_runs

    with command(config) as cmd:
        settings = cmd.settings
        engine = cmd.engine(migrate=False)
        with engine.connect() as conn:
            rows = list_runs(conn, source=source, limit=limit)
        for r in rows:
            r["signed_by"] = r.get("key_id") or ("unsigned" if r["digest"] else "")
            r["reason"] = r["errors"][-1] if r["errors"] else ""
        spool_dir = settings.spool_dir
        for path in pending(spool_dir) if spool_dir else []:
            head = next(read(path), None) or {}
            if source and head.get("source") != source:
                continue
            rows.insert(
                0,
                {
                    "id": head.get("run_id", path.stem),
                    "source": head.get("source"),
                    "status": "spooled",
                    "started_at": head.get("started_at"),
                    "finished_at": None,
                    "errors": [],
                    "reason": f"in the journal {path}: written by the next command",
                    "digest": None,
                    "signed_by": "",
                },
            )
        render(
            rows,
            RUN_COLUMNS,
            fmt,
            title="Runs",
            narrow=("id", "source", "status", "started_at", "reason"),
            wide=wide,
        )


# -- checks / mappings / verify / db ---------------------------------------------------------


@app.command()
def checks(
    config: ConfigOpt = None,
    fmt: FormatOpt = OutputFormat.table,
    by_control: Annotated[
        bool,
        typer.Option(
            "--by-control",
            help="One row per Annex A control: its automated checks and sources, its "
            "expected evidence, and the coverage counts.",
        ),
    ] = False,
) -> None:
    """Every check with its metadata, parameters and the controls it evidences."""
    with command(config) as cmd:
        index = cmd.index()
        _warn_unclaimed_metadata()
        if by_control:
            from collector.commands.coverage import control_rows, render_by_control
            from collector.plugins import available_plugins

            sources = {
                spec.id: name
                for name, cls in available_plugins().items()
                for spec in cls.checks()
            }
            render_by_control(control_rows(index, sources), fmt)
            return
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


def _warn_unclaimed_metadata() -> None:
    """Name the check metadata no check claims (a check renamed or deleted in Python but
    not in its ``.checks.toml``): its text would otherwise silently never be shown."""
    from core.checks import unclaimed_metadata

    known_checks()  # every plugin's check modules imported, so every claim is made
    for orphan in unclaimed_metadata():
        error_line(f"{orphan} is the metadata of no registered check: rename the table "
                   "to the check's id, or delete it", label="warning")


@mappings_app.command("validate")
def mappings_validate(config: ConfigOpt = None) -> None:
    """Validate the catalog, built-in and configured mapping files; list every problem."""
    from mappings.loader import load_mappings, validate_mappings

    with command(config) as cmd:
        settings = cmd.settings
        problems = validate_mappings(settings.mapping_dirs, set(known_checks()))
        if problems:
            for p in problems:
                error_line(str(p))
            raise UsageError(f"{len(problems)} mapping problem(s)")
        index = load_mappings(settings.mapping_dirs, known_checks=set(known_checks()))
        typer.echo(
            f"mappings OK: {len(index.catalog)} controls, {len(index.links)} links, "
            f"{len(index.parts)} documented parts ({len(index.manual)} manual controls), "
            f"{len(index.files)} files, digest {index.digest[:16]}"
        )


@app.command()
def verify(
    config: ConfigOpt = None,
    trusted_keys: Annotated[
        Path | None,
        typer.Option(
            "--trusted-keys",
            help="File of trusted public keys (`annexa keys generate` prints the line): "
            "every run, retention entry and decision must be signed by one of them.",
        ),
    ] = None,
    allow_running: Annotated[
        bool,
        typer.Option(
            "--allow-running",
            help="Report runs still in progress (fresh heartbeat) instead of failing on "
            "their not-yet-sealed rows.",
        ),
    ] = False,
    tsa_roots: Annotated[
        Path | None,
        typer.Option(
            "--tsa-roots",
            help="PEM root certificate(s) of the time-stamping authority: every stored "
            "RFC 3161 token must verify (default: [signing] tsa_roots).",
        ),
    ] = None,
    fmt: FormatOpt = OutputFormat.table,
) -> None:
    """Recompute every run's digest chain, check signatures and retention; exit 5 on any
    problem. Reads only: works on a read-only copy of the database."""
    from store.integrity import verify as verify_store

    with command(config) as cmd:
        settings = cmd.settings
        keys = settings.trusted_keys(trusted_keys)
        roots = settings.tsa_roots(tsa_roots)
        engine = cmd.engine(migrate=False)
        result = verify_store(
            engine,
            trusted_keys=keys,
            retention_keep=settings.retention_keep,
            allow_running=settings.stale_after if allow_running else None,
            tsa_roots=roots,
        )
        rows = [{"run_id": p.run_id, "problem": p.reason} for p in result.problems]
        if fmt is not OutputFormat.table:
            render(rows, [("run_id", "run_id"), ("problem", "problem")], fmt)
        for w in result.warnings:
            error_line(str(w), label="warning")
        for run_id in result.in_progress:
            err.print(f"in progress: run {run_id} (its rows count once it is sealed)")
        if result.ok:
            if fmt is OutputFormat.table:
                signed = (
                    f"{result.signed} signed by {len(result.keys_used)} key(s)"
                    + (" trusted" if keys is not None else "")
                    + (f", {result.unsigned} unsigned" if result.unsigned else "")
                )
                stamped = (
                    f"; {result.timestamps_checked} time stamps" if roots is not None else ""
                )
                typer.echo(
                    f"verify OK: {result.runs_checked} runs in {result.sources} chains "
                    f"({signed}); {result.retention_checked} retention entries{stamped}"
                )
            return
        if fmt is OutputFormat.table:
            render(
                rows,
                [("run_id", "Run"), ("problem", "Problem")],
                fmt,
                title="Integrity problems",
                console=err,
            )
        err.print(
            f"[bold red]verify FAILED[/]: {len(result.problems)} problem(s); "
            f"first: {result.first_broken_run}"
        )
        raise typer.Exit(EXIT_VERIFY)


@db_app.command("upgrade")
def db_upgrade(config: ConfigOpt = None) -> None:
    """Create or migrate the schema to the current version."""
    from store.engine import redacted_url
    from store.migrate import head_revision

    with command(config) as cmd:
        settings = cmd.settings
        cmd.engine(migrate=True)
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
    from collector.decisions import DecisionFileError, file_decisions

    with command(config) as cmd:
        settings = cmd.settings
        index = cmd.index()
        settings.signer()  # an unusable key: exit 2 before anything is written
        try:
            decisions = file_decisions(settings, index, known_checks())
        except DecisionFileError as exc:
            raise UsageError(str(exc)) from None
        engine = cmd.engine(migrate=True)
        # Decisions are recorded when the daemon starts (and by every collect).
        _record_decisions(settings, engine, index, decisions)
        try:
            code = run_daemon(settings, index=index, engine=engine, port=port)
        except DaemonError as exc:
            raise CliExit(exc.code, str(exc)) from None
        raise typer.Exit(code)


def _load_command_modules() -> None:
    from collector.commands import load_all

    load_all()


_load_command_modules()


def _short(text: str | None, width: int) -> str:
    """First sentence of a help text, cut to ``width`` (as click shortens it)."""
    words = " ".join((text or "").split("\n\n")[0].split())
    end = words.find(". ")
    first = words if end < 0 else words[: end + 1]
    return first if len(first) <= width else first[: width - 3].rsplit(" ", 1)[0] + "..."


def top_level_help() -> str:
    """`annexa --help` without building every command's parameters (what typer does
    first, for any argument): the same usage, options and command list, from the
    registered commands' names and docstrings."""
    from typer.models import DefaultPlaceholder

    rows: list[tuple[str, str]] = []
    for info in app.registered_commands:
        if info.hidden or info.callback is None:
            continue
        name = info.name or info.callback.__name__.lower().replace("_", "-")
        rows.append((name, info.help or info.callback.__doc__ or ""))
    for group in app.registered_groups:
        if group.hidden is True:
            continue
        helptext = group.help
        if isinstance(helptext, DefaultPlaceholder) or not helptext:
            helptext = group.typer_instance.info.help if group.typer_instance else ""
        rows.append((str(group.name), str(helptext or "")))
    pad = max(len(n) for n, _ in rows)
    lines = [
        "Usage: annexa [OPTIONS] COMMAND [ARGS]...",
        "",
        f"  {app.info.help}",
        "",
        "Options:",
        "  --version   Print the version, git commit (when known) and schema revision;",
        "              exit.",
        "  --no-pager  Never page long tables on a terminal ($ANNEXA_PAGER, $PAGER or",
        "              less).",
        "  --help      Show this message and exit.",
        "",
        "Commands:",
    ]
    lines += [f"  {n:<{pad}}  {_short(h, 80 - pad - 4)}".rstrip() for n, h in rows]
    return "\n".join(lines) + "\n"


def main() -> None:
    if sys.argv[1:] == ["--help"] or sys.argv[1:] == ["-h"]:
        sys.stdout.write(top_level_help())
        sys.exit(EXIT_OK)
    try:
        app()
    except SystemExit:
        raise
    except Exception:  # noqa: BLE001 - last resort: say it is a bug, exit 1
        import structlog

        structlog.get_logger("annexa").error("internal error", exc_info=True)
        err.print("[bold red]internal error[/]: this is a bug in annexa; please report it")
        sys.exit(EXIT_INTERNAL)

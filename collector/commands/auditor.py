"""Auditor commands: SoA, audit package, retention, manual evidence, control history.

``soa``              Statement of Applicability (table / CSV / JSON)
``export``           audit package for a period (zip; see exports/package.py)
``verify-package``   offline verification of an audit package (exit 5 on any problem)
``retention``        remove evidence bodies older than --keep (hashes and rows stay)
``history``          one control's status changes over a period
``db grant-auditor`` PostgreSQL role that can read the documented views and nothing else
``evidence add``     record manual evidence for a control
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from collector.clikit import (
    EXIT_VERIFY,
    AtOpt,
    CliExit,
    ConfigOpt,
    FormatOpt,
    PeriodOpt,
    UsageError,
    WideOpt,
    _stamp,
    app,
    command,
    db_app,
    err,
    evidence_app,
    parse_instant,
)
from collector.output import OutputFormat, render

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from collector.config import Settings
    from mappings.loader import MappingIndex


_ROLE = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


# -- shared helpers (also used by collector.cli's controls / findings / evidence show) ----


def _bound(value: str, *, end: bool, opt: str) -> datetime:
    value = value.strip()
    try:
        if len(value) == 10:
            d = date.fromisoformat(value)
            return datetime.combine(d + timedelta(days=1) if end else d, time(0), tzinfo=UTC)
        t = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(f"{opt}: {value!r} is not an ISO 8601 date or date-time") from None
    return (t.replace(tzinfo=UTC) if t.tzinfo is None else t).astimezone(UTC)


def parse_period(spec: str, opt: str = "--period") -> tuple[datetime, datetime]:
    """``START..END`` → (start, end); END may be empty, and is at most now."""
    if ".." not in spec:
        raise UsageError(f"{opt}: expected START..END, e.g. 2026-01-01..2026-03-31")
    a, b = spec.split("..", 1)
    if not a.strip():
        raise UsageError(f"{opt}: the period needs a start")
    start = _bound(a, end=False, opt=opt)
    now = datetime.now(UTC)
    # Nothing is known about the future: a period ending later ends now.
    end = min(_bound(b, end=True, opt=opt), now) if b.strip() else now
    if end <= start:
        raise UsageError(f"{opt}: {spec!r} ends before it starts (or is in the future)")
    return start, end


def instant_or_period(
    at: str | None, period: str | None
) -> tuple[datetime | None, tuple[datetime, datetime] | None]:
    """The ``--at`` instant (None: now) and the ``--period`` bounds (None: not asked);
    the two options exclude each other."""
    if period and at:
        raise UsageError("--at and --period cannot be combined")
    return parse_instant(at), parse_period(period) if period else None


def _rel(settings: Settings, p: Path) -> Path:
    base = settings.path.parent if settings.path else Path.cwd()
    return p if p.is_absolute() else base / p


def recorded_decisions(
    settings: Settings, engine: Engine, index: MappingIndex | None, at: datetime | None
) -> tuple[list[Any], Any]:
    """Exceptions (every recorded version) and the SoA as recorded at ``at``.

    Answers use decisions as Annexa recorded them, never the files as they are now
    (see store/decisions.py); a file changed since it was recorded is pointed out.
    """
    from collector.decisions import decided, unrecorded

    for line in unrecorded(settings, engine):
        err.print(f"[yellow]note:[/] {line}", highlight=False)
    if index is None:
        from store.decisions import recorded_exceptions

        with engine.connect() as conn:
            return recorded_exceptions(conn), None
    return decided(engine, index, at)


def _agent_version() -> str:
    from collector.runner import AGENT_VERSION

    return AGENT_VERSION


# -- soa ------------------------------------------------------------------------------------


def soa_columns() -> list[tuple[str, str]]:
    """The SoA's columns as ``annexa soa`` prints them (also the console's download)."""
    from exports.soa import SOA_COLUMNS

    return [(c, c.replace("_", " ").capitalize()) for c in SOA_COLUMNS]


def soa_rows(
    engine: Engine, index: MappingIndex, instant: datetime | None, freshness: timedelta,
    rules: list[Any], scope: Any,
) -> list[dict[str, Any]]:
    """The SoA rows at ``instant`` (None: now) from the recorded decisions ``rules`` and
    ``scope``: shared by ``annexa soa`` and the console's SoA page, so they cannot differ."""
    from core.records import utcnow
    from exports.soa import soa_table
    from store.status import control_statuses

    statuses = [
        c.as_dict()
        for c in control_statuses(engine, index, instant, freshness, exceptions=rules)
    ]
    return soa_table(statuses, scope, as_of=instant or utcnow())


@app.command()
def soa(
    config: ConfigOpt = None,
    at: AtOpt = None,
    fmt: FormatOpt = OutputFormat.table,
    wide: WideOpt = False,
) -> None:
    """Statement of Applicability (ISO/IEC 27001 6.1.3 d): every control's applicability and
    justification, the owner's declared implementation beside the measured status, and
    the contradictions between them; --at shows the SoA recorded then."""
    with command(config, at=at) as cmd:
        settings = cmd.settings
        index = cmd.index(check_ids=False)
        instant = cmd.instant
        engine = cmd.engine(migrate=False)
        rules, scope = recorded_decisions(settings, engine, index, instant)
        rows = soa_rows(engine, index, instant, settings.freshness, rules, scope)
        meta = scope.meta()
        version = f" v{meta['version']}" if meta.get("version") else ""
        approval = (
            f", approved by {meta['approved_by']} on {meta['approved_on']}"
            if meta.get("approved_by")
            else ", not approved"
        )
        flagged = sum(1 for r in rows if r["contradiction"])
        render(
            rows,
            soa_columns(),
            fmt,
            title=f"Statement of Applicability{version}{approval}, at {cmd.stamp}",
            narrow=("control", "applicable", "declared", "measured", "contradiction"),
            wide=wide,
        )
        if flagged and fmt is OutputFormat.table:
            err.print(
                f"[yellow]{flagged} control(s) where the declaration and the measurement "
                "disagree (Contradiction column)[/]"
            )


# -- history ----------------------------------------------------------------------------------


@app.command()
def history(
    control: Annotated[str, typer.Argument(help="Annex A control id, e.g. A.8.5.")],
    period: PeriodOpt = None,
    config: ConfigOpt = None,
    fmt: FormatOpt = OutputFormat.table,
) -> None:
    """A control's status over a period: every change, when it failed and for how long."""
    from store.timelines import control_timelines

    with command(config) as cmd:
        settings = cmd.settings
        index = cmd.index()
        if control not in index.catalog:
            raise UsageError(f"unknown control {control!r} (expected like A.8.5)")
        if not period:
            raise UsageError("--period START..END is required")
        start, end = parse_period(period)
        engine = cmd.engine(migrate=False)
        rules, _ = recorded_decisions(settings, engine, None, None)
        tl = control_timelines(
            engine, index, start, end, settings.freshness, exceptions=rules, controls=[control]
        )[control]
        rows = [
            {
                "control": control,
                "from": a,
                "to": b,
                "status": s,
                "hours": round((b - a).total_seconds() / 3600, 2),
            }
            for a, b, s in tl.intervals()
        ]
        checks = set(index.checks_for(control))
        exceptions = [
            r.as_dict()
            for r in rules
            if r.check in checks
            and (r.effective_from is None or r.effective_from <= end)
            and r.effective_until > start
        ]
        if fmt is OutputFormat.json:
            render([tl.as_dict() | {"intervals": rows, "exceptions": exceptions}], [], fmt)
            return
        render(
            rows,
            [
                ("control", "Control"),
                ("from", "From"),
                ("to", "To"),
                ("status", "Status"),
                ("hours", "Hours"),
            ],
            fmt,
            title=f"{control} from {_stamp(start)} to {_stamp(end)}",
        )
        if exceptions and fmt is OutputFormat.table:
            for e in exceptions:
                e["note"] = (
                    f"BACKDATED: approved {e['starts'][:10]}, recorded {e['recorded_at'][:10]}; "
                    "applied only from its recording"
                    if e["backdated"]
                    else ""
                )
            render(
                exceptions,
                [
                    ("id", "Exception"),
                    ("resource", "Resource"),
                    ("recorded_at", "Recorded"),
                    ("expires", "Expires"),
                    ("note", "Note"),
                ],
                fmt,
                title="Exceptions recorded for its checks",
            )


# -- export / verify-package ----------------------------------------------------------------


@app.command()
def export(
    period: PeriodOpt = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Zip file to write.")] = Path(
        "audit.zip"
    ),
    pdf: Annotated[
        bool,
        typer.Option("--pdf", help="Also print the report to report.pdf (needs Chromium)."),
    ] = False,
    config: ConfigOpt = None,
    fmt: FormatOpt = OutputFormat.table,
) -> None:
    """Write the signed audit package for a period: populations (CSV, JSON), OSCAL, SoA,
    samples, the HTML report (and PDF), a signed manifest."""
    from collector.pdf import PdfError, html_to_pdf
    from exports.exporter import ExportError
    from exports.package import build_package

    with command(config) as cmd:
        settings = cmd.settings
        index = cmd.index()
        if not period:
            raise UsageError("--period START..END is required")
        start, end = parse_period(period)
        engine = cmd.engine(migrate=False)
        rules, scope = recorded_decisions(settings, engine, index, end)
        try:
            summary = build_package(
                engine,
                index,
                start=start,
                end=end,
                out=out,
                freshness=settings.freshness,
                exceptions=rules,
                scope=scope,
                agent_version=_agent_version(),
                signer=settings.signer(),
                pdf=html_to_pdf if pdf else None,
            )
        except PdfError as exc:
            raise UsageError(str(exc)) from None
        except ExportError as exc:
            raise CliExit(EXIT_VERIFY, str(exc)) from None
        render([summary.as_dict()], [(k, k) for k in summary.as_dict()], fmt, title="Audit package")


@app.command("verify-package")
def verify_package_cmd(
    package: Annotated[Path, typer.Argument(help="The audit package (zip).")],
    against_db: Annotated[
        bool,
        typer.Option(
            "--against-db", help="Also compare every run, row by row, with the database."
        ),
    ] = False,
    trusted_keys: Annotated[
        Path | None,
        typer.Option(
            "--trusted-keys",
            help="Public keys you trust (one `ed25519 …` line each): the manifest and every "
            "run must be signed by one of them.",
        ),
    ] = None,
    tsa_roots: Annotated[
        Path | None,
        typer.Option(
            "--tsa-roots",
            help="PEM root certificate(s) of the time-stamping authority: every RFC 3161 "
            "token in the package must verify.",
        ),
    ] = None,
    config: ConfigOpt = None,
    fmt: FormatOpt = OutputFormat.table,
) -> None:
    """Verify an audit package offline; exit 5 naming every file that does not verify."""
    from exports.verify import verify_package

    with command(config) as cmd:
        engine = None
        keys = roots = None
        if against_db or trusted_keys or tsa_roots or config is not None:
            settings = cmd.settings
            keys = settings.trusted_keys(trusted_keys)
            roots = settings.tsa_roots(tsa_roots)
            if against_db:
                engine = cmd.engine(migrate=False)
        res = verify_package(package, engine=engine, trusted_keys=keys, tsa_roots=roots)
        for w in res.warnings:
            err.print(f"[yellow]warning:[/] {w}", highlight=False)
        rows = [{"file": p.file, "problem": p.reason} for p in res.problems]
        if fmt is not OutputFormat.table:
            render(rows, [("file", "file"), ("problem", "problem")], fmt)
        elif res.ok:
            signed = f"signed by {res.signed_by}" if res.signed_by else "not signed"
            typer.echo(
                f"package OK: {res.files} files, {res.runs_recomputed} run digests recomputed "
                f"({res.runs_signed} signed), {res.evidence_bodies} evidence bodies, "
                f"{res.finding_rows} finding rows"
                + (f", {res.rows_compared} rows compared with the database" if engine else "")
                + f"; manifest digest {res.manifest_digest} ({signed}"
                + (", trusted key" if keys is not None and res.signed_by else "")
                + ")"
            )
        else:
            render(
                rows,
                [("file", "File"), ("problem", "Problem")],
                fmt,
                title="Package problems",
                console=err,
            )
        if not res.ok:
            err.print(
                f"[bold red]verify-package FAILED[/]: {res.problems[0].file}: "
                f"{res.problems[0].reason}",
                highlight=False,
            )
            raise typer.Exit(EXIT_VERIFY)


# -- retention ------------------------------------------------------------------------------


@app.command()
def retention(
    keep: Annotated[str, typer.Option("--keep", help="How long to keep bodies: 3y, 18m, 90d.")],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only count.")] = False,
    by: Annotated[str | None, typer.Option("--by", help="Who runs it (default: OS user).")] = None,
    config: ConfigOpt = None,
    fmt: FormatOpt = OutputFormat.table,
) -> None:
    """Remove evidence bodies older than --keep; hashes, rows and tombstones stay."""
    from store.manual import default_user
    from store.retention import apply_retention, parse_keep

    with command(config) as cmd:
        try:
            delta = parse_keep(keep)
        except ValueError as exc:
            raise UsageError(f"--keep: {exc}") from None
        settings = cmd.settings
        minimum = settings.retention_keep
        if minimum is not None and delta < minimum:
            raise UsageError(
                f"--keep {keep} is shorter than the configured minimum retention "
                f"([retention] keep = {settings.model.retention.keep!r})",
            )
        engine = cmd.engine(migrate=False, write=True)
        res = apply_retention(
            engine,
            delta,
            keep,
            removed_by=by or default_user(),
            dry_run=dry_run,
            signer=None if dry_run else settings.signer(),
        )
        render([res.as_dict()], [(k, k) for k in res.as_dict()], fmt, title="Retention")


# -- db grant-auditor -------------------------------------------------------------------------


def grant_auditor(engine: Engine, role: str, *, login: bool = True) -> list[str]:
    """Create/refresh ``role``: SELECT on the documented views and tables, nothing else."""
    from sqlalchemy import text

    from store.views import READABLE_TABLES, VIEWS

    if not _ROLE.match(role):
        raise UsageError(f"role {role!r}: use lower-case letters, digits and _")
    if engine.dialect.name != "postgresql":
        raise UsageError(
            "grant-auditor needs PostgreSQL: SQLite has no roles — give auditors a copy of "
            "the file, or open it read-only (sqlite3 'file:annexa.db?mode=ro')",
        )
    done = []
    with engine.begin() as conn:
        exists = conn.execute(text("SELECT 1 FROM pg_roles WHERE rolname = :r"), {"r": role})
        if exists.first() is None:
            conn.execute(text(f'CREATE ROLE "{role}" {"LOGIN" if login else "NOLOGIN"}'))
            done.append(f"created role {role}")
        conn.execute(
            text(
                f'ALTER ROLE "{role}" NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS'
            )
        )
        # A session default, not a guarantee (a role can SET it back): privileges are.
        conn.execute(text(f'ALTER ROLE "{role}" SET default_transaction_read_only = on'))
        db = conn.execute(text("SELECT current_database()")).scalar_one()
        conn.execute(text(f'GRANT CONNECT ON DATABASE "{db}" TO "{role}"'))
        conn.execute(text(f'REVOKE ALL ON ALL TABLES IN SCHEMA public FROM "{role}"'))
        conn.execute(text(f'REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM "{role}"'))
        conn.execute(text(f'REVOKE CREATE ON SCHEMA public FROM "{role}"'))
        conn.execute(text(f'GRANT USAGE ON SCHEMA public TO "{role}"'))
        # PostgreSQL < 15 lets PUBLIC create in the public schema; the role would inherit it.
        if int(conn.execute(text("SHOW server_version_num")).scalar_one()) < 150000:
            conn.execute(text("REVOKE CREATE ON SCHEMA public FROM PUBLIC"))
            done.append("revoked CREATE on schema public from PUBLIC (PostgreSQL < 15)")
        for name in (*VIEWS, *READABLE_TABLES):
            conn.execute(text(f'GRANT SELECT ON "{name}" TO "{role}"'))
        done.append(f"granted SELECT on {len(VIEWS)} views and {len(READABLE_TABLES)} tables")
    return done


@db_app.command("grant-auditor")
def db_grant_auditor(
    role: Annotated[str, typer.Argument(help="PostgreSQL role to create or refresh.")],
    login: Annotated[bool, typer.Option("--login/--no-login", help="May the role log in?")] = True,
    config: ConfigOpt = None,
) -> None:
    """Create a PostgreSQL role that can SELECT the auditor views and write nothing."""
    with command(config) as cmd:
        engine = cmd.engine(migrate=False, write=True)
        for line in grant_auditor(engine, role, login=login):
            typer.echo(line)
        typer.echo(
            f"role {role} can read: see docs/schema.md (set its password with "
            f"ALTER ROLE {role} PASSWORD ...)"
        )


# -- evidence add -----------------------------------------------------------------------------


@evidence_app.command("add")
def evidence_add(
    control: Annotated[
        str,
        typer.Option("--control", help="Annex A control (A.5.1) or ISMS clause (9.2)."),
    ],
    file: Annotated[Path, typer.Option("--file", help="The document or record.")],
    valid_until: Annotated[
        str, typer.Option("--valid-until", help="Last day it counts (date) or an instant.")
    ],
    note: Annotated[str, typer.Option("--note", help="What it is, for the auditor.")] = "",
    by: Annotated[str | None, typer.Option("--by", help="Who adds it (default: OS user).")] = None,
    valid_from: Annotated[
        str | None, typer.Option("--valid-from", help="When it starts to count (default: now).")
    ] = None,
    config: ConfigOpt = None,
    fmt: FormatOpt = OutputFormat.table,
) -> None:
    """Record a document as evidence for a control, content-addressed, until it expires."""
    from mappings.clauses import builtin_clauses
    from store.manual import ManualEvidenceError, add_manual_evidence

    with command(config) as cmd:
        settings = cmd.settings
        index = cmd.index()
        until = _bound(valid_until, end=True, opt="--valid-until")
        since = _bound(valid_from, end=False, opt="--valid-from") if valid_from else None
        engine = cmd.engine(migrate=True)
        try:
            added = add_manual_evidence(
                engine,
                control=control,
                file=file,
                valid_until=until,
                note=note,
                added_by=by,
                valid_from=since,
                mapping_digest=index.digest,
                config_digest=settings.digest(),
                agent_version=_agent_version(),
                catalog=set(index.catalog) | set(builtin_clauses()),
                signer=settings.signer(),
            )
        except ManualEvidenceError as exc:
            raise UsageError(str(exc)) from None
        d = added.as_dict()
        render([d], [(k, k) for k in d], fmt, title="Manual evidence recorded")

"""``annexa decisions sync`` and ``annexa decisions list``: decisions as evidence.

Exceptions and the Statement of Applicability are recorded in the store when Annexa
first sees them (see store/decisions.py); every answer uses them as recorded then.
"""

from __future__ import annotations

from typing import Annotated

import typer

from collector.clikit import (
    AtOpt,
    ConfigOpt,
    FormatOpt,
    UsageError,
    app,
    command,
    err,
    known_checks,
)
from collector.output import OutputFormat, render

decisions_app = typer.Typer(
    help="Exceptions and SoA applicability recorded as evidence: sync the files, list them."
)
app.add_typer(decisions_app, name="decisions")


@decisions_app.command("sync")
def decisions_sync(config: ConfigOpt = None) -> None:
    """Record what the exceptions and scope files state now (nothing if unchanged)."""
    from collector.decisions import DecisionFileError, file_decisions, sync

    with command(config) as cmd:
        settings = cmd.settings
        index = cmd.index()
        try:
            decisions = file_decisions(settings, index, known_checks())
        except DecisionFileError as exc:
            raise UsageError(str(exc)) from None
        engine = cmd.engine(migrate=True)
        summary = sync(settings, engine, index, decisions)
        if summary is None:
            typer.echo("decisions unchanged: nothing recorded")
            return
        typer.echo(
            f"decisions recorded in run {summary.run_id}: "
            f"{summary.counts['evidence_written']} new or changed, "
            f"{summary.counts['evidence_closed']} revoked "
            f"({'signed by ' + summary.key_id if summary.key_id else 'unsigned'})"
        )


@decisions_app.command("list")
def decisions_list(
    config: ConfigOpt = None,
    at: AtOpt = None,
    kind: Annotated[
        str, typer.Option("--kind", help="exceptions (default) or soa.")
    ] = "exceptions",
    fmt: FormatOpt = OutputFormat.table,
) -> None:
    """Decisions in force at an instant, with when each was recorded (backdated marked)."""
    from store.decisions import SOA_TYPE, history, recorded_exceptions

    if kind not in ("exceptions", "soa"):
        raise typer.BadParameter("use exceptions or soa", param_hint="--kind")
    with command(config, at=at) as cmd:
        instant = cmd.instant
        engine = cmd.engine(migrate=False)
        from core.records import utcnow

        when = instant or utcnow()
        with engine.connect() as conn:
            if kind == "exceptions":
                rows = [
                    r.as_dict()
                    for r in recorded_exceptions(conn)
                    if r.recorded_at is not None
                    and r.recorded_at <= when
                    and (r.revoked_at is None or when < r.revoked_at)
                ]
                cols = [
                    ("id", "Id"),
                    ("check", "Check"),
                    ("resource", "Resource"),
                    ("starts", "Approved on"),
                    ("recorded_at", "Recorded"),
                    ("backdated", "Backdated"),
                    ("expires", "Expires"),
                ]
            else:
                rows = [
                    {
                        "control": v.resource_id,
                        "applicable": v.payload["applicable"],
                        "justification": v.payload["justification"],
                        "recorded_at": v.recorded_at,
                    }
                    for v in history(conn, SOA_TYPE)
                    if v.recorded_at <= when and (v.revoked_at is None or when < v.revoked_at)
                ]
                cols = [
                    ("control", "Control"),
                    ("applicable", "Applicable"),
                    ("justification", "Justification"),
                    ("recorded_at", "Recorded"),
                ]
        if not rows and fmt is OutputFormat.table:
            err.print(f"no {kind} decisions recorded at {cmd.stamp}")
        render(rows, cols, fmt, title=f"Recorded {kind} at {cmd.stamp}")

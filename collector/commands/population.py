"""``annexa population``: a process population for auditors, from the evidence store.

    annexa population --process change --period 2026-01-01..2026-06-30 --format csv

prints every item of the population with the attributes an auditor samples on, as the
evidence stood at the end of the period (or ``--at``) — never from the live source, so
the answer for a past period does not change when tickets are edited later.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

import typer

from collector.clikit import AtOpt, ConfigOpt, FormatOpt, UsageError, app, command, err
from collector.output import OutputFormat, render

#: Every column, in the order CSV and JSON consumers see them.
COLUMNS = [
    ("source", "source"),
    ("key", "key"),
    ("title", "title"),
    ("type", "type"),
    ("status", "status"),
    ("severity", "severity"),
    ("created", "created"),
    ("requested_by", "requested_by"),
    ("approved_by", "approved_by"),
    ("approved_at", "approved_at"),
    ("implemented_by", "implemented_by"),
    ("implemented_at", "implemented_at"),
    ("reviewed_at", "reviewed_at"),
    ("acknowledged_at", "acknowledged_at"),
    ("resolved_at", "resolved_at"),
    ("due_at", "due_at"),
    ("sla_met", "sla_met"),
    ("checks_failed", "checks_failed"),
    ("checks_error", "checks_error"),
    ("checks_passed", "checks_passed"),
    ("url", "url"),
    ("evidence_hash", "evidence_hash"),
    ("evidence_id", "evidence_id"),
    ("run_id", "run_id"),
    ("collected_at", "collected_at"),
    ("as_of", "as_of"),
]
#: What fits on a terminal, per kind of process.
_CHANGE_TABLE = [
    ("key", "Key"),
    ("title", "Title"),
    ("created", "Created"),
    ("requested_by", "Requested by"),
    ("approved_by", "Approved by"),
    ("approved_at", "Approved"),
    ("implemented_by", "Implemented by"),
    ("implemented_at", "Implemented"),
    ("checks_failed", "Failed checks"),
]
_SLA_TABLE = [
    ("key", "Key"),
    ("title", "Title"),
    ("severity", "Severity"),
    ("created", "Created"),
    ("acknowledged_at", "Acknowledged"),
    ("resolved_at", "Resolved"),
    ("due_at", "Due"),
    ("sla_met", "SLA met"),
    ("checks_failed", "Failed checks"),
]
TABLE_COLUMNS = {
    "change": _CHANGE_TABLE,
    "emergency_change": [
        *_CHANGE_TABLE[:-1],
        ("reviewed_at", "Reviewed"),
        ("due_at", "Review due"),
        ("checks_failed", "Failed checks"),
    ],
}


def _short(row: dict[str, Any]) -> dict[str, Any]:
    """Timestamps to the minute for a terminal table (CSV/JSON keep the full value)."""
    out = dict(row)
    for key, value in row.items():
        if isinstance(value, str) and len(value) == 20 and value[10] == "T" and value[-1] == "Z":
            out[key] = value[:16].replace("T", " ")
    return out


@app.command()
def population(
    process: Annotated[
        str,
        typer.Option(
            "--process",
            help="change, emergency_change, incident, vulnerability, access_review or leaver.",
        ),
    ],
    period: Annotated[
        str,
        typer.Option(
            "--period", help="START..END (ISO dates, inclusive), 2026-Q1, 2026-H1, 2026-03, 2026."
        ),
    ],
    source: Annotated[str | None, typer.Option(help="Only this connector instance.")] = None,
    by: Annotated[
        str | None,
        typer.Option(
            help="Date placing an item in the period: created, approved, implemented or "
            "resolved (default: implemented for changes, resolved for access reviews, "
            "created otherwise)."
        ),
    ] = None,
    at: AtOpt = None,
    config: ConfigOpt = None,
    fmt: FormatOpt = OutputFormat.table,
) -> None:
    """A process population as recorded at the end of --period (or --at), for sampling."""
    from store.populations import BY_CHOICES, KINDS, parse_period
    from store.populations import population as read_population

    with command(config, at=at) as cmd:
        if process not in KINDS:
            raise UsageError(f"--process must be one of {', '.join(KINDS)}")
        if by is not None and by not in BY_CHOICES:
            raise UsageError(f"--by must be one of {', '.join(BY_CHOICES)}")
        try:
            span = parse_period(period)
        except ValueError as exc:
            raise UsageError(f"--period: {exc}") from None
        instant = cmd.instant
        if at is not None and instant is None:  # --at now: the latest evidence
            instant = datetime.now(UTC)
        engine = cmd.engine(migrate=False)
        with engine.connect() as conn:
            result = read_population(conn, process, span, at=instant, source=source, by=by)
        for warning in result.warnings:
            err.print(f"[yellow]warning:[/] {warning}", highlight=False)
        title = (
            f"{process} population {span.start}..{span.end} (by {result.by} date), "
            f"as recorded at {result.instant.isoformat(timespec='seconds')}: "
            f"{len(result.rows)} item(s)"
        )
        if fmt is OutputFormat.table:
            columns = TABLE_COLUMNS.get(process, _SLA_TABLE)
            render([_short(r) for r in result.rows], columns, fmt, title=title)
        else:
            err.print(title, highlight=False, markup=False)
            render(result.rows, COLUMNS, fmt)

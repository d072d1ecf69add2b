"""``annexa risks`` and ``annexa isms``: the risk register and the ISMS clauses 4-10.

Both answer now or ``--at`` an instant, from what is recorded: risks and their
acceptances as recorded decisions or collected tickets (store/risks.py), clause
evidence as manual records, policy documents and process findings (store/isms.py).
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer

from collector.clikit import AtOpt, ConfigOpt, FormatOpt, app, command, err
from collector.output import OutputFormat, render

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from collector.config import Settings
    from mappings.loader import MappingIndex


FLAG_LABELS = {
    "treatment_not_effective": "not effective",
    "residual_above_appetite": "above appetite",
    "review_overdue": "review overdue",
    "no_review_date": "no review date",
    "unreadable": "unreadable",
}


def register(
    settings: Settings, engine: Engine, index: MappingIndex, instant: datetime | None
) -> tuple[list[Any], Any, bool, list[Any]]:
    """The register at ``instant`` (rows, policy, policy recorded?) and the exceptions."""
    from collector.commands.auditor import recorded_decisions
    from collector.decisions import risk_policy
    from core.records import utcnow
    from store.risks import register_at

    rules, _ = recorded_decisions(settings, engine, index, instant)
    rows, policy, recorded = register_at(
        engine, index, instant or utcnow(), fallback=risk_policy(settings),
        freshness=settings.freshness, exceptions=rules,
    )
    return rows, policy, recorded, rules


def risk_rows(rows: list[Any], *, flagged: bool = False) -> list[dict[str, Any]]:
    """The register's rows as ``annexa risks`` prints them (also the console's risks page
    and download): score, residual, treating controls and flags as text."""
    out = []
    for r in rows:
        if flagged and not r.flagged:
            continue
        d = r.as_dict()
        d["score"] = (
            f"{r.likelihood}x{r.impact}={r.inherent_score} -> {r.effective_residual}"
            if r.likelihood else ""
        )
        d["residual"] = (
            f"{r.effective_residual} (target {r.target_residual})"
            if r.effective_residual is not None else ""
        )
        d["treating"] = [f"{c} {s}" for c, s in r.controls.items()] + [
            f"{a} (additional)" for a in r.additional_controls
        ]
        d["flag_text"] = [FLAG_LABELS.get(f, f) for f in r.flags] + (
            [f"accepted by {r.accepted_by}"] if r.accepted_flags else []
        )
        d["acceptance"] = (
            f"{r.accepted_by}, {r.accepted_on:%Y-%m-%d}" if r.accepted_on else ""
        )
        out.append(d)
    return out


def risk_columns(*, full: bool) -> list[tuple[str, str]]:
    """``annexa risks`` columns: the terminal's, or with ``full`` those of CSV/JSON."""
    columns = [
        ("id", "Risk"),
        ("owner", "Owner"),
        ("score", "Score -> residual"),
        ("treating", "Treating controls"),
        ("flag_text", "Flags"),
    ]
    if full:
        columns[1:1] = [("title", "Title")]
        columns[3:3] = [("treatment", "Treatment"), ("residual", "Residual")]
        columns += [("acceptance", "Accepted"), ("review_date", "Review")]
    return columns


@app.command()
def risks(
    config: ConfigOpt = None,
    at: AtOpt = None,
    flagged: Annotated[
        bool, typer.Option("--flagged", help="Only risks with a flag raised.")
    ] = False,
    fmt: FormatOpt = OutputFormat.table,
) -> None:
    """The risk register: each risk, the live status of its treating controls, and the
    flags — treatment not effective, residual above appetite without recorded
    acceptance, review overdue."""
    with command(config, at=at) as cmd:
        index = cmd.index(check_ids=False)
        rows, policy, recorded, _ = register(cmd.settings, cmd.engine(), index, cmd.instant)
        if not recorded:
            err.print(
                "[yellow]note:[/] no risk appetite recorded then: judged against the "
                "configured [audit.risk]",
                highlight=False,
            )
        out = risk_rows(rows, flagged=flagged)
        if not out and fmt is OutputFormat.table:
            err.print(f"no {'flagged ' if flagged else ''}risks recorded at {cmd.stamp}")
        columns = risk_columns(full=fmt is not OutputFormat.table)
        render(
            out,
            columns,
            fmt,
            title=f"Risk register at {cmd.stamp} (appetite {policy.threshold})",
        )


@app.command()
def isms(
    config: ConfigOpt = None,
    at: AtOpt = None,
    fmt: FormatOpt = OutputFormat.table,
) -> None:
    """Readiness of every ISO/IEC 27001:2022 clause 4-10: documents, process checks and
    the risk register, with the same statuses as the controls."""
    from core.records import utcnow
    from store.isms import clause_statuses

    with command(config, at=at) as cmd:
        index = cmd.index(check_ids=False)
        engine = cmd.engine()
        rows, _, _, rules = register(cmd.settings, engine, index, cmd.instant)
        out = [
            c.as_dict()
            for c in clause_statuses(
                engine, cmd.instant or utcnow(), register=rows,
                freshness=cmd.settings.freshness, exceptions=rules,
            )
        ]
        for c in out:
            judged = [f"{k} {v}" for k, v in c["counts"].items()]
            if c["register"] is not None:
                judged.append(f"risk register {c['register']}")
            c["judged"] = ", ".join(judged)
        columns = [
            ("clause", "Clause"),
            ("title", "Title"),
            ("status", "Status"),
            ("document", "Document"),
            ("judged", "Judged by"),
        ]
        if fmt is not OutputFormat.table:
            columns += [("explanation", "Why"), ("expected_evidence", "Expected evidence")]
        render(out, columns, fmt, title=f"ISMS clauses 4-10 at {cmd.stamp}")
        if fmt is OutputFormat.table and any(c["document"] != "valid" for c in out):
            err.print(
                "record a clause's document with `annexa evidence add --control CLAUSE "
                "--file …`; what each expects: `annexa isms -f json`",
                highlight=False, markup=False,
            )


def clause_status_map(
    settings: Settings,
    engine: Engine,
    index: MappingIndex,
    instant: datetime | None,
    control_status: dict[str, str],
    rules: list[Any],
) -> dict[str, str]:
    """Clause id → status at ``instant``, for crosswalks that map to clauses (``annexa
    controls --framework nist-csf-2.0``); ``control_status`` are the Annex A statuses
    already computed for the same instant."""
    from collector.decisions import risk_policy
    from core.records import utcnow
    from store.isms import clause_statuses
    from store.risks import read_history, register_rows
    from store.status import STATUS_RANK

    at = instant or utcnow()
    with engine.connect() as conn:
        history = read_history(conn)
    rows, _, _ = register_rows(history, at=at, statuses=control_status,
                               fallback=risk_policy(settings), catalog=index.catalog,
                               rank=STATUS_RANK)
    return {
        c.id: c.status
        for c in clause_statuses(engine, at, register=rows, freshness=settings.freshness,
                                 exceptions=rules)
    }

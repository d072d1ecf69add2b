"""``annexa sample`` (draw and record a reproducible sample) and ``annexa samples`` (list).

See store/samples.py for the method: anyone can recompute a draw from the population
file and the seed with ``sha256sum``.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Annotated, Any

import typer

from collector.clikit import AtOpt, ConfigOpt, FormatOpt, UsageError, app, command, err
from collector.output import OutputFormat, render
from core.csvsafe import neutralise

SAMPLE_COLUMNS = [("item_id", "Item"), ("status", "Status"), ("title", "Title")]


def _spec(population: str, period: str, **filters: Any) -> dict[str, Any]:
    kind, _, process = population.partition(":")
    if kind == "process" and not process:
        raise UsageError("--population process:<kind>, e.g. process:change")
    if kind not in ("process", "findings", "evidence"):
        raise UsageError(
            f"--population {population!r}: use process:<kind>, findings or evidence",
        )
    spec: dict[str, Any] = {"kind": kind, "period": period}
    if process:
        spec["process"] = process
    spec.update({k: v for k, v in filters.items() if v is not None})
    return spec


def write_population(path: Path, rows: list[dict[str, Any]], columns: list[str]) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["item_id", *columns])
        for r in rows:
            w.writerow([neutralise(r["item_id"]), *(neutralise(_flat(r.get(c))) for c in columns)])


def _flat(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return "; ".join(map(str, value))
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True)
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return "" if value is None else value


@app.command()
def sample(
    population: Annotated[
        str,
        typer.Option(
            "--population",
            help="process:<kind> (change, incident, leaver…), findings or evidence.",
        ),
    ],
    period: Annotated[
        str, typer.Option(help="START..END (dates, inclusive), 2026-Q1, 2026-H1, 2026-03, 2026.")
    ],
    size: Annotated[
        str, typer.Option(help="How many items, or auto (by --frequency; see README).")
    ] = "auto",
    frequency: Annotated[
        str | None,
        typer.Option(help="How often the control operates, for --size auto: annual, "
                     "quarterly, monthly, weekly, daily or recurring."),
    ] = None,
    seed: Annotated[
        str | None, typer.Option(help="The seed (an auditor may bring one); random if not given.")
    ] = None,
    source: Annotated[str | None, typer.Option(help="Only this connector instance.")] = None,
    check: Annotated[str | None, typer.Option(help="findings: only this check.")] = None,
    control: Annotated[str | None, typer.Option(help="findings: only this control.")] = None,
    status: Annotated[str | None, typer.Option(help="findings: only this status.")] = None,
    resource_type: Annotated[
        str | None, typer.Option("--resource-type", help="evidence: only this type.")
    ] = None,
    by: Annotated[str | None, typer.Option(help="process: the date placing an item.")] = None,
    at: AtOpt = None,
    drawn_by: Annotated[
        str | None, typer.Option("--drawn-by", help="Who draws it (default: the OS user).")
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Directory for population.csv, sample.csv, sample.json."),
    ] = None,
    config: ConfigOpt = None,
    fmt: FormatOpt = OutputFormat.table,
) -> None:
    """Draw a reproducible random sample of a population, record it, print it."""
    from collector.runner import AGENT_VERSION
    from store.manual import default_user
    from store.samples import (
        AUTO_SIZES,
        SampleError,
        auto_size,
        make_sample,
        population_rows,
        record_sample,
    )

    with command(config, at=at) as cmd:
        spec = _spec(population, period, source=source, check=check, control=control,
                     status=status, resource_type=resource_type, by=by)
        instant = cmd.instant
        settings = cmd.settings
        index = cmd.index(check_ids=False)
        engine = cmd.engine(migrate=True)
        if spec["kind"] == "process":
            from store.populations import parse_period

            try:
                end = parse_period(period).end_instant
            except ValueError as exc:
                raise UsageError(f"--period: {exc}") from None
            from core.records import utcnow

            spec["as_of"] = (instant or min(end, utcnow())).isoformat()
        try:
            with engine.connect() as conn:
                rows = population_rows(conn, spec)
            ids = [r["item_id"] for r in rows]
            if size == "auto":
                if frequency is None:
                    raise SampleError(
                        f"--size auto needs --frequency ({', '.join(AUTO_SIZES)})"
                    )
                n = auto_size(frequency, len(ids))
            else:
                try:
                    n = int(size)
                except ValueError:
                    raise SampleError(f"--size {size!r}: a number or auto") from None
                if n > len(ids):
                    raise SampleError(f"--size {n} is larger than the population ({len(ids)})")
            drawn = make_sample(spec, ids, seed=seed, size=n, drawn_by=drawn_by or default_user())
        except (SampleError, ValueError) as exc:
            raise UsageError(str(exc)) from None
        summary = record_sample(
            engine, drawn, signer=settings.signer(), config_digest=settings.digest(),
            mapping_digest=index.digest, agent_version=AGENT_VERSION,
        )
        picked = {r["item_id"]: r for r in rows}
        sampled = [picked[i] for i in drawn.items]
        if out is not None:
            out.mkdir(parents=True, exist_ok=True)
            columns = sorted({k for r in rows for k in r if k != "item_id"})
            write_population(out / "population.csv", rows, columns)
            write_population(out / "sample.csv", sampled, columns)
            (out / "sample.json").write_text(
                json.dumps({"id": drawn.id, "run_id": summary.run_id, **drawn.payload()},
                           indent=2, sort_keys=True, default=str) + "\n"
            )
        err.print(
            f"sample {drawn.id}: {len(drawn.items)} of {drawn.population_size} item(s), "
            f"seed {drawn.seed}, population digest {drawn.population_digest[:16]}…, "
            f"recorded in run {summary.run_id}",
            highlight=False,
            markup=False,
        )
        render(
            [{"item_id": i, "status": _flat(picked[i].get("status")),
              "title": _flat(picked[i].get("title") or picked[i].get("check_id"))}
             for i in drawn.items]
            if fmt is OutputFormat.table else sampled,
            SAMPLE_COLUMNS if fmt is OutputFormat.table
            else [(k, k) for k in sorted({k for r in sampled for k in r})],
            fmt,
            title=f"Sample {drawn.id} of {population} {period}",
        )


SAMPLES_COLUMNS = [("id", "Sample"), ("drawn_at", "Drawn"), ("population", "Population"),
                   ("size", "Size"), ("population_size", "Of"), ("seed", "Seed")]


def sample_rows(conn: Any, instant: Any) -> list[dict[str, Any]]:
    """The samples recorded by ``instant`` (None: now) as ``annexa samples`` lists them
    (also the console's samples page and download)."""
    from store.samples import recorded_samples

    return [
        {
            "id": s.id,
            "drawn_at": s.drawn_at,
            "population": json.dumps(s.population, sort_keys=True),
            "size": s.size,
            "population_size": s.population_size,
            "seed": s.seed,
            "population_digest": s.population_digest,
            "items": s.items,
            "drawn_by": s.drawn_by,
            "run_id": s.run_id,
        }
        for s in recorded_samples(conn, instant)
    ]


@app.command()
def samples(config: ConfigOpt = None, at: AtOpt = None,
            fmt: FormatOpt = OutputFormat.table) -> None:
    """Samples recorded so far (or up to --at): what was sampled, seed, size, digest."""
    with command(config, at=at) as cmd:
        instant = cmd.instant
        engine = cmd.engine(migrate=False)
        with engine.connect() as conn:
            rows = sample_rows(conn, instant)
        render(
            rows,
            SAMPLES_COLUMNS,
            fmt,
            title=f"Recorded samples at {cmd.stamp}",
        )

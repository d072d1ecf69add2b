"""``annexa correlate``: the cross-source identity checks, on demand.

``annexa collect`` runs the correlation after the identity connectors (when two or more
are configured); this command runs it alone, on what is already stored — after a
change of the identity map, or from a scheduler that collects sources separately.
"""

from __future__ import annotations

import typer

from collector.clikit import (
    EXIT_FAILED,
    EXIT_PARTIAL,
    ConfigOpt,
    FormatOpt,
    UsageError,
    app,
    command,
)
from collector.output import OutputFormat, render


@app.command()
def correlate(config: ConfigOpt = None, fmt: FormatOpt = OutputFormat.table) -> None:
    """Correlate people across the stored identity sources (okta, entra, workspace, github)."""
    from analyzers.identity import IdentityAnalyzer, chosen_sources
    from collector.analysis import analyzer_instance, run_analyzer, source_instances

    with command(config) as cmd:
        settings = cmd.settings
        index = cmd.index()
        instance = analyzer_instance(settings, IdentityAnalyzer.type)
        if instance is None:
            raise UsageError("the identity connector is disabled in the config")
        sources, _ = chosen_sources(instance.options, source_instances(settings))
        if len(sources) < 2:
            raise UsageError(
                "identity correlation needs at least two enabled identity connectors "
                f"(okta, entra, workspace, github, hr, bamboohr…); configured: "
                f"{', '.join(sorted(sources)) or 'none'}",
            )
        engine = cmd.engine(migrate=True)
        summary = run_analyzer(IdentityAnalyzer.type, settings, engine, index, force=True)
        assert summary is not None  # two sources and forced: it always runs
        render(
            [
                {
                    "connector": summary.source,
                    "status": summary.status,
                    "people": summary.counts["evidence_seen"],
                    "findings": summary.counts["findings_seen"],
                    "failing": summary.counts["findings_by_status"].get("fail", 0),
                    "errors": "; ".join(summary.errors),
                    "run_id": summary.run_id,
                }
            ],
            [
                ("connector", "Connector"),
                ("status", "Status"),
                ("people", "People"),
                ("findings", "Findings"),
                ("failing", "Failing"),
                ("errors", "Errors"),
                ("run_id", "Run"),
            ],
            fmt,
            title="Identity correlation",
        )
        if summary.status in ("failed", "aborted"):
            raise typer.Exit(EXIT_FAILED)
        if summary.status == "partial":
            raise typer.Exit(EXIT_PARTIAL)

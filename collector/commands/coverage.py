"""``annexa checks --by-control``: how each Annex A control is evidenced.

    annexa checks --by-control                 # one line a control, 80 columns
    annexa checks --by-control --format json   # every control whole, with the counts

A control has two parts (mappings/controls.toml): its automated part, the checks linked
to it, and its documented part, the expected evidence an auditor asks to see. This view
answers "which controls can Annexa observe at all, from which sources, and what must be
shown for the rest" before anything is collected — it reads only the installed checks
and the mappings, never the evidence store.

Counts are of what is true in the loaded mapping: a control counts as automated only
when a check that is installed links to it, and as documented only when its documented
part carries expected-evidence text.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from typing import Any

from rich.console import Console
from rich.table import Table

from collector.output import OutputFormat, render
from mappings.loader import MappingIndex, control_sort_key

#: The table is read in terminals and pasted into tickets: it never exceeds this width.
TABLE_WIDTH = 80


def control_rows(index: MappingIndex, sources: Mapping[str, str]) -> list[dict[str, Any]]:
    """One row a catalog control, in natural order.

    ``sources`` maps each installed check id to the connector type that provides it;
    links to checks that are not installed are not counted as automation.
    """
    rows = []
    for cid in sorted(index.catalog, key=control_sort_key):
        control = index.catalog[cid]
        part = index.parts.get(cid)
        checks = [c for c in index.checks_for(cid) if c in sources]
        expected = part.expected_evidence.strip() if part is not None else ""
        rows.append(
            {
                "control": cid,
                "title": control.title,
                "theme": control.theme,
                "automated_checks": checks,
                "automated_count": len(checks),
                "sources": sorted({sources[c] for c in checks}),
                "expected_evidence": expected or None,
                "review_interval_days": part.review_interval_days if part else None,
                "automated_sufficient": bool(part and part.automated_sufficient),
                "automated_rationale": part.rationale if part else None,
            }
        )
    return rows


def counts(rows: list[dict[str, Any]]) -> dict[str, int]:
    """The coverage figures: controls in the catalog, automated, documented, manual."""
    automated = sum(1 for r in rows if r["automated_count"])
    return {
        "controls": len(rows),
        "with_automated_checks": automated,
        "with_expected_evidence": sum(1 for r in rows if r["expected_evidence"]),
        "manual_only": len(rows) - automated,
        "checks_linked": len({c for r in rows for c in r["automated_checks"]}),
    }


def summary_line(figures: Mapping[str, int]) -> str:
    return (
        f"{figures['with_automated_checks']} of {figures['controls']} controls have an "
        f"automated check; {figures['with_expected_evidence']} of {figures['controls']} "
        "have expected evidence."
    )


def _sources_cell(sources: list[str]) -> str:
    text = ",".join(sources) or "-"
    return text if len(text) <= 18 else text[:17] + "…"


def render_by_control(rows: list[dict[str, Any]], fmt: OutputFormat) -> None:
    """Print the per-control view: JSON whole, CSV flat, a table of at most 80 columns."""
    figures = counts(rows)
    if fmt is OutputFormat.json:
        sys.stdout.write(
            json.dumps({"counts": figures, "controls": rows}, indent=2, sort_keys=True) + "\n"
        )
        return
    if fmt is OutputFormat.csv:
        render(
            rows,
            [(k, k) for k in ("control", "title", "automated_count", "automated_checks",
                              "sources", "expected_evidence", "review_interval_days",
                              "automated_sufficient")],
            fmt,
        )
        return
    table = Table(title="Annex A controls: automated and documented parts",
                  header_style="bold", width=TABLE_WIDTH)
    table.add_column("Control", no_wrap=True)
    table.add_column("Title", overflow="ellipsis", no_wrap=True, ratio=1)
    table.add_column("Checks", justify="right", no_wrap=True)
    table.add_column("Sources", no_wrap=True, max_width=18)
    table.add_column("Documented", no_wrap=True)
    for r in rows:
        if r["automated_sufficient"]:
            evidence = "not needed"
        elif r["expected_evidence"]:
            days = r["review_interval_days"]
            evidence = f"yes, {days} d" if days else "yes"
        else:
            evidence = "MISSING"
        table.add_row(r["control"], r["title"].replace("[", r"\["), str(r["automated_count"]),
                      _sources_cell(r["sources"]), evidence)
    console = Console(width=TABLE_WIDTH, soft_wrap=False)
    console.print(table)
    console.print(summary_line(figures), highlight=False)

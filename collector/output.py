"""Rendering of read commands: rich tables for people, JSON and CSV for scripts."""

from __future__ import annotations

import csv
import io
import json
import os
import sys
from collections.abc import Sequence
from datetime import datetime
from enum import StrEnum
from typing import Any

from rich.console import Console
from rich.table import Table

from core.csvsafe import neutralise

STATUS_STYLE = {
    "pass": "green",
    "fail": "bold red",
    "error": "magenta",
    "stale": "yellow",
    "no_evidence": "yellow",
    "manual": "cyan",
    "not_applicable": "dim",
    "excepted": "blue",
    "succeeded": "green",
    "partial": "yellow",
    "failed": "bold red",
    "aborted": "magenta",
    "running": "cyan",
}


class OutputFormat(StrEnum):
    table = "table"
    json = "json"
    csv = "csv"


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _cell(value: Any) -> str:
    value = _plain(value)
    if value is None:
        return ""
    if isinstance(value, list):
        return "; ".join(str(v) for v in value)
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True)
    return str(value)


def _csv_cell(value: Any) -> Any:
    # Numbers stay numbers; text that a spreadsheet would run as a formula does not.
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value
    return neutralise(_cell(value))


def serialise(
    rows: Sequence[dict[str, Any]], columns: Sequence[tuple[str, str]], fmt: OutputFormat
) -> str:
    """``rows`` as the JSON or CSV text the CLI prints (the web console's downloads too)."""
    if fmt is OutputFormat.json:
        return json.dumps([_plain(r) for r in rows], indent=2, sort_keys=True) + "\n"
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow([key for key, _ in columns])
    for r in rows:
        w.writerow([_csv_cell(r.get(key)) for key, _ in columns])
    return buf.getvalue()


def render(
    rows: Sequence[dict[str, Any]],
    columns: Sequence[tuple[str, str]],
    fmt: OutputFormat,
    *,
    title: str | None = None,
    console: Console | None = None,
) -> None:
    """Print ``rows``; ``columns`` are ``(key, header)`` pairs used by table and CSV."""
    if fmt is not OutputFormat.table:
        sys.stdout.write(serialise(rows, columns, fmt))
        return
    if console is None:
        # Piped tables are read in files and CI logs: do not fold them at 80 columns.
        wide = not sys.stdout.isatty() and "COLUMNS" not in os.environ
        console = Console(width=200) if wide else Console()
    table = Table(title=title, show_lines=False, header_style="bold")
    for _, header in columns:
        table.add_column(header, overflow="fold")
    for r in rows:
        cells = []
        for key, _ in columns:
            text = _cell(r.get(key))
            style = STATUS_STYLE.get(text) if key in ("status",) else None
            cells.append(f"[{style}]{text}[/]" if style else text.replace("[", r"\["))
        table.add_row(*cells)
    console.print(table)

"""Rendering of read commands: rich tables for people, JSON and CSV for scripts."""

from __future__ import annotations

import csv
import io
import json
import os
import sys
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from core.csvsafe import neutralise

if TYPE_CHECKING:
    from rich.console import Console

#: The columns of a findings table, the same in ``annexa findings`` and the console.
FINDING_COLUMNS = [
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
#: The columns of a controls table, the same in ``annexa controls`` and the console.
CONTROL_COLUMNS = [
    ("control", "Control"),
    ("title", "Title"),
    ("theme", "Theme"),
    ("status", "Status"),
    ("summary", "Findings"),
    ("resources", "Failing / erroring / excepted resources"),
]
#: The columns of a runs table, the same in ``annexa runs`` and the console.
RUN_COLUMNS = [
    ("id", "Run"),
    ("source", "Source"),
    ("status", "Status"),
    ("started_at", "Started"),
    ("finished_at", "Finished"),
    ("reason", "Reason"),
    ("digest", "Digest"),
    ("signed_by", "Signed by"),
]

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
    return "".join(serialise_chunks(rows, columns, fmt))


def serialise_chunks(
    rows: Iterable[dict[str, Any]], columns: Sequence[tuple[str, str]], fmt: OutputFormat
) -> Iterator[str]:
    """:func:`serialise`'s text in pieces, a row at a time (a streamed download): joined,
    exactly that text."""
    if fmt is OutputFormat.json:
        first = True
        for r in rows:
            item = json.dumps(_plain(r), indent=2, sort_keys=True).replace("\n", "\n  ")
            yield ("[\n  " if first else ",\n  ") + item
            first = False
        yield "[]\n" if first else "\n]\n"
        return
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow([key for key, _ in columns])
    for r in rows:
        w.writerow([_csv_cell(r.get(key)) for key, _ in columns])
        yield buf.getvalue()
        buf.seek(0)
        buf.truncate()
    yield buf.getvalue()


#: Cleared by `annexa --no-pager` (as with git): long tables on a terminal go through
#: ``$ANNEXA_PAGER``, ``$PAGER`` or ``less`` otherwise.
PAGER_ENABLED = True

#: Identifier columns shortened in the middle on a terminal (both ends identify them).
ID_KEYS = frozenset(
    {
        "resource_id",
        "check_id",
        "id",
        "run_id",
        "digest",
        "content_hash",
        "exception",
        "evidence_hash",
    }
)
ID_WIDTH = 24


def shorten_middle(text: str, width: int = ID_WIDTH) -> str:
    """``arn:aws:s3:::annexa-demo-eu-data`` → ``arn:aws:s3:…demo-eu-data``: the start
    says what kind of id it is, the end which one."""
    if len(text) <= width:
        return text
    keep = width - 1
    return text[: (keep + 1) // 2] + "…" + text[len(text) - keep // 2 :]


def render(
    rows: Sequence[dict[str, Any]],
    columns: Sequence[tuple[str, str]],
    fmt: OutputFormat,
    *,
    title: str | None = None,
    console: Console | None = None,
    narrow: Sequence[str] | None = None,
    wide: bool = False,
) -> None:
    """Print ``rows``; ``columns`` are ``(key, header)`` pairs used by table and CSV.

    JSON and CSV are always complete. A table on a terminal (or with ``COLUMNS`` set)
    fits its width: the ``narrow`` keys only unless ``wide``, one line per row, long
    ids shortened in the middle, and paged when longer than the screen. A piped table
    has every column at full width, never wrapped: files and logs are grepped.
    """
    if fmt is not OutputFormat.table:
        sys.stdout.write(serialise(rows, columns, fmt))
        return
    from rich.console import Console
    from rich.table import Table

    on_tty = sys.stdout.isatty()
    fit = console is not None or on_tty or "COLUMNS" in os.environ
    shown = list(columns)
    if fit and narrow and not wide:
        shown = [c for c in columns if c[0] in narrow]
    texts = [[_table_cell(r.get(key), short=fit) for key, _ in shown] for r in rows]
    full = not fit or (wide and console is None)
    if console is None:
        if full:
            # Piped, or --wide: every value in full on one line (a pager scrolls sideways).
            need = sum(
                max([len(h), *(len(row[i]) for row in texts)]) + 3 for i, (_, h) in enumerate(shown)
            )
            console = Console(width=max(80, need + 4))
        else:
            console = Console()
    widths: list[int | None] = [None] * len(shown)
    if fit and not wide:
        widths = _fit_widths(shown, texts, console.width)
        texts = [
            [
                _clip(t, w, middle=key in ID_KEYS)
                for t, w, (key, _) in zip(row, widths, shown, strict=True)
            ]
            for row in texts
        ]
    table = Table(title=title, show_lines=False, header_style="bold")
    for (_, header), w in zip(shown, widths, strict=True):
        if w is None:
            # Piped or --wide: never wrapped; a given console (stderr): folded.
            table.add_column(header, overflow="ignore" if full else "fold", no_wrap=full)
        else:
            table.add_column(_clip(header, w), width=w, no_wrap=True, overflow="ellipsis")
    for row in texts:
        cells = []
        for text, (key, _) in zip(row, shown, strict=True):
            style = STATUS_STYLE.get(text) if key in ("status", "effective_status") else None
            cells.append(f"[{style}]{text}[/]" if style else text.replace("[", r"\["))
        table.add_row(*cells)
    if console.is_terminal and console.file is sys.stdout and PAGER_ENABLED:
        with console.capture() as captured:
            console.print(table)
        _page(captured.get(), console.size.height, sideways=wide)
        return
    console.print(table)


def _table_cell(value: Any, *, short: bool) -> str:
    """A cell's text; on a terminal, instants to the second and on one line."""
    if short and isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    text = _cell(value)
    return " ".join(text.split()) if short else text


def _clip(text: str, width: int, *, middle: bool = False) -> str:
    if len(text) <= width:
        return text
    if middle:
        return shorten_middle(text, width)
    return text[: max(width - 1, 0)] + "…"


def _fit_widths(
    shown: Sequence[tuple[str, str]], texts: list[list[str]], total: int
) -> list[int | None]:
    """Column widths that fit ``total``: short columns (status, control, dates) keep
    their natural width; long ones (titles, messages, ids) share what is left in
    proportion to their natural width, at least 6 characters each."""
    natural = [max([len(h), *(len(row[i]) for row in texts)]) for i, (_, h) in enumerate(shown)]
    # Ids are shortened in the middle before anything else is clipped.
    natural = [
        min(n, ID_WIDTH) if key in ID_KEYS else n
        for n, (key, _) in zip(natural, shown, strict=True)
    ]
    avail = total - (3 * len(shown) + 1)
    if sum(natural) <= avail:
        return list(natural)
    fixed = [n <= 19 for n in natural]
    rest = avail - sum(n for n, f in zip(natural, fixed, strict=True) if f)
    flex = [n for n, f in zip(natural, fixed, strict=True) if not f]
    if rest < 6 * len(flex):
        # Too narrow even so: every column shares in proportion.
        return [max(3, n * avail // sum(natural)) for n in natural]
    # Water-filling: each long column gets an equal share, what a column does not
    # need goes to the others.
    share = [0] * len(flex)
    wanting = list(range(len(flex)))
    while wanting and rest > 0:
        fair = max(rest // len(wanting), 1)
        still = []
        for k in wanting:
            give = min(flex[k] - share[k], fair, rest)
            share[k] += give
            rest -= give
            if share[k] < flex[k]:
                still.append(k)
        wanting = still
    it = iter(share)
    return [n if f else next(it) for n, f in zip(natural, fixed, strict=True)]


def _page(text: str, height: int, *, sideways: bool = False) -> None:
    """Show ``text`` through the pager when it is longer than the screen (as git does;
    ``LESS=FRX`` unless set: quit on one screen, keep colours, leave it on screen; and
    ``S`` for --wide tables: long lines scroll sideways instead of wrapping)."""
    import shlex
    import subprocess

    pager = os.environ.get("ANNEXA_PAGER", os.environ.get("PAGER", "less"))
    if text.count("\n") < height - 1 or pager.strip() in ("", "cat"):
        sys.stdout.write(text)
        return
    env = os.environ | {"LESS": os.environ.get("LESS", "FRSX" if sideways else "FRX")}
    try:
        subprocess.run(shlex.split(pager), input=text, text=True, env=env, check=False)  # noqa: S603
    except OSError:
        sys.stdout.write(text)

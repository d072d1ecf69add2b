"""CSV cells that a spreadsheet opens as text, never as a formula (OWASP CSV injection).

Source values reach every CSV Annexa writes — a bucket's tag, a user's display name, a
ticket summary. A cell starting with ``=``, ``+``, ``-``, ``@``, a tab or a carriage
return is run as a formula by Excel, LibreOffice and Google Sheets
(``=HYPERLINK("http://x","y")`` becomes a link; worse ones exist). Such a text cell is
written with a leading apostrophe, which spreadsheets show as text. A text cell that
already starts with an apostrophe gets one more, so the rule can be undone exactly
(:func:`restore`) — ``verify-package`` reads the cells back to recompute hashes.
Numbers are never changed: ``-5`` written from an integer stays ``-5``.
"""

from __future__ import annotations

from typing import Any

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def neutralise(value: Any) -> Any:
    """``value`` as a CSV cell: text that could start a formula gets a leading ``'``."""
    if isinstance(value, str) and value and (value[0] in FORMULA_START or value[0] == "'"):
        return "'" + value
    return value


def restore(cell: str) -> str:
    """The original text of a cell written through :func:`neutralise`."""
    return cell[1:] if cell.startswith("'") else cell

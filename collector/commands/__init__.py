"""Further ``annexa`` commands, one module per concern.

Every module in this package is imported by :mod:`collector.cli` after the main app
exists; a module registers its commands with ``@app.command()`` (or
``app.add_typer``) using ``from collector.clikit import app``. Adding a command is adding
a module here — no edit to ``cli.py`` needed.
"""

from __future__ import annotations

import importlib
import pkgutil


def load_all() -> None:
    for mod in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        importlib.import_module(f"{__name__}.{mod.name}")

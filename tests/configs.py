"""``annexa.toml`` files for end-to-end tests, written from Python values so that a test
states only what its connectors need, and each file still reads as an operator's would:
``[database]``, ``[log]``, then a ``[[connectors]]`` table per connector with its
``[connectors.options]`` (nested tables below it) and ``[connectors.checks."<id>"]``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
#: A secret reference (``{ env = "..." }``) stays inline, as the documentation writes it.
_INLINE = ({"env"}, {"file"})


def _key(key: str) -> str:
    return key if _BARE_KEY.fullmatch(key) else json.dumps(key)


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str | Path):
        return json.dumps(str(value))  # a TOML basic string takes JSON's escapes
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{_key(k)} = {_value(v)}" for k, v in value.items()) + " }"
    return "[" + ", ".join(_value(v) for v in value) + "]"


def _table(header: str, values: Mapping[str, Any], array: bool = False) -> list[str]:
    """``values`` under ``header``: scalars first, then each sub-table (a list of tables
    as an array of tables), so that no key falls under the wrong header."""
    lines = [f"[[{header}]]" if array else f"[{header}]"]
    nested: list[str] = []
    for k, v in values.items():
        name = f"{header}.{_key(k)}"
        if isinstance(v, Mapping) and set(v) not in _INLINE:
            nested += _table(name, v)
        elif isinstance(v, list) and v and all(isinstance(x, Mapping) for x in v):
            for item in v:
                nested += _table(name, item, array=True)
        else:
            lines.append(f"{_key(k)} = {_value(v)}")
    if len(lines) == 1 and nested and not array:
        return nested  # a header with no keys of its own says nothing
    return lines + nested


def connector_table(kind: str, name: str, options: Mapping[str, Any] | None = None,
              **checks: Mapping[str, Any]) -> dict[str, Any]:
    """One ``[[connectors]]`` entry; ``checks`` maps a check id to its parameters (pass
    them as ``**{"okta.user.inactive": {...}}``)."""
    out: dict[str, Any] = {"type": kind, "name": name}
    if options:
        out["options"] = dict(options)
    if checks:
        out["checks"] = checks
    return out


def config_toml(db_url: str, *connectors: Mapping[str, Any], json_logs: bool = False,
                **tables: Mapping[str, Any]) -> str:
    """The text of a config: the database, JSON logs if asked, other top-level ``tables``
    (``mappings``, ``audit``, ...), then the connectors in order."""
    lines = _table("database", {"url": db_url})
    if json_logs:
        lines += _table("log", {"format": "json"})
    for name, values in tables.items():
        lines += _table(name, values)
    for c in connectors:
        lines += _table("connectors", c, array=True)
    return "\n".join(lines) + "\n"


def write_config(path: Path, db_url: str, *connectors: Mapping[str, Any],
                 json_logs: bool = False, **tables: Mapping[str, Any]) -> Path:
    """:func:`config_toml` written to ``path`` (UTF-8); returns ``path``."""
    path.write_text(config_toml(db_url, *connectors, json_logs=json_logs, **tables),
                    encoding="utf-8")
    return path


def secret_env(name: str) -> dict[str, str]:
    """A secret read from the environment variable ``name`` at run time."""
    return {"env": name}

"""Reading a TOML file a person wrote (mappings, SoA, exceptions, identity map).

Every such file reports its problems the same way: an error carrying the file, the entry
(``<file>`` for the file as a whole) and the reason, so that it can be fixed without
reading code.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable, Collection, Iterator
from pathlib import Path
from typing import Any

#: The entry named when the problem is the file as a whole.
WHOLE_FILE = "<file>"


def read_toml(path: Path, error: Callable[[str, str, str], Exception]) -> dict[str, Any]:
    """The top-level table of ``path``.

    Raises ``error(file, "<file>", reason)`` when the file cannot be read, is not UTF-8
    or is not TOML.
    """
    file = str(path)
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise error(file, WHOLE_FILE, f"cannot be read: {exc.strerror or exc}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise error(file, WHOLE_FILE, f"invalid TOML: {exc}") from None


def numbered_tables(
    path: Path,
    doc: dict[str, Any],
    key: str,
    allowed: Collection[str],
    error: Callable[[str, str, str], Exception],
) -> Iterator[tuple[int, Any]]:
    """``(n, item)`` for the ``[[key]]`` entries of ``doc``, numbered from 1 as a person
    counts them in an editor (items not checked here).

    Raises ``error`` when ``doc`` has a top-level key outside ``allowed`` or lists no
    ``[[key]]`` entry at all.
    """
    file = str(path)
    for top in doc:
        if top not in allowed:
            raise error(file, WHOLE_FILE, f"unknown top-level key {top!r}")
    items = doc.get(key)
    if not isinstance(items, list) or not items:
        raise error(file, WHOLE_FILE, f"lists no [[{key}]] entries")
    return enumerate(items, start=1)


def table_array(
    file: str, doc: dict[str, Any], key: str, error: Callable[[str, str, str], Exception]
) -> list[Any]:
    """The ``[[key]]`` entries of ``doc`` (none when it has no ``key``; items not checked).

    Raises ``error(file, key, reason)`` when ``key`` is there but not an array of tables.
    """
    items = doc.get(key, [])
    if not isinstance(items, list):
        raise error(file, key, f"must be an array of tables ([[{key}]])")
    return items


def check_table(
    file: str,
    entry: str,
    item: Any,
    allowed: Collection[str],
    error: Callable[[str, str, str], Exception],
) -> dict[str, Any]:
    """``item``, once known to be a table with no key outside ``allowed``.

    Raises ``error(file, entry, reason)`` naming the first unknown key and every allowed one.
    """
    if not isinstance(item, dict):
        raise error(file, entry, "must be a table")
    for key in item:
        if key not in allowed:
            raise error(
                file, entry, f"unknown key {key!r} (allowed: {', '.join(sorted(allowed))})"
            )
    return item

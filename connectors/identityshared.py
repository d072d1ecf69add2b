"""Helpers the identity and SaaS connectors (Okta, Entra, GitHub, Workspace…) share.

Their vendors answer with deep JSON documents, and several of their readers feed a later
unit (admin roles and API tokens are copied onto each user's evidence): the look-up and
the "remember why the read failed" wrapper live here once instead of in every source.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from connectors.http import HttpClient
from core.records import Evidence


def dig(obj: Any, *path: str) -> Any:
    """``obj[path[0]][path[1]]…``, or ``None`` as soon as a step is missing or not an
    object (vendors omit empty sub-objects, or send ``null`` for them)."""
    for key in path:
        if not isinstance(obj, Mapping):
            return None
        obj = obj.get(key)
    return obj


class RecordingReader:
    """A unit reader whose result a later unit needs: its subclass reads in ``_read`` and
    fills its own result attribute; when the read raises, ``error`` keeps why, so the
    later unit can say why that part of its evidence is missing."""

    def __init__(self, http: HttpClient, scope: str) -> None:
        self.http = http
        self.scope = scope
        self.error: str | None = None

    def read(self) -> Iterator[Evidence]:
        try:
            yield from self._read()
        except Exception as exc:
            self.error = str(exc) if str(exc) else type(exc).__name__
            raise

    def _read(self) -> Iterator[Evidence]:
        raise NotImplementedError

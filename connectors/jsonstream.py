"""Items of one list inside a large JSON document, read without loading the document.

Some sources answer with one document and no paging: a BambooHR custom report or
employee directory holds every employee of the company in a single
``{"fields": [...], "employees": [...]}`` body. Parsed whole, 100,000 employees cost
hundreds of MiB; streamed item by item (the body spooled to a file by
:meth:`connectors.http.HttpClient.request` with ``sink``), memory stays flat whatever the
size of the company. Each item is decoded by the standard library's JSON decoder; only
the enclosing object and list are walked here.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any, TextIO

from connectors.http import MalformedResponseError

_WS = " \t\r\n"
_DECODER = json.JSONDecoder()


class JsonStreamError(MalformedResponseError):
    """The document is not the JSON object expected (raised as a source error)."""


class _Reader:
    """A sliding window over a text stream, consumed from the front."""

    def __init__(self, fp: TextIO, what: str, chunk: int = 1 << 20) -> None:
        self.fp = fp
        self.what = what
        self.chunk = chunk
        self.buf = ""
        self.pos = 0
        self.dropped = 0  # characters before buf[0]
        self.eof = False

    def fill(self) -> bool:
        if self.eof:
            return False
        data = self.fp.read(self.chunk)
        if not data:
            self.eof = True
            return False
        self.dropped += self.pos
        self.buf = self.buf[self.pos :] + data
        self.pos = 0
        return True

    def peek(self) -> str:
        while True:
            while self.pos < len(self.buf) and self.buf[self.pos] in _WS:
                self.pos += 1
            if self.pos < len(self.buf):
                return self.buf[self.pos]
            if not self.fill():
                return ""

    def error(self, reason: str) -> JsonStreamError:
        return JsonStreamError(f"{self.what}: {reason} at character {self.dropped + self.pos}")

    def expect(self, char: str) -> None:
        got = self.peek()
        if got != char:
            raise self.error(f"expected {char!r}, found {got or 'end of document'!r}")
        self.pos += 1

    def closes(self, close: str, where: str = "") -> bool:
        """Reads the separator after a member or item: True at ``close`` (the object or
        list ends), False at a comma (another follows); anything else is an error."""
        sep = self.peek()
        if sep == close or sep == ",":
            self.pos += 1
            return sep == close
        raise self.error(f"expected ',' or '{close}'{where}, found {sep or 'end of document'!r}")

    def value(self) -> Any:
        if not self.peek():
            raise self.error("unexpected end of document")
        while True:
            try:
                obj, end = _DECODER.raw_decode(self.buf, self.pos)
            except json.JSONDecodeError as exc:
                if self.fill():
                    continue
                raise self.error(f"invalid JSON ({exc.msg})") from None
            # A number (or literal) ending at the window's edge may continue beyond it.
            if end == len(self.buf) and self.fill():
                continue
            self.pos = end
            return obj


def iter_list(fp: TextIO, key: str, *, what: str = "response") -> Iterator[Any]:
    """Each item of the list at top-level ``key`` of the JSON object read from ``fp``.

    Other members are parsed and dropped. A missing ``key``, a non-list value or a
    malformed document raise :class:`JsonStreamError` (after the items already read).
    """
    r = _Reader(fp, what)
    r.expect("{")
    found = False
    if r.peek() == "}":
        r.pos += 1
    else:
        while True:
            name = r.value()
            if not isinstance(name, str):
                raise r.error("expected a member name")
            r.expect(":")
            if name == key and not found:
                found = True
                yield from _items(r, key)
            else:
                r.value()
            if r.closes("}"):
                break
    if r.peek():
        raise r.error("unexpected data after the document")
    if not found:
        raise JsonStreamError(f"{what}: no {key!r} list in the document")


def _items(r: _Reader, key: str) -> Iterator[Any]:
    if r.peek() == "n":
        if r.value() is None:  # a null list: no items
            return
    if r.peek() != "[":
        raise r.error(f"{key!r} is not a list")
    r.pos += 1
    if r.peek() == "]":
        r.pos += 1
        return
    while True:
        yield r.value()
        if r.closes("]", f" in {key!r}"):
            return

"""Streaming one list out of a large JSON document (connectors/jsonstream.py).

Pure tests on in-memory text; the BambooHR tests drive it over a real socket with the
body spooled by the HTTP layer. A window of a few characters makes every boundary case
(a number, a string or an escape split across reads) happen.
"""

from __future__ import annotations

import io
import json

import pytest

from connectors.jsonstream import JsonStreamError, iter_list


class _Tiny(io.StringIO):
    """Hands out at most 3 characters a read, whatever is asked."""

    def read(self, size: int | None = -1) -> str:
        return super().read(3)


DOC = {
    "title": "Report \"x\" \\ é",
    "fields": [{"id": "hireDate", "type": "date"}, {"id": "employees"}],
    "employees": [{"id": str(i), "n": i * 1.25, "s": "a,]}\"b", "t": None} for i in range(300)]
    + [12345678, True, [1, [2]]],
    "after": {"nested": [1, 2, {"employees": []}]},
}


@pytest.mark.parametrize("reader", [io.StringIO, _Tiny])
def test_items_come_back_exactly(reader: type[io.StringIO]) -> None:
    text = json.dumps(DOC, ensure_ascii=False)
    assert list(iter_list(reader(text), "employees")) == DOC["employees"]
    assert list(iter_list(reader(json.dumps(DOC, indent=2)), "employees")) == DOC["employees"]


def test_empty_and_null_lists() -> None:
    assert list(iter_list(io.StringIO('{"employees": []}'), "employees")) == []
    assert list(iter_list(io.StringIO('{"employees": null}'), "employees")) == []


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ('{"employees": [{"a": 1},', "unexpected end of document"),
        ('{"employees": [1 2]}', "expected ',' or ']' in 'employees'"),
        ("[1]", "expected '{'"),
        ('{"other": 1}', "no 'employees' list"),
        ('{"employees": 3}', "'employees' is not a list"),
        ('{"employees": [1]} trailing', "unexpected data after the document"),
        ('{"employees": [1], "x": }', "invalid JSON"),
    ],
)
def test_malformed_documents_are_source_errors(text: str, reason: str) -> None:
    with pytest.raises(JsonStreamError, match=reason) as exc:
        list(iter_list(_Tiny(text), "employees", what="POST /reports/custom"))
    assert str(exc.value).startswith("POST /reports/custom")
    # A source error: run_unit turns it into the unit's error, never a crash.
    from connectors.http import SourceError

    assert isinstance(exc.value, SourceError)


def test_items_before_a_break_are_yielded_first() -> None:
    got = []
    with pytest.raises(JsonStreamError):
        for item in iter_list(_Tiny('{"employees": [{"id": 1}, {"id": 2}, {"id"'), "employees"):
            got.append(item)
    assert got == [{"id": 1}, {"id": 2}]

"""Deadlines of the HTTP layer against real sockets on 127.0.0.1: a slow-drip server
cannot outlive a request's total deadline across its retries, a silent one neither,
and an endless next-page chain is stopped by the listing's time or page bound. Each
error names the bound that stopped it.

No elapsed time is asserted: the bounds are chosen so that, without the total deadline,
every attempt would run (``max_attempts``); stopping after fewer attempts, with the
bound named, is what shows the deadline did it.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from connectors.http import HttpClient, HttpOptions, PaginationError, TransportError

FAST = {"retry_min_wait": 0.01, "retry_max_wait": 0.02, "max_retry_after": 1}


class RawServer:
    """Accepts connections and runs ``serve(conn)`` for each (a misbehaving server)."""

    def __init__(self, serve) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self.stop = threading.Event()
        self._serve = serve
        threading.Thread(target=self._loop, daemon=True).start()

    def _loop(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._one, args=(conn,), daemon=True).start()

    def _one(self, conn: socket.socket) -> None:
        try:
            conn.recv(65536)
            self._serve(conn, self.stop)
        except OSError:
            pass
        finally:
            conn.close()

    def close(self) -> None:
        self.stop.set()
        self.sock.close()


def drip(conn: socket.socket, stop: threading.Event) -> None:
    """Headers at once, then one body byte every 0.1 s (never finishing in time)."""
    conn.sendall(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n"
    )
    while not stop.wait(0.1):
        conn.sendall(b" ")


def silent(conn: socket.socket, stop: threading.Event) -> None:
    """Accepts the request and never answers."""
    stop.wait(60)


@pytest.fixture
def raw() -> Iterator:
    made: list[RawServer] = []

    def make(serve) -> RawServer:
        s = RawServer(serve)
        made.append(s)
        return s

    yield make
    for s in made:
        s.close()


def test_a_drip_server_cannot_outlive_the_total_deadline_across_retries(raw) -> None:
    server = raw(drip)
    options = HttpOptions(
        request_deadline=1.0, total_deadline=2.5, max_attempts=10, timeout=5, **FAST
    )
    with HttpClient(f"http://127.0.0.1:{server.port}", options=options) as http:
        with pytest.raises(TransportError) as err:
            http.get("/slow")
    message = str(err.value)
    assert "total_deadline=2.5s" in message
    # Without the total deadline all 10 one-second attempts would have run.
    assert 1 <= server.connections < 10
    attempts = int(message.split(" after ")[1].split(" attempt")[0])
    assert attempts == server.connections


def test_one_attempt_stops_at_the_request_deadline_and_names_it(raw) -> None:
    server = raw(drip)
    options = HttpOptions(request_deadline=0.5, total_deadline=60, max_attempts=1, **FAST)
    with HttpClient(f"http://127.0.0.1:{server.port}", options=options) as http:
        with pytest.raises(TransportError, match=r"request_deadline=0\.5s passed"):
            http.get("/slow")


def test_a_silent_server_is_cut_at_the_total_deadline_not_a_read_timeout_later(raw) -> None:
    server = raw(silent)
    # A read timeout far beyond the total deadline: only the clamp stops the wait.
    options = HttpOptions(
        request_deadline=100, total_deadline=1.5, timeout=100, max_attempts=10, **FAST
    )
    with HttpClient(f"http://127.0.0.1:{server.port}", options=options) as http:
        with pytest.raises(TransportError, match=r"total_deadline=1\.5s"):
            http.get("/silent")
    assert server.connections < 10


def _endless(server: HTTPServer, delay: float = 0.0) -> None:
    """``/items?page=n`` answers one item and a next link to page n+1, forever
    (Graph/ARM style ``@odata.nextLink``)."""

    def handler(request: Request) -> Response:
        n = int(request.args.get("page", "0"))
        if delay:
            time.sleep(delay)
        body = {"value": [n], "@odata.nextLink": server.url_for(f"/items?page={n + 1}")}
        return Response(json.dumps(body), 200, content_type="application/json")

    server.expect_request("/items").respond_with_handler(handler)


def test_an_endless_paginator_is_stopped_by_the_listing_deadline(httpserver: HTTPServer) -> None:
    _endless(httpserver, delay=0.05)
    options = HttpOptions(listing_deadline=1.0, max_pages=1_000_000, **FAST)
    seen: list[int] = []
    with HttpClient(httpserver.url_for("/").rstrip("/"), options=options) as http:
        with pytest.raises(PaginationError, match=r"listing_deadline=1s passed after \d+ pages"):
            for item in http.paginate_next_url("/items"):
                seen.append(item)
    assert seen == list(range(len(seen))) and 1 <= len(seen) < 1_000_000


def test_an_endless_paginator_is_stopped_by_max_pages(httpserver: HTTPServer) -> None:
    _endless(httpserver)
    options = HttpOptions(listing_deadline=3600, max_pages=7, **FAST)
    with HttpClient(httpserver.url_for("/").rstrip("/"), options=options) as http:
        items = []
        with pytest.raises(PaginationError, match=r"more than 7 pages \(max_pages\)"):
            items.extend(http.paginate_next_url("/items"))
    assert items == list(range(7))

"""The shared fake skeleton (tests/fakehttp.py) seen through the product's HTTP client
(connectors/http.py) over a real socket: what every vendor fake builds on must behave
the way the fakes' tests assume (routing, paging, 429 + Retry-After, auth refusal,
unknown routes, the request log)."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from werkzeug import Request, Response

from connectors.http import HttpClient, HTTPStatusError, token_auth
from tests.fakehttp import (
    FAST_HTTP,
    FakeHTTP,
    json_response,
    link_header,
    offset_page,
    token_page,
)

ITEMS = [{"id": n} for n in range(7)]


class FakeVendor(FakeHTTP):
    """A made-up vendor: Bearer auth, a Link-paged list, a cursor-paged list."""

    def __init__(self) -> None:
        super().__init__()
        self.route(r"/api/things", self._things)
        self.route(r"/api/cursor", self._cursor)
        self.route(r"/api/things/(\d+)", self._thing)

    def authorised(self, request: Request) -> bool:
        return request.headers.get("Authorization") == "Bearer good"

    def _things(self, request: Request, _: re.Match[str]) -> Response:
        page = int(request.args.get("page", 1))
        chunk, _last = offset_page(ITEMS, (page - 1) * 3, 3)
        link = link_header(f"{self.base}/api/things", {"per_page": 3}, page, 3)
        return json_response(chunk, headers={"Link": link} if link else {})

    def _cursor(self, request: Request, _: re.Match[str]) -> Response:
        chunk, token = token_page(ITEMS, request.args.get("pageToken"), 4)
        return json_response({"items": chunk, "nextPageToken": token or ""})

    def _thing(self, request: Request, m: re.Match[str]) -> Response:
        return json_response(ITEMS[int(m[1])])


@pytest.fixture
def vendor() -> Iterator[FakeVendor]:
    with FakeVendor() as fake:
        yield fake


def client(fake: FakeHTTP, token: str = "good") -> HttpClient:
    return HttpClient(fake.base, auth=token_auth("Bearer", token), options=FAST_HTTP)


def test_serves_on_loopback_and_logs_every_request(vendor: FakeVendor) -> None:
    assert vendor.base.startswith("http://127.0.0.1:")
    with client(vendor) as c:
        assert c.get_json("/api/things/4") == {"id": 4}
    (seen,) = vendor.log
    assert (seen.method, seen.path, seen.key) == ("GET", "/api/things/4", "/api/things/4")
    assert seen.headers["Authorization"] == "Bearer good"
    assert vendor.count("/api/things") == 1


def test_link_and_cursor_paging(vendor: FakeVendor) -> None:
    with client(vendor) as c:
        assert list(c.paginate_links("/api/things", params={"per_page": 3})) == ITEMS
        assert list(
            c.paginate_cursor("/api/cursor", items_key="items", last_key=None)
        ) == ITEMS
    assert vendor.count("/api/things") == 3 and vendor.count("/api/cursor") == 2


def test_throttle_answers_429_with_retry_after_then_the_route(vendor: FakeVendor) -> None:
    vendor.throttle("/api/things/1", times=2, retry_after="0")
    with client(vendor) as c:
        assert c.get_json("/api/things/1") == {"id": 1}
    assert vendor.count("/api/things/1") == 3  # two 429s, then the answer


def test_auth_refused_by_check_and_by_injection(vendor: FakeVendor) -> None:
    with client(vendor, token="bad") as c, pytest.raises(HTTPStatusError) as bad:
        c.get_json("/api/things/0")
    assert bad.value.status == 401
    vendor.fail_auth()  # a good token refused once (revoked mid-run)
    with client(vendor) as c:
        with pytest.raises(HTTPStatusError) as revoked:
            c.get_json("/api/things/0")
        assert revoked.value.status == 401
        assert c.get_json("/api/things/0") == {"id": 0}


def test_an_unknown_route_is_418_and_not_retried(vendor: FakeVendor) -> None:
    with client(vendor) as c, pytest.raises(HTTPStatusError) as missing:
        c.get_json("/api/nothing")
    assert missing.value.status == 418
    assert vendor.count("/api/nothing") == 1


def test_scripted_faults_are_served_in_order_before_routing(vendor: FakeVendor) -> None:
    vendor.fault("/api/things/2", (503, "", {}), (200, '{"id": "scripted"}', {}))
    with client(vendor) as c:
        assert c.get_json("/api/things/2") == {"id": "scripted"}
        assert c.get_json("/api/things/2") == {"id": 2}
    assert vendor.count("/api/things/2") == 3

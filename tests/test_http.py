"""The shared HTTP layer against a real local server (pytest-httpserver).

Waits are recorded by an injected ``sleep`` instead of being slept, so the tests prove
*how long* the client would wait (Retry-After seconds / HTTP-date, rate-limit resets,
bounded backoff) and still run in milliseconds.
"""

from __future__ import annotations

import email.utils
import json
import socket
import ssl
import threading
import time

import pytest
import trustme
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from connectors.http import (
    HttpClient,
    HttpOptions,
    HTTPStatusError,
    InsecureURLError,
    MalformedResponseError,
    PaginationError,
    RateLimitedError,
    ResponseTooLargeError,
    RetryExhaustedError,
    SourceError,
    TransportError,
    check_url,
    redact_url,
    token_auth,
)

FAST = HttpOptions(
    max_attempts=4,
    retry_min_wait=0.5,
    retry_max_wait=2.0,
    max_retry_after=60.0,
    secondary_rate_limit_wait=45.0,
    timeout=5.0,
    connect_timeout=2.0,
)


@pytest.fixture
def server(httpserver: HTTPServer) -> HTTPServer:
    # 418 is outside the retry set: an unexpected request fails loudly, once.
    httpserver.no_handler_status_code = 418
    return httpserver


class Sleeps(list):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


def client(server: HTTPServer, sleeps: Sleeps, **opts) -> HttpClient:
    options = FAST.model_copy(update=opts) if opts else FAST
    return HttpClient(server.url_for("/").rstrip("/"), options=options, sleep=sleeps)


def link(url: str, rel: str) -> str:
    return f'<{url}>; rel="{rel}"'


# --------------------------------------------------------------------------- pagination


def test_link_header_pagination_follows_next_across_pages(server, sleeps):
    """Okta-style: several Link lines (self + next); httpx merges them."""
    p2 = server.url_for("/api/v1/users") + "?after=u2&limit=2"
    p3 = server.url_for("/api/v1/users") + "?after=u4&limit=2"
    server.expect_request("/api/v1/users", query_string="limit=2").respond_with_json(
        [{"id": "u1"}, {"id": "u2"}],
        headers=[
            ("Link", link(server.url_for("/api/v1/users?limit=2"), "self")),
            ("Link", link(p2, "next")),
        ],
    )
    server.expect_request("/api/v1/users", query_string="after=u2&limit=2").respond_with_json(
        [{"id": "u3"}, {"id": "u4"}],
        headers=[("Link", link(p2, "self")), ("Link", link(p3, "next"))],
    )
    server.expect_request("/api/v1/users", query_string="after=u4&limit=2").respond_with_json(
        [{"id": "u5"}], headers=[("Link", link(p3, "self"))]
    )
    with client(server, sleeps) as http:
        ids = [u["id"] for u in http.paginate_links("/api/v1/users", params={"limit": 2})]
    assert ids == ["u1", "u2", "u3", "u4", "u5"]
    assert len(server.log) == 3


def test_link_pagination_with_items_key_and_single_header(server, sleeps):
    """GitHub-style: one Link header listing next/last; items under a key."""
    nxt = server.url_for("/installation/repositories") + "?page=2"
    last = nxt
    server.expect_request("/installation/repositories", query_string="").respond_with_json(
        {"total_count": 3, "repositories": [{"name": "a"}, {"name": "b"}]},
        headers={"Link": f"{link(nxt, 'next')}, {link(last, 'last')}"},
    )
    server.expect_request("/installation/repositories", query_string="page=2").respond_with_json(
        {"total_count": 3, "repositories": [{"name": "c"}]}
    )
    with client(server, sleeps) as http:
        names = [
            r["name"]
            for r in http.paginate_links("/installation/repositories", items_key="repositories")
        ]
    assert names == ["a", "b", "c"]


def test_odata_next_link_pagination(server, sleeps):
    nxt = server.url_for("/v1.0/users") + "?$skiptoken=X1"
    server.expect_request("/v1.0/users", query_string={"$top": "2"}).respond_with_json(
        {"value": [{"id": 1}, {"id": 2}], "@odata.nextLink": nxt}
    )
    server.expect_request("/v1.0/users", query_string={"$skiptoken": "X1"}).respond_with_json(
        {"value": [{"id": 3}]}
    )
    with client(server, sleeps) as http:
        ids = [u["id"] for u in http.paginate_next_url("/v1.0/users", params={"$top": 2})]
    assert ids == [1, 2, 3]


def test_arm_next_link_and_hal_next_href(server, sleeps):
    nxt = server.url_for("/subscriptions") + "?skip=2"
    server.expect_request("/subscriptions", query_string="").respond_with_json(
        {"value": [{"id": "a"}], "nextLink": nxt}
    )
    server.expect_request("/subscriptions", query_string="skip=2").respond_with_json(
        {"value": [{"id": "b"}], "nextLink": None}
    )
    hal_next = server.url_for("/api/v1/iam/assignees/users") + "?after=X"
    server.expect_request("/api/v1/iam/assignees/users", query_string="").respond_with_json(
        {"value": [{"id": "00u1"}], "_links": {"next": {"href": hal_next}}}
    )
    server.expect_request("/api/v1/iam/assignees/users", query_string="after=X").respond_with_json(
        {"value": [{"id": "00u2"}], "_links": {}}
    )
    with client(server, sleeps) as http:
        assert [s["id"] for s in http.paginate_next_url("/subscriptions")] == ["a", "b"]
        got = http.paginate_next_url("/api/v1/iam/assignees/users", next_key="_links.next.href")
        assert [u["id"] for u in got] == ["00u1", "00u2"]


def test_cursor_token_pagination(server, sleeps):
    server.expect_request("/v3/projects:search", query_string="").respond_with_json(
        {"projects": [{"p": 1}], "nextPageToken": "t1"}
    )
    server.expect_request("/v3/projects:search", query_string="pageToken=t1").respond_with_json(
        {"projects": [{"p": 2}], "nextPageToken": "t2"}
    )
    server.expect_request("/v3/projects:search", query_string="pageToken=t2").respond_with_json(
        {"projects": [{"p": 3}]}
    )
    with client(server, sleeps) as http:
        got = [p["p"] for p in http.paginate_cursor("/v3/projects:search", items_key="projects")]
    assert got == [1, 2, 3]


def test_jira_style_cursor_with_is_last(server, sleeps):
    server.expect_request("/rest/api/3/search/jql", query_string="jql=x").respond_with_json(
        {"issues": [{"k": "A-1"}], "nextPageToken": "n1", "isLast": False}
    )
    server.expect_request(
        "/rest/api/3/search/jql", query_string="jql=x&nextPageToken=n1"
    ).respond_with_json({"issues": [{"k": "A-2"}], "nextPageToken": "n2", "isLast": True})
    with client(server, sleeps) as http:
        got = http.paginate_cursor(
            "/rest/api/3/search/jql",
            params={"jql": "x"},
            items_key="issues",
            cursor_param="nextPageToken",
        )
        assert [i["k"] for i in got] == ["A-1", "A-2"]


def test_offset_pagination_start_at_max_results_is_last(server, sleeps):
    """Jira: the server caps the page at 2 though 3 were asked; offsets follow items."""
    server.expect_request(
        "/rest/api/3/project/search", query_string="startAt=0&maxResults=3"
    ).respond_with_json({"values": [1, 2], "startAt": 0, "isLast": False, "total": 5})
    server.expect_request(
        "/rest/api/3/project/search", query_string="startAt=2&maxResults=3"
    ).respond_with_json({"values": [3, 4], "startAt": 2, "isLast": False, "total": 5})
    server.expect_request(
        "/rest/api/3/project/search", query_string="startAt=4&maxResults=3"
    ).respond_with_json({"values": [5], "startAt": 4, "isLast": True, "total": 5})
    with client(server, sleeps) as http:
        got = list(http.paginate_offset("/rest/api/3/project/search", page_size=3))
    assert got == [1, 2, 3, 4, 5]


def test_offset_pagination_sysparm(server, sleeps):
    for offset, rows in ((0, [{"n": 1}, {"n": 2}]), (2, [{"n": 3}, {"n": 4}]), (4, [{"n": 5}])):
        server.expect_request(
            "/api/now/table/sys_user",
            query_string=f"active=true&sysparm_offset={offset}&sysparm_limit=2",
        ).respond_with_json({"result": rows})
    with client(server, sleeps) as http:
        got = http.paginate_offset(
            "/api/now/table/sys_user",
            params={"active": "true"},
            items_key="result",
            start_param="sysparm_offset",
            size_param="sysparm_limit",
            page_size=2,
            last_key=None,
            total_key=None,
        )
        assert [r["n"] for r in got] == [1, 2, 3, 4, 5]


def test_link_loop_raises_pagination_error(server, sleeps):
    a = server.url_for("/loop") + "?page=a"
    b = server.url_for("/loop") + "?page=b"
    server.expect_request("/loop", query_string="page=a").respond_with_json(
        [1], headers={"Link": link(b, "next")}
    )
    server.expect_request("/loop", query_string="page=b").respond_with_json(
        [2], headers={"Link": link(a, "next")}
    )
    server.expect_request("/loop", query_string="").respond_with_json(
        [0], headers={"Link": link(a, "next")}
    )
    with client(server, sleeps) as http, pytest.raises(PaginationError, match="loop"):
        list(http.paginate_links("/loop"))
    assert len(server.log) == 3  # /loop, a, b — and a is not fetched again


def test_self_link_and_repeated_cursor_and_max_pages(server, sleeps):
    me = server.url_for("/self")
    server.expect_request("/self").respond_with_json([1], headers={"Link": link(me, "next")})
    server.expect_request("/cursor").respond_with_json({"items": [1], "nextPageToken": "same"})
    nxt = server.url_for("/many")
    server.expect_request("/many").respond_with_handler(
        lambda req: Response(
            json.dumps([1]),
            content_type="application/json",
            headers={"Link": link(f"{nxt}?p={int(req.args.get('p', 0)) + 1}", "next")},
        )
    )
    with client(server, sleeps) as http:
        with pytest.raises(PaginationError):
            list(http.paginate_links("/self"))
        with pytest.raises(PaginationError, match="same nextPageToken"):
            list(http.paginate_cursor("/cursor", items_key="items"))
        with pytest.raises(PaginationError, match="more than 5 pages"):
            list(http.paginate_links("/many", max_pages=5))


def test_next_link_to_another_origin_is_not_followed(server, sleeps):
    server.expect_request("/p").respond_with_json(
        [1], headers={"Link": link("https://evil.example.com/steal", "next")}
    )
    with client(server, sleeps) as http, pytest.raises(PaginationError, match="another origin"):
        list(http.paginate_links("/p"))
    assert len(server.log) == 1


# --------------------------------------------------------------------------- retries


def test_429_retry_after_seconds_then_success(server, sleeps):
    server.expect_ordered_request("/r").respond_with_json(
        {"message": "slow down"}, status=429, headers={"Retry-After": "7"}
    )
    server.expect_ordered_request("/r").respond_with_json({"ok": True})
    with client(server, sleeps) as http:
        assert http.get_json("/r") == {"ok": True}
    assert sleeps == [7.0]
    assert len(server.log) == 2


def test_429_retry_after_http_date_then_success(server, sleeps):
    when = email.utils.formatdate(time.time() + 20, usegmt=True)
    server.expect_ordered_request("/r").respond_with_data(
        "", status=429, headers={"Retry-After": when}
    )
    server.expect_ordered_request("/r").respond_with_json([1])
    with client(server, sleeps) as http:
        assert http.get_json("/r") == [1]
    assert len(sleeps) == 1 and 17 <= sleeps[0] <= 21


def test_5xx_burst_then_success_uses_bounded_backoff(server, sleeps):
    for status in (503, 502, 500):
        server.expect_ordered_request("/b").respond_with_data("oops", status=status)
    server.expect_ordered_request("/b").respond_with_json({"ok": 1})
    with client(server, sleeps) as http:
        assert http.get_json("/b") == {"ok": 1}
    assert len(sleeps) == 3
    assert all(0 < s <= FAST.retry_max_wait for s in sleeps)


def test_5xx_forever_raises_after_bounded_attempts(server, sleeps):
    server.expect_request("/down").respond_with_json({"message": "unavailable"}, status=503)
    with client(server, sleeps) as http, pytest.raises(RetryExhaustedError) as err:
        http.get("/down")
    assert err.value.status == 503
    assert "/down" in err.value.url
    assert "4 attempt" in str(err.value) and "unavailable" in str(err.value)
    assert len(server.log) == FAST.max_attempts
    assert len(sleeps) == FAST.max_attempts - 1


def test_okta_429_waits_for_rate_limit_reset(server, sleeps):
    reset = int(time.time()) + 30
    server.expect_ordered_request("/api/v1/users").respond_with_json(
        {"errorCode": "E0000047", "errorSummary": "API call exceeded rate limit"},
        status=429,
        headers={
            "X-Rate-Limit-Limit": "600",
            "X-Rate-Limit-Remaining": "0",
            "X-Rate-Limit-Reset": str(reset),
        },
    )
    server.expect_ordered_request("/api/v1/users").respond_with_json([])
    with client(server, sleeps) as http:
        assert http.get_json("/api/v1/users") == []
    assert len(sleeps) == 1 and 27 <= sleeps[0] <= 32


def test_github_primary_and_secondary_403_limits_are_retried(server, sleeps):
    reset = int(time.time()) + 10
    server.expect_ordered_request("/orgs/acme").respond_with_json(
        {"message": "API rate limit exceeded for user ID 1."},
        status=403,
        headers={"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(reset)},
    )
    server.expect_ordered_request("/orgs/acme").respond_with_json(
        {"message": "You have exceeded a secondary rate limit. Please wait a few minutes."},
        status=403,
    )
    server.expect_ordered_request("/orgs/acme").respond_with_json(
        {"message": "secondary"}, status=429, headers={"Retry-After": "3"}
    )
    server.expect_ordered_request("/orgs/acme").respond_with_json({"login": "acme"})
    with client(server, sleeps) as http:
        assert http.get_json("/orgs/acme") == {"login": "acme"}
    assert 8 <= sleeps[0] <= 12
    assert sleeps[1:] == [45.0, 3.0]


def test_plain_403_is_not_retried(server, sleeps):
    server.expect_request("/orgs/acme/members").respond_with_json(
        {"message": "Must be an organization owner."}, status=403
    )
    with client(server, sleeps) as http, pytest.raises(HTTPStatusError) as err:
        http.get("/orgs/acme/members")
    assert err.value.status == 403 and "organization owner" in str(err.value)
    assert len(server.log) == 1 and sleeps == []


def test_retry_after_beyond_limit_fails_fast(server, sleeps):
    server.expect_request("/r").respond_with_data("", status=429, headers={"Retry-After": "3600"})
    with client(server, sleeps) as http, pytest.raises(RateLimitedError, match="3600s"):
        http.get("/r")
    assert len(server.log) == 1 and sleeps == []


def test_spent_budget_delays_next_request_until_reset(server, sleeps):
    reset = int(time.time()) + 20
    server.expect_ordered_request("/a").respond_with_json(
        [1], headers={"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(reset)}
    )
    server.expect_ordered_request("/b").respond_with_json([2])
    with client(server, sleeps) as http:
        assert http.get_json("/a") == [1]
        assert sleeps == []
        assert http.get_json("/b") == [2]
    assert len(sleeps) == 1 and 17 <= sleeps[0] <= 22


def test_transport_error_after_bounded_attempts(sleeps):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # Nothing listens on the port now: connection refused, every attempt.
    http = HttpClient(f"http://127.0.0.1:{port}", options=FAST, sleep=sleeps)
    with pytest.raises(TransportError, match="ConnectError after 4 attempt"):
        http.get("/x")
    assert len(sleeps) == 3


def test_read_timeout_is_retried_then_reported(sleeps):
    """A server of its own: the slow handler must not delay other tests' requests."""

    def slow(_req: Request) -> Response:
        time.sleep(0.3)
        return Response("[]", content_type="application/json")

    own = HTTPServer(host="127.0.0.1", port=0)
    own.no_handler_status_code = 418
    own.expect_request("/slow").respond_with_handler(slow)
    own.start()
    try:
        with client(own, sleeps, timeout=0.1, max_attempts=2) as http:
            with pytest.raises(TransportError, match="ReadTimeout after 2 attempt"):
                http.get("/slow")
        assert len(sleeps) == 1
    finally:
        own.clear()
        own.stop()


def test_cancel_event_stops_retrying(server):
    cancel = threading.Event()
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        cancel.set()

    server.expect_request("/down").respond_with_data("", status=503)
    http = HttpClient(
        server.url_for("/").rstrip("/"), options=FAST, sleep=sleep, cancel_event=cancel
    )
    with pytest.raises(SourceError):
        http.get("/down")
    assert waits and sum(1 for req, _ in server.log if req.path == "/down") == 1


# --------------------------------------------------------------------------- bodies


def test_malformed_json_is_a_clear_source_error(server, sleeps):
    server.expect_request("/bad").respond_with_data(
        '{"users": [1, 2', content_type="application/json"
    )
    server.expect_request("/html").respond_with_data(
        "<html>proxy error</html>", content_type="text/html"
    )
    with client(server, sleeps) as http:
        with pytest.raises(MalformedResponseError, match="malformed JSON") as err:
            http.get_json("/bad")
        assert err.value.status == 200 and err.value.url.endswith("/bad")
        with pytest.raises(MalformedResponseError, match="text/html"):
            list(http.paginate_links("/html"))


def test_unexpected_shape_is_malformed(server, sleeps):
    server.expect_request("/obj").respond_with_json({"not": "a list"})
    with client(server, sleeps) as http, pytest.raises(MalformedResponseError, match="list"):
        list(http.paginate_links("/obj"))


def test_size_limit_by_content_length_and_by_streaming(server, sleeps):
    big = b"[" + b"1," * 400_000 + b"1]"  # ~800 KB
    server.expect_request("/big").respond_with_data(big, content_type="application/json")

    def chunked(_req: Request) -> Response:
        def gen():
            yield b"["
            for _ in range(2000):
                yield b"1," * 500
            yield b"1]"

        return Response(gen(), content_type="application/json")  # no Content-Length

    server.expect_request("/stream").respond_with_handler(chunked)
    with client(server, sleeps, max_response_mb=0.5) as http:
        with pytest.raises(ResponseTooLargeError, match="limit"):
            http.get("/big")
        with pytest.raises(ResponseTooLargeError, match="reading stopped"):
            http.get("/stream")
    assert sleeps == []  # never retried


def test_allow_status_returns_the_answer(server, sleeps):
    server.expect_request("/prot").respond_with_json({"message": "Branch not protected"}, 404)
    with client(server, sleeps) as http:
        r = http.get("/prot", allow_status={404})
        assert r.status_code == 404 and r.json()["message"] == "Branch not protected"
        with pytest.raises(HTTPStatusError, match="Branch not protected"):
            http.get("/prot")


# --------------------------------------------------------------------------- safety


def test_http_only_for_loopback():
    assert check_url("http://127.0.0.1:8080/x")
    assert check_url("http://localhost:1")
    assert check_url("http://[::1]:1")
    assert check_url("https://acme.okta.com")
    for bad in ("http://acme.okta.com", "http://10.0.0.1", "ftp://127.0.0.1", "acme.okta.com"):
        with pytest.raises(InsecureURLError):
            check_url(bad)
    with pytest.raises(InsecureURLError, match="loopback"):
        HttpClient("http://api.github.com")


def test_absolute_url_on_other_origin_refused(server, sleeps):
    with client(server, sleeps) as http, pytest.raises(SourceError, match="not on"):
        http.get("https://example.com/api")
    assert len(server.log) == 0


def test_auth_header_sent_and_token_never_in_errors(server, sleeps):
    token = "00abcDEFghiJKLmnoPQRstuVWXyz0123456789"
    server.expect_request("/secure", headers={"Authorization": f"SSWS {token}"}).respond_with_json(
        {"errorSummary": f"Invalid token provided {token}"}, status=401
    )
    http = HttpClient(
        server.url_for("/").rstrip("/"),
        auth=token_auth("SSWS", token),
        options=FAST,
        sleep=sleeps,
    )
    with pytest.raises(HTTPStatusError) as err:
        http.get("/secure", params={"access_token": "qq-secret-qq", "limit": 2})
    assert err.value.status == 401
    assert token not in str(err.value)
    assert "qq-secret-qq" not in str(err.value) and "limit=2" in str(err.value)
    request, _ = server.log[0]
    assert request.headers["Authorization"] == f"SSWS {token}"
    assert request.headers["User-Agent"].startswith("annexa/")


def test_redact_url_strips_userinfo_and_secret_params():
    out = redact_url("https://u:pw@h.example/p?code=abc&sig=zz&page=2")
    assert "pw" not in out and "abc" not in out and "zz" not in out and "page=2" in out


def test_custom_ca_bundle_missing_file_is_clear():
    with pytest.raises(SourceError, match="CA bundle"):
        HttpClient("https://x.example", options=HttpOptions(ca_bundle="/nonexistent/ca.pem"))


def test_tls_is_verified_and_a_custom_ca_bundle_is_honoured(tmp_path, sleeps):
    """A TLS fake signed by a private CA: refused by default (not retried), accepted
    once the CA bundle is configured."""
    ca = trustme.CA()
    cert = ca.issue_cert("localhost", "127.0.0.1")
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(ctx)
    bundle = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    tls = HTTPServer(host="127.0.0.1", port=0, ssl_context=ctx)
    tls.no_handler_status_code = 418
    tls.expect_request("/api").respond_with_json({"ok": True})
    tls.start()
    try:
        base = tls.url_for("/").rstrip("/")
        assert base.startswith("https://")
        with HttpClient(base, options=FAST, sleep=sleeps) as http:
            with pytest.raises(TransportError, match="CERTIFICATE_VERIFY_FAILED"):
                http.get("/api")
        assert sleeps == []  # a certificate that does not verify is not retried
        trusted = FAST.model_copy(update={"ca_bundle": str(bundle)})
        with HttpClient(base, options=trusted, sleep=sleeps) as http:
            assert http.get_json("/api") == {"ok": True}
    finally:
        tls.clear()
        tls.stop()

"""Benchmark: API calls made per connector vs the minimum the API allows (issue 21, item 3).

    python benchmarks/calls.py [--connectors okta,github,entra,jira,servicenow,gcp]
                               [--users 450]

Each connector collects a planted estate served by its test fake (a real HTTP server on
127.0.0.1, real client, run engine of tests/harness.py). Every request the connector's
httpx client sends is observed at the transport (``httpx.HTTPTransport.handle_request``
wrapped to note method and URL, nothing else changed); Google Cloud's are taken from its
fake's request log. Token endpoints are left out. From the requests:

* **calls** — every request.
* **minimum** — what the same evidence needs at best:
  ``Σ listings ⌈pages * asked / max⌉ + distinct other reads``. A *listing* is a request
  carrying the API's page-size parameter (``limit``, ``per_page``, ``$top``,
  ``maxResults``, ``sysparm_limit``, ``pageSize``), grouped by path and its non-paging
  parameters; ``pages * asked`` bounds its items from above, ``max`` is the API's
  documented maximum page size (``MAX_PAGE`` below, with the source of each). Every
  other read is counted once: a per-resource read the API offers no bulk alternative
  for (the per-connector notes say which, ``NOTES``). A repeated read is not in the
  minimum.
* **ratio** — calls / minimum (1.00 = nothing to gain at the transport level).
* **repeats** — the same method + URL + parameters requested twice in one run, each
  named (a page cursor makes every page its own URL, so paging never counts as a
  repeat).
* **sub-max pages** — listings that asked for fewer than the maximum and needed more
  than one page.

Counts are exact; there is no timing here.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

#: Page-size parameter → the API's documented maximum, per connector.
MAX_PAGE: dict[str, dict[str, int]] = {
    # Okta management API: /api/v1/users limit ≤ 200; /api/v1/iam/assignees/users ≤ 100.
    "okta": {"limit": 200, "limit@/api/v1/iam/assignees/users": 100},
    # GitHub REST: per_page ≤ 100 on every list endpoint.
    "github": {"per_page": 100},
    # Microsoft Graph: $top ≤ 999 for /users (120 with signInActivity), ≤ 999 elsewhere.
    "entra": {"$top": 999},
    # Jira Cloud /rest/api/3/search/jql: maxResults ≤ 5000 for ids only, 100 with fields
    # and changelog (what the connector asks); changelog pages ≤ 100.
    "jira": {"maxResults": 100},
    # ServiceNow Table API: sysparm_limit has no hard cap (default 10000); the instance's
    # glide.json.return_limit bounds it. The connector's own option caps it at 200.
    "servicenow": {"sysparm_limit": 10_000},
    # Cloud Asset Inventory assets.list pageSize ≤ 1000; Cloud Storage buckets.list
    # maxResults ≤ 1000; Compute list maxResults ≤ 500.
    "gcp": {"pageSize": 1000, "maxResults": 500},
    # Jamf Pro API /api/v1/computers-inventory: page-size ≤ 2000.
    "jamf": {"page-size": 2000},
}
PAGE_PARAMS = ("limit", "per_page", "$top", "maxResults", "sysparm_limit", "pageSize",
               "page-size")
CURSOR_PARAMS = ("after", "page", "pageToken", "nextPageToken", "startAt",
                 "sysparm_offset", "$skiptoken", "cursor", "$skip")

NOTES: dict[str, str] = {
    "okta": "per user: GET /users/{id}/factors (no bulk factor listing); per admin: "
            "GET /users/{id}/roles (roles are per assignee)",
    "github": "per repository: protection / rulesets / collaborators / code scanning "
              "(no org-wide listing of these)",
    "entra": "per admin role: members; users with registration details in one listing",
    "jira": "per process: one JQL search; per issue: changelog pages beyond the first "
            "(the search returns the first 100 entries)",
    "servicenow": "per process: one table listing; per record: audit pages beyond the "
                  "first (sys_audit queried per record set)",
    "jamf": "one token, then the inventory listing (sections in the same call)",
    "gcp": "per project: the listings of each service; per bucket: its IAM policy "
           "(direct); bulk: one assets.list per content type and parent",
}


@dataclass
class Call:
    method: str
    path: str
    query: list[tuple[str, str]]

    @property
    def key(self) -> str:
        q = "&".join(f"{k}={v}" for k, v in sorted(self.query))
        return f"{self.method} {self.path}?{q}"


@dataclass
class Report:
    connector: str
    calls: int = 0
    minimum: int = 0
    repeats: list[tuple[str, int]] = field(default_factory=list)
    submax: list[str] = field(default_factory=list)
    listings: int = 0
    reads: int = 0
    evidence: int = 0


# -- observing the transport -----------------------------------------------------------

_seen: list[Call] = []
_lock = threading.Lock()


@contextmanager
def observed() -> Iterator[list[Call]]:
    """Note every request httpx sends while inside (method, path, query); no change."""
    original = httpx.HTTPTransport.handle_request

    def noting(self: httpx.HTTPTransport, request: httpx.Request) -> httpx.Response:
        url = urlsplit(str(request.url))
        with _lock:
            _seen.append(Call(request.method, url.path,
                              parse_qsl(url.query, keep_blank_values=True)))
        return original(self, request)

    _seen.clear()
    httpx.HTTPTransport.handle_request = noting  # type: ignore[method-assign]
    try:
        yield _seen
    finally:
        httpx.HTTPTransport.handle_request = original  # type: ignore[method-assign]


def _is_token(c: Call) -> bool:
    return c.path.endswith("/token") or "/oauth2/" in c.path or c.path.endswith("/oauth_token.do")


def analyse(name: str, calls: list[Call], evidence: int) -> Report:
    calls = [c for c in calls if not _is_token(c)]
    r = Report(name, calls=len(calls), evidence=evidence)
    counts = Counter(c.key for c in calls)
    r.repeats = sorted((k, n) for k, n in counts.items() if n > 1)
    maxes = MAX_PAGE[name]
    listings: dict[str, list[Call]] = {}
    others: set[str] = set()
    for c in calls:
        params = dict(c.query)
        size_param = next((p for p in PAGE_PARAMS if p in params), None)
        if size_param is None:
            others.add(c.key)
            continue
        group = c.method + " " + c.path + "?" + "&".join(
            f"{k}={v}" for k, v in sorted(c.query) if k not in CURSOR_PARAMS)
        listings.setdefault(group, []).append(c)
    for group, pages in listings.items():
        params = dict(pages[0].query)
        size_param = next(p for p in PAGE_PARAMS if p in params)
        asked = int(params[size_param] or 1)
        top = maxes.get(f"{size_param}@{pages[0].path}", maxes.get(size_param, asked))
        distinct = len({p.key for p in pages})
        need = max(1, math.ceil(distinct * asked / max(top, asked)))
        r.minimum += need
        r.listings += 1
        if asked < top and distinct > 1:
            r.submax.append(f"{group}: asked {asked} of {top}, {distinct} pages, {need} needed")
    r.minimum += len(others)
    r.reads = len(others)
    return r


# -- scenarios ---------------------------------------------------------------------------


def _server() -> Any:
    from pytest_httpserver import HTTPServer

    server = HTTPServer(host="127.0.0.1", port=0)
    server.no_handler_status_code = 418
    server.start()
    return server


def _run(connector: Any) -> int:
    from tests.harness import run_built

    result = run_built(connector)
    return len(result.evidence)


def _on_fake_server(name: str, t: Any, secret: dict[str, str],
                    plant: Callable[[Any], Any]) -> Report:
    """One run of a connector whose test module ``t`` fakes its API on a pytest-httpserver:
    ``secret`` and the test pseudonym key go in the environment, ``plant`` fills a fake on
    the server and returns the connector to run; only that run's calls are observed."""
    os.environ.update(secret)
    os.environ["ANNEXA_TEST_PSEUDONYM_KEY"] = t.KEY
    server = _server()
    try:
        conn = plant(server)
        with observed() as calls:
            n = _run(conn)
        return analyse(name, list(calls), n)
    finally:
        server.stop()


def okta(users: int) -> Report:
    from tests import test_okta as t

    def plant(server: Any) -> Any:
        fake = t.FakeOkta(server)
        t.healthy_org(fake)
        for i in range(users):
            fake.add_user(t.okta_user(f"00ub{i:05d}", f"user{i}@acme.example", last_login=2),
                          [t.factor("push")])
        return t.connector(fake, page_size=200, max_workers=4)  # the default

    return _on_fake_server("okta", t, {"ANNEXA_TEST_OKTA_TOKEN": t.TOKEN}, plant)


def github(users: int) -> Report:
    from tests import test_github as t

    def plant(server: Any) -> Any:
        fake = t.FakeGitHub(server)
        fake.page_cap = 100  # github.com's per_page maximum (the test fake caps at 2)
        t.healthy_org(fake)
        for i in range(users):
            fake.member(f"member{i:05d}")
        return t.connector(fake, max_workers=4)

    return _on_fake_server("github", t, {"ANNEXA_TEST_GITHUB_TOKEN": t.TOKEN}, plant)


def entra(users: int) -> Report:
    from tests import test_entra as t

    def plant(server: Any) -> Any:
        fake = t.FakeGraph(server)
        fake.page_cap = 999  # Graph's $top maximum for /users (the test fake caps at 2)
        t.healthy_tenant(fake)
        for i in range(users):
            fake.add_user(t.graph_user(f"u-b{i:05d}", f"user{i}@acme.example", last=2),
                          ["microsoftAuthenticatorPush"])
        conn, _ = t.connector(fake, page_size=999)  # the default
        return conn

    return _on_fake_server("entra", t, {"ANNEXA_TEST_ENTRA_SECRET": t.SECRET}, plant)


def jira(users: int) -> Report:
    from tests import test_jira as t

    os.environ["ANNEXA_TEST_JIRA_TOKEN"] = t.TOKEN
    with t.FakeJira() as fake:
        t.plant(fake)
        with observed() as calls:
            n = _run(t.connector(fake, page_size=100))  # the option's default
        return analyse("jira", list(calls), n)


def servicenow(users: int) -> Report:
    from tests import test_servicenow as t

    os.environ["ANNEXA_TEST_SN_PASSWORD"] = t.PASSWORD
    with t.FakeServiceNow() as fake:
        t.plant(fake)
        with observed() as calls:
            # The options' defaults (the test helper pages by 2 and 3).
            n = _run(t.connector(fake, page_size=100, audit_page_size=1000))
        return analyse("servicenow", list(calls), n)


def gcp(users: int, inventory: str = "direct") -> Report:
    from connectors.gcp import GcpConnector, GcpOptions
    from tests import gcp_fixtures as g

    with g.GcpFake(page_size=500, asset_page_size=1000) as fake:
        g.build_estate(fake, denied=False)
        opts = GcpOptions.model_validate({
            "resource_manager_transport": "rest", "resource_manager_endpoint": fake.url,
            "resource_manager_retry_timeout": 0, "endpoints": fake.endpoints(),
            "max_workers": 4, "inventory": inventory,
            "http": {"max_attempts": 2, "retry_min_wait": 0, "retry_max_wait": 0.01}})
        conn = GcpConnector("gcp-org", opts, credentials=g.StaticTokenCredentials())
        fake.requests.clear()
        n = _run(conn)
        calls = [Call(s.method, s.path, [(k, v) for k, vs in s.query.items() for v in vs])
                 for s in fake.requests if s.path != "/token"]
        r = analyse("gcp", calls, n)
        r.connector = f"gcp ({inventory})"
        return r


def jamf(users: int) -> Report:
    from tests import device_fakes as d
    from tests.harness import run_engine

    os.environ["ANNEXA_TEST_JAMF_PASSWORD"] = d.JAMF_PASSWORD
    now = datetime.now(UTC)
    computers = [d.jamf_computer(i, now) for i in range(max(users, 1) * 3)]
    with d.FakeJamf(len(computers), computers.__getitem__) as fake:
        with observed() as calls:
            # The connector's default page size (500); Jamf Pro allows 2000.
            result = run_engine("jamf", {
                "url": fake.url, "auth": "basic", "username": d.JAMF_USER,
                "password": {"env": "ANNEXA_TEST_JAMF_PASSWORD"},
                "http": {"max_attempts": 2, "retry_min_wait": 0, "retry_max_wait": 0.01}})
        return analyse("jamf", list(calls), len(result.evidence))


SCENARIOS: dict[str, Callable[[int], list[Report]]] = {
    "okta": lambda n: [okta(n)],
    "github": lambda n: [github(n)],
    "entra": lambda n: [entra(n)],
    "jira": lambda n: [jira(n)],
    "servicenow": lambda n: [servicenow(n)],
    "jamf": lambda n: [jamf(n)],
    "gcp": lambda n: [gcp(n), gcp(n, "asset_inventory")],
}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--connectors", default=",".join(SCENARIOS))
    ap.add_argument("--users", type=int, default=450,
                    help="extra users planted where the estate has a user listing")
    args = ap.parse_args(argv)
    import logging

    import structlog

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # the fakes' access log
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))
    reports: list[Report] = []
    for name in args.connectors.split(","):
        reports += SCENARIOS[name.strip()](args.users)
    print(f"{'connector':<24} {'evidence':>8} {'calls':>6} {'minimum':>8} {'ratio':>6} "
          f"{'listings':>8} {'reads':>6} {'repeats':>7}")
    for r in reports:
        print(f"{r.connector:<24} {r.evidence:>8} {r.calls:>6} {r.minimum:>8} "
              f"{r.calls / max(r.minimum, 1):>6.2f} {r.listings:>8} {r.reads:>6} "
              f"{sum(n - 1 for _, n in r.repeats):>7}")
    for r in reports:
        for k, n in r.repeats:
            print(f"  REPEATED {r.connector}: {n}x {k}")
        for s in r.submax:
            print(f"  SUB-MAX PAGE {r.connector}: {s}")
    print("\nminimum = Σ listings ⌈pages * asked / max⌉ + distinct other reads; per connector:")
    for name, note in NOTES.items():
        print(f"  {name}: {note}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

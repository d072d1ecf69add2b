"""Benchmark: the Okta and GitHub connectors against fake orgs of N users, 5 % throttled.

    python benchmarks/identity_users.py [--users 5000 50000] [--throttle 0.05]
                                        [--connectors okta,github] [--workers 8]

The parent process serves each fake org over HTTP on 127.0.0.1 (pages pre-rendered,
200 users a page, a seeded 5 % of all answers ``429 Retry-After: 0``) and runs every
(connector, N) collection in its own child process, so the peak RSS reported
(``ru_maxrss``) is the connector's alone. The child does what the run engine does with
the records — every evidence judged by the connector's checks — and keeps nothing.

Figures per run: users/s (users collected / wall-clock seconds), requests made vs the
minimum possible for that org (each page and each per-user call once; the difference is
the throttled answers retried), and peak RSS. Baseline in the same run: the smallest N;
the target is peak RSS at the largest N within 1.2x of it (memory flat as the org grows).

The fakes follow the real APIs' paging: Okta ``/api/v1/users`` with ``limit``/``after``
cursors in ``Link`` headers (deprovisioned users only with the status filter), one
``/factors`` call per user who can sign in; GitHub ``/orgs/{org}/members`` with page
numbers in ``Link`` headers (served 200 a page here as the brief asks; github.com
caps ``per_page`` at 100, which would double the member-listing requests).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import measure  # noqa: E402 - after the path fix

PAGE = 200
OKTA_TOKEN = "00BenchOktaToken_abcdefghijklmnopqrstuv"
GITHUB_TOKEN = "ghp_BenchToken0123456789abcdefghijklmnopq"
ORG = "bench"
TARGET_RSS_RATIO = 1.2


# --------------------------------------------------------------------------- fake orgs


class FakeOrg:
    """Pre-rendered answers: path+query → (status, headers, body)."""

    def __init__(self, throttle: float, seed: int = 27001) -> None:
        self.routes: dict[str, tuple[int, dict[str, str], bytes]] = {}
        self.prefix_routes: list[tuple[str, Callable[[str], bytes]]] = []
        self.throttle = throttle
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        self.requests = 0
        self.throttled = 0
        self.base = ""

    def json(self, key: str, body: Any, link: str | None = None) -> None:
        headers = {"Content-Type": "application/json"}
        if link:
            headers["Link"] = link
        self.routes[key] = (200, headers, json.dumps(body).encode())

    def answer(self, path_qs: str) -> tuple[int, dict[str, str], bytes]:
        with self.lock:
            self.requests += 1
            throttled = self.rng.random() < self.throttle
            if throttled:
                self.throttled += 1
        if throttled:
            body = b'{"errorCode":"E0000047","message":"API rate limit exceeded"}'
            return 429, {"Retry-After": "0", "Content-Type": "application/json"}, body
        if path_qs in self.routes:
            return self.routes[path_qs]
        path = path_qs.split("?", 1)[0]
        for prefix, render in self.prefix_routes:
            if path.startswith(prefix):
                return 200, {"Content-Type": "application/json"}, render(path)
        return 418, {"Content-Type": "application/json"}, b'{"message":"not faked"}'


def _qs(path_qs: str) -> str:
    """Canonical form of a request target: path + sorted query (httpx may reorder)."""
    parts = urlsplit(path_qs)
    query = sorted((k, v[0]) for k, v in parse_qs(parts.query, keep_blank_values=True).items())
    return parts.path + ("?" + "&".join(f"{k}={v}" for k, v in query) if query else "")


def okta_org(n: int, throttle: float) -> tuple[FakeOrg, int]:
    """N users (1 % deprovisioned, 1 % suspended), 3 admins; returns (org, minimum)."""
    org = FakeOrg(throttle)
    users = []
    for i in range(n):
        status = "DEPROVISIONED" if i % 100 == 7 else "SUSPENDED" if i % 100 == 13 else "ACTIVE"
        uid = f"00u{i:08d}"
        users.append(
            {
                "id": uid,
                "status": status,
                "created": "2024-01-01T00:00:00.000Z",
                "activated": "2024-01-02T00:00:00.000Z",
                "statusChanged": "2024-06-01T00:00:00.000Z",
                "lastLogin": "2026-11-20T08:00:00.000Z",
                "lastUpdated": "2026-11-20T08:00:00.000Z",
                "passwordChanged": "2026-06-01T00:00:00.000Z",
                "type": {"id": "otyfnjfba4ye7pgjB0g4"},
                "profile": {
                    "firstName": f"User{i}",
                    "lastName": "Bench",
                    "mobilePhone": None,
                    "secondEmail": None,
                    "login": f"user{i}@bench.example",
                    "email": f"user{i}@bench.example",
                },
                "credentials": {"password": {}, "provider": {"type": "OKTA", "name": "OKTA"}},
                "_links": {"self": {"href": f"https://bench.okta.com/api/v1/users/{uid}"}},
            }
        )
    minimum = 0

    def listing(key_args: dict[str, str], items: list[dict[str, Any]]) -> int:
        pages = [items[i : i + PAGE] for i in range(0, len(items), PAGE)] or [[]]
        path = "/api/v1/users"
        for p, chunk in enumerate(pages):
            args = dict(key_args, limit=str(PAGE))
            if p:
                args["after"] = pages[p - 1][-1]["id"]
            key = _qs(path + "?" + "&".join(f"{k}={v}" for k, v in args.items()))
            link = None
            if p + 1 < len(pages):
                nxt = dict(key_args, limit=str(PAGE), after=chunk[-1]["id"])
                link = f'<{{base}}{path}?{urlencode(nxt)}>; rel="next"'
            org.routes[key] = (200, {"Content-Type": "application/json", "_link": link or ""},
                               json.dumps(chunk).encode())  # fmt: skip
        return len(pages)

    live = [u for u in users if u["status"] != "DEPROVISIONED"]
    gone = [u for u in users if u["status"] == "DEPROVISIONED"]
    minimum += listing({}, live)
    minimum += listing({"filter": 'status eq "DEPROVISIONED"'}, gone)
    factors = json.dumps(
        [{"id": "uf1", "factorType": "push", "provider": "OKTA", "status": "ACTIVE"}]
    ).encode()
    org.prefix_routes.append(("/api/v1/users/", lambda path: factors))
    minimum += sum(1 for u in live if u["status"] == "ACTIVE")  # factors of sign-in users
    admins = [users[0]["id"], users[1]["id"], users[2]["id"]]
    org.json(
        "/api/v1/iam/assignees/users?limit=100",
        {"value": [{"id": a} for a in admins], "_links": {}},
    )
    for a in admins:
        org.json(f"/api/v1/users/{a}/roles", [{"type": "ORG_ADMIN", "status": "ACTIVE"}])
        org.json(f"/api/v1/users/{a}", users[int(a[3:])])
    minimum += 1 + 2 * len(admins)
    org.json("/api/v1/api-tokens", [])
    minimum += 1
    for kind in ("OKTA_SIGN_ON", "ACCESS_POLICY", "PASSWORD"):
        org.json(_qs(f"/api/v1/policies?type={kind}"), [])
        minimum += 1
    return org, minimum


def github_org(n: int, throttle: float) -> tuple[FakeOrg, int]:
    """N members (3 owners, 5 % without 2FA); returns (org, minimum)."""
    org = FakeOrg(throttle)
    members = [
        {
            "login": f"dev{i:06d}",
            "id": 1000 + i,
            "node_id": f"MDQ6VXNlcj{1000 + i}",
            "avatar_url": f"https://avatars.githubusercontent.com/u/{1000 + i}?v=4",
            "url": f"https://api.github.com/users/dev{i:06d}",
            "html_url": f"https://github.com/dev{i:06d}",
            "type": "User",
            "site_admin": False,
        }
        for i in range(n)
    ]
    minimum = 0

    def listing(path: str, extra: dict[str, str], items: list[dict[str, Any]]) -> int:
        pages = [items[i : i + PAGE] for i in range(0, len(items), PAGE)] or [[]]
        for p, chunk in enumerate(pages, start=1):
            args = dict(extra, per_page="100")
            if p > 1:
                args["page"] = str(p)
            key = _qs(path + "?" + "&".join(f"{k}={v}" for k, v in args.items()))
            link = None
            if p < len(pages):
                nxt = urlencode(dict(extra, per_page="100", page=str(p + 1)))
                link = f'<{{base}}{path}?{nxt}>; rel="next"'
            org.routes[key] = (200, {"Content-Type": "application/json", "_link": link or ""},
                               json.dumps(chunk).encode())  # fmt: skip
        return len(pages)

    base = f"/orgs/{ORG}"
    org.json(
        base,
        {
            "login": ORG,
            "id": 1,
            "two_factor_requirement_enabled": True,
            "default_repository_permission": "read",
            "members_can_create_public_repositories": False,
        },
    )
    minimum += 1
    owners = members[:3]
    no_2fa = [m for i, m in enumerate(members) if i % 20 == 5]
    minimum += 2 * listing(f"{base}/members", {"role": "admin"}, owners)  # org + member units
    minimum += listing(f"{base}/members", {"filter": "2fa_disabled"}, no_2fa)
    minimum += listing(f"{base}/members", {"filter": "2fa_insecure"}, [])
    minimum += listing(f"{base}/members", {}, members)
    minimum += listing(f"{base}/outside_collaborators", {"filter": "2fa_disabled"}, [])
    minimum += listing(f"{base}/outside_collaborators", {"filter": "2fa_insecure"}, [])
    minimum += listing(f"{base}/outside_collaborators", {}, [])
    minimum += listing(f"{base}/repos", {"type": "all"}, [])
    org.json(_qs(f"{base}/dependabot/alerts?state=open&per_page=100"), [])
    org.json(_qs(f"{base}/code-scanning/alerts?state=open&per_page=100"), [])
    org.json(_qs(f"{base}/secret-scanning/alerts?state=open&per_page=100"), [])
    minimum += 3
    return org, minimum


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the real APIs
    disable_nagle_algorithm = True  # headers and body are two writes: no 40 ms stalls
    server: Any

    def log_message(self, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        org: FakeOrg = self.server.fake
        status, route_headers, body = org.answer(_qs(self.path))
        # "_link" is the route's Link header with the fake's base URL left as "{base}".
        headers = {k: v for k, v in route_headers.items() if k != "_link"}
        if route_headers.get("_link"):
            headers["Link"] = route_headers["_link"].replace("{base}", org.base)
        measure.send(self, status, headers, body)


# --------------------------------------------------------------------------- child


def child(args: argparse.Namespace) -> dict[str, Any]:
    kind, url, workers = args.child, args.url, args.workers
    http = measure.child_http(timeout=30)
    if kind == "okta":
        from connectors.okta import OktaConnector, OktaOptions

        conn: Any = OktaConnector(
            "bench-okta",
            OktaOptions(
                org_url=url,
                api_token=measure.env_secret("BENCH_OKTA_TOKEN", OKTA_TOKEN),
                page_size=PAGE,
                max_workers=workers,
                http=http,
            ),
        )
        user_type = "okta.user.account"
    else:
        from connectors.github import GitHubConnector, GitHubOptions

        token = measure.env_secret("BENCH_GITHUB_TOKEN", GITHUB_TOKEN)
        conn = GitHubConnector(
            "bench-github",
            GitHubOptions(organization=ORG, api_url=url, token=token, http=http),
        )
        user_type = "github.member.account"
    return measure.tally_stream(conn, "users", {user_type})


# --------------------------------------------------------------------------- parent


def run_one(args: argparse.Namespace, kind: str, n: int) -> dict[str, Any]:
    org, minimum = (okta_org if kind == "okta" else github_org)(n, args.throttle)
    return measure.run_served(__file__, _Handler, org, minimum, kind, n, "--workers",
                              str(args.workers))


def main() -> None:
    ap = measure.stream_parser(__doc__, "users", [5000, 50000], ["okta", "github"])
    ap.add_argument("--throttle", type=float, default=0.05)
    ap.add_argument("--workers", type=int, default=8, help="Okta concurrent factor reads")
    measure.stream_main(ap, "users", TARGET_RSS_RATIO, child, run_one)

if __name__ == "__main__":
    main()

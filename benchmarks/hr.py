"""Benchmark: the BambooHR and SCIM HR connectors against fake companies of N employees.

    python benchmarks/hr.py [--employees 10000 100000] [--throttle 0.05]
                            [--connectors bamboohr,scim] [--page 500]

The parent process serves each fake company over HTTP on 127.0.0.1 (answers pre-rendered,
a seeded share of all answers ``429 Retry-After: 0``) and runs every (connector, N)
collection in its own child process, so the peak RSS reported (``VmHWM``) is the
connector's alone. The child does what the run engine does with the records — every
evidence judged by the connector's checks — and keeps nothing.

The fakes follow the real APIs: BambooHR answers ``GET …/v1/employees/directory`` and
``POST …/v1/reports/custom?format=JSON&onlyCurrent=false`` each with *one* document of
every employee (BambooHR does not page them), so the connector spools each body to a
temporary file and streams it back item by item (minimum: 2 requests at any size);
SCIM pages ``/Users`` by ``startIndex``/``count`` (minimum: ceil(N / page) requests).

Figures per run: employees/s (records collected / wall-clock seconds), requests made vs
the minimum (the difference is the throttled answers retried), peak RSS. Baseline in
the same run: the smallest N; target: peak RSS at the largest N within 1.2x of it.

Measured on the project machine (2 cores, shared with 7 other jobs), 2026-12-05,
default arguments (5 % throttled, SCIM 500 a page)::

    connector employees  seconds   empl/s  requests  minimum  ratio  429s  peak RSS MB  vs base
    bamboohr      10000     1.96     5089         2        2  1.000     0         53.6    1.00x
    bamboohr     100000    11.44     8739         2        2  1.000     0         56.3    1.05x
    scim          10000     2.24     4456        21       20  1.050     1         51.6    1.00x
    scim         100000    19.83     5044       207      200  1.035     7         51.9    1.01x

Every extra request is a throttled answer retried. BambooHR's directory ids are held
as a sorted integer array (0.8 MB at 100,000); before that, as a set of strings, peak
RSS grew 1.18x.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import threading
from datetime import date, timedelta
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import measure  # noqa: E402 - after the path fix

API_KEY = "bench-bamboohr-key-0123456789abcdef0123"
SCIM_TOKEN = "bench-scim-token-0123456789abcdef"
COMPANY = "bench"
TARGET_RSS_RATIO = 1.2
BG, CONTRACT, NDA = "customBackgroundCheckDate", "customContractSigned", "customNDASigned"
ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
HR_EXT = "urn:annexa:params:scim:schemas:extension:hr:2.0:User"


# --------------------------------------------------------------------------- fake companies


class FakeCompany:
    """Pre-rendered answers: (method, path+sorted query) → body; seeded throttling."""

    def __init__(self, throttle: float, seed: int = 27001) -> None:
        self.routes: dict[tuple[str, str], bytes] = {}
        self.throttle = throttle
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        self.requests = 0
        self.throttled = 0
        self.base = ""

    def answer(self, method: str, path_qs: str) -> tuple[int, dict[str, str], bytes]:
        with self.lock:
            self.requests += 1
            throttled = self.rng.random() < self.throttle
            self.throttled += throttled
        if throttled:
            return 429, {"Retry-After": "0"}, b""
        body = self.routes.get((method, _qs(path_qs)))
        if body is None:
            return 418, {"Content-Type": "application/json"}, b'{"message":"not faked"}'
        return 200, {"Content-Type": "application/json"}, body


def _qs(path_qs: str) -> str:
    parts = urlsplit(path_qs)
    query = sorted((k, v[0]) for k, v in parse_qs(parts.query, keep_blank_values=True).items())
    return parts.path + ("?" + "&".join(f"{k}={v}" for k, v in query) if query else "")


def _person(i: int) -> dict[str, Any]:
    """Employee i: a spread of hire dates, a few leavers and late records."""
    hire = date(2015, 1, 5) + timedelta(days=i % 3650)
    left = hire + timedelta(days=400) if i % 10 == 0 else None
    return {
        "id": str(1000 + i),
        "email": f"person{i}@bench.example",
        "name": f"Person {i}",
        "hire": hire.isoformat(),
        "left": left.isoformat() if left else None,
        "bg": (hire - timedelta(days=14 if i % 50 else -3)).isoformat(),
        "contract": (hire - timedelta(days=30)).isoformat(),
        "nda": (hire - timedelta(days=30 if i % 70 else -1)).isoformat(),
        "department": ("Engineering", "Sales", "Finance", "Support")[i % 4],
    }


def bamboohr_company(n: int, throttle: float) -> tuple[FakeCompany, int]:
    c = FakeCompany(throttle)
    people = [_person(i) for i in range(n)]
    directory = {
        "fields": [{"id": "displayName", "type": "text", "name": "Display name"},
                   {"id": "workEmail", "type": "email", "name": "Work Email"}],
        "employees": [{"id": p["id"], "displayName": p["name"], "workEmail": p["email"],
                       "department": p["department"], "supervisor": "Boss, Big"}
                      for p in people if not p["left"]],
    }  # fmt: skip
    report = {
        "title": "Annexa HR evidence",
        "fields": [],
        "employees": [
            {"id": p["id"], "employeeNumber": f"E{p['id']}", "displayName": p["name"],
             "workEmail": p["email"], "status": "Inactive" if p["left"] else "Active",
             "employmentHistoryStatus": "Terminated" if p["left"] else "Full-Time",
             "hireDate": p["hire"], "terminationDate": p["left"] or "0000-00-00",
             "department": p["department"], "supervisor": "Boss, Big", "supervisorEId": "1",
             BG: p["bg"], CONTRACT: p["contract"], NDA: p["nda"]}
            for p in people
        ],
    }  # fmt: skip
    base = f"/api/gateway.php/{COMPANY}/v1"
    c.routes[("GET", f"{base}/employees/directory")] = json.dumps(directory).encode()
    c.routes[("POST", f"{base}/reports/custom?format=JSON&onlyCurrent=false")] = json.dumps(
        report
    ).encode()
    return c, 2


def scim_company(n: int, throttle: float, page: int) -> tuple[FakeCompany, int]:
    c = FakeCompany(throttle)
    pages = math.ceil(n / page)
    for k in range(pages):
        start = 1 + k * page
        users = []
        for i in range(start - 1, min(n, start - 1 + page)):
            p = _person(i)
            users.append({
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", ENTERPRISE, HR_EXT],
                "id": f"u{i}", "userName": p["email"], "displayName": p["name"],
                "active": not p["left"],
                "emails": [{"value": p["email"], "type": "work", "primary": True}],
                ENTERPRISE: {"employeeNumber": p["id"], "department": p["department"],
                             "manager": {"value": "boss", "displayName": "Big Boss"}},
                HR_EXT: {"hireDate": p["hire"], "backgroundCheckDate": p["bg"],
                         "contractSignedDate": p["contract"], "ndaSignedDate": p["nda"],
                         **({"terminationDate": p["left"]} if p["left"] else {})},
            })  # fmt: skip
        body = {
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:ListResponse"],
            "totalResults": n,
            "itemsPerPage": len(users),
            "startIndex": start,
            "Resources": users,
        }
        c.routes[("GET", f"/scim/v2/Users?count={page}&startIndex={start}")] = json.dumps(
            body
        ).encode()
    return c, pages


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server: Any

    def log_message(self, *args: Any) -> None:
        pass

    def _answer(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        measure.send(self, *self.server.fake.answer(method, self.path))

    def do_GET(self) -> None:
        self._answer("GET")

    def do_POST(self) -> None:
        self._answer("POST")


# --------------------------------------------------------------------------- child


def child(args: argparse.Namespace) -> dict[str, Any]:
    kind, url, page = args.child, args.url, args.page
    http = measure.child_http(timeout=60)
    if kind == "bamboohr":
        from connectors.bamboohr import BambooHRConnector, BambooHROptions

        conn: Any = BambooHRConnector(
            "bench-bamboohr",
            BambooHROptions(
                company_domain=COMPANY,
                api_key=measure.env_secret("BENCH_BAMBOOHR_KEY", API_KEY),
                api_url=url,
                background_check_field=BG,
                contract_signed_field=CONTRACT,
                nda_signed_field=NDA,
                http=http,
            ),
        )
    else:
        from connectors.hr import HrConnector, HrOptions

        conn = HrConnector(
            "bench-scim",
            HrOptions(
                source="scim",
                scim_url=f"{url}/scim/v2",
                token=measure.env_secret("BENCH_SCIM_TOKEN", SCIM_TOKEN),
                page_size=page,
                http=http,
            ),
        )
    return measure.tally_stream(conn, "people")


# --------------------------------------------------------------------------- parent


def run_one(args: argparse.Namespace, kind: str, n: int) -> dict[str, Any]:
    if kind == "bamboohr":
        company, minimum = bamboohr_company(n, args.throttle)
    else:
        company, minimum = scim_company(n, args.throttle, args.page)
    return measure.run_served(__file__, _Handler, company, minimum, kind, n, "--page",
                              str(args.page))


def main() -> None:
    ap = measure.stream_parser(__doc__, "employees", [10_000, 100_000], ["bamboohr", "scim"])
    ap.add_argument("--throttle", type=float, default=0.05)
    ap.add_argument("--page", type=int, default=500, help="SCIM users per page (count)")
    measure.stream_main(ap, "people", TARGET_RSS_RATIO, child, run_one)

if __name__ == "__main__":
    main()

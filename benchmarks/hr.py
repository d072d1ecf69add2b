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
import logging
import math
import os
import random
import subprocess
import sys
import threading
import time
from datetime import date, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.measure import peak_rss_mb  # noqa: E402 - after the path fix

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
        status, headers, body = self.server.company.answer(method, self.path)
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        self._answer("GET")

    def do_POST(self) -> None:
        self._answer("POST")


def serve(company: FakeCompany) -> ThreadingHTTPServer:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    server.company = company  # type: ignore[attr-defined]
    company.base = f"http://127.0.0.1:{server.server_address[1]}"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


# --------------------------------------------------------------------------- child


def child(kind: str, url: str, page: int) -> dict[str, Any]:
    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))
    from connectors.http import HttpOptions
    from core.checks import evaluate
    from core.connector import CollectContext
    from core.records import Coverage, Evidence

    http = HttpOptions(max_attempts=10, retry_min_wait=0.0, retry_max_wait=0.05, timeout=60)
    if kind == "bamboohr":
        from connectors.bamboohr import BambooHRConnector, BambooHROptions

        os.environ["BENCH_BAMBOOHR_KEY"] = API_KEY
        conn: Any = BambooHRConnector(
            "bench-bamboohr",
            BambooHROptions(
                company_domain=COMPANY,
                api_key={"env": "BENCH_BAMBOOHR_KEY"},
                api_url=url,
                background_check_field=BG,
                contract_signed_field=CONTRACT,
                nda_signed_field=NDA,
                http=http,
            ),
        )
    else:
        from connectors.hr import HrConnector, HrOptions

        os.environ["BENCH_SCIM_TOKEN"] = SCIM_TOKEN
        conn = HrConnector(
            "bench-scim",
            HrOptions(
                source="scim",
                scim_url=f"{url}/scim/v2",
                token={"env": "BENCH_SCIM_TOKEN"},
                page_size=page,
                http=http,
            ),
        )
    specs: dict[str, list[Any]] = {}
    for s in conn.checks():
        specs.setdefault(s.resource_type, []).append(s)
    params = {s.id: s.parameters for s in conn.checks()}
    before = peak_rss_mb()
    people = findings = failing = 0
    failed_units = []
    started = time.perf_counter()
    for rec in conn.collect(CollectContext(run_id="bench")):
        if isinstance(rec, Evidence):
            people += 1
            for f in evaluate(rec, specs.get(rec.resource_type, ()), params):
                findings += 1
                failing += f.status == "fail"
        elif isinstance(rec, Coverage) and not rec.ok:
            failed_units.append(f"{rec.unit}: {rec.error}")
    seconds = time.perf_counter() - started
    return {
        "people": people,
        "findings": findings,
        "failing": failing,
        "seconds": seconds,
        "rss_before_mb": before,
        "peak_rss_mb": peak_rss_mb(),
        "failed_units": failed_units,
    }


# --------------------------------------------------------------------------- parent


def run_one(kind: str, n: int, throttle: float, page: int) -> dict[str, Any]:
    if kind == "bamboohr":
        company, minimum = bamboohr_company(n, throttle)
    else:
        company, minimum = scim_company(n, throttle, page)
    server = serve(company)
    cmd = [sys.executable, __file__, "--child", kind, "--url", company.base, "--page", str(page)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=3600, check=False)
    finally:
        server.shutdown()
        server.server_close()
    if proc.returncode != 0:
        raise SystemExit(f"{kind} N={n} child failed:\n{proc.stderr[-3000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result.update(
        connector=kind,
        n=n,
        requests=company.requests,
        throttled=company.throttled,
        minimum_requests=minimum,
    )
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--employees", type=int, nargs="+", default=[10_000, 100_000])
    ap.add_argument("--throttle", type=float, default=0.05)
    ap.add_argument("--connectors", default="bamboohr,scim")
    ap.add_argument("--page", type=int, default=500, help="SCIM users per page (count)")
    ap.add_argument("--child", choices=["bamboohr", "scim"])
    ap.add_argument("--url")
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.url, args.page)))
        return
    sizes = sorted(args.employees)
    print(
        f"{'connector':<9} {'employees':>9} {'seconds':>8} {'empl/s':>8} {'requests':>9} "
        f"{'minimum':>8} {'ratio':>6} {'429s':>5} {'peak RSS MB':>12} {'vs base':>8}"
    )
    ok = True
    for kind in args.connectors.split(","):
        base_rss = None
        growth = 1.0
        for n in sizes:
            r = run_one(kind, n, args.throttle, args.page)
            base_rss = base_rss or r["peak_rss_mb"]
            growth = r["peak_rss_mb"] / base_rss
            print(
                f"{kind:<9} {r['people']:>9} {r['seconds']:>8.2f} "
                f"{r['people'] / r['seconds']:>8.0f} {r['requests']:>9} "
                f"{r['minimum_requests']:>8} {r['requests'] / r['minimum_requests']:>6.3f} "
                f"{r['throttled']:>5} {r['peak_rss_mb']:>12.1f} {growth:>7.2f}x",
                flush=True,
            )
            if r["failed_units"]:
                ok = False
                print(f"  failed units: {r['failed_units']}")
            if r["people"] != n:
                ok = False
                print(f"  expected {n} employees, collected {r['people']}")
            if r["requests"] - r["throttled"] != r["minimum_requests"]:
                ok = False
                print("  successful requests differ from the minimum: over- or under-fetching")
        if growth > TARGET_RSS_RATIO:
            ok = False
            print(f"  peak RSS grew {growth:.2f}x from {sizes[0]} to {sizes[-1]} employees "
                  f"(target <= {TARGET_RSS_RATIO}x)")  # fmt: skip
    print("all targets met" if ok else "SOME TARGETS MISSED")
    if not ok:
        sys.exit(1)


if __name__ == "__main__":
    main()

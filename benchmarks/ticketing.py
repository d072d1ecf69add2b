"""Benchmark: the Jira and ServiceNow connectors over large populations.

    python benchmarks/ticketing.py [--sizes 10000 100000] [--sources jira,servicenow]
                                   [--history 50] [--inline-cap 40] [--json FILE]

A fast local fake of each source (its own child process: ``http.server`` with HTTP/1.1
keep-alive, pages generated on the fly from the item index, nothing held in memory)
serves N items:

* **Jira Cloud**: ``/rest/api/3/search/jql`` pages of 100 issues with ``expand=changelog``
  (``nextPageToken``/``isLast``); every issue has ``--history`` changelog entries (3
  status transitions, the rest untracked field edits), of which only the ``--inline-cap``
  most recent are embedded (Jira Cloud embeds 40 to 100), so each issue needs one
  ``/rest/api/3/issue/{key}/changelog`` page when history > cap.
* **ServiceNow**: ``/api/now/table/change_request`` pages of 100 records
  (``sysparm_display_value=all``), ``sys_audit`` rows (8 per record) and
  ``sysapproval_approver`` rows (1 per record) fetched per page with ``…IN`` queries.

For each source and N, two scenarios run in their own child process, so the peak RSS
(``ru_maxrss``) belongs to that scenario alone:

``baseline``   the same HTTP requests with a bare ``httpx.Client`` and ``json.loads``
               (the cost of fetching and parsing, with no connector logic)
``connector``  ``Connector.collect()`` streamed as the run engine consumes it: every
               evidence is normalised and hashed (``content_hash``) and evaluated by its
               checks; nothing is written to a database (the store has its own benchmark)

Reported: items/s, requests per item (counted by the fake), peak RSS, and the ratios
connector/baseline throughput and RSS(largest N)/RSS(smallest N) ("flat" ≤ 1.25).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.measure import peak_rss_mb, send  # noqa: E402 - after the path fix

BASE = datetime(2025, 1, 1, tzinfo=UTC)
TARGET_RSS_GROWTH = 1.25
TOKEN = "bench-token-0123456789abcdef"




# --------------------------------------------------------------------------- fake Jira


def _jts(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%S.000+0000")


def _user(name: str) -> str:
    return (
        f'{{"accountId":"acc-{name}","displayName":"{name.title()}","active":true,'
        f'"timeZone":"UTC","avatarUrls":{{"48x48":"https://a.example/{name}.png"}}}}'
    )


_STATUS_AT = {
    5: ("To Do", "10000", "Approved", "10001", "carol"),
    20: ("Approved", "10001", "In Progress", "10002", "bob"),
    45: ("In Progress", "10002", "Done", "10003", "bob"),
}


def jira_history(i: int, j: int) -> str:
    at = _jts(BASE + timedelta(minutes=i) + timedelta(hours=j))
    if j in _STATUS_AT:
        frm, fid, to, tid, who = _STATUS_AT[j]
        item = (
            f'{{"field":"status","fieldtype":"jira","fieldId":"status","from":"{fid}",'
            f'"fromString":"{frm}","to":"{tid}","toString":"{to}"}}'
        )
    else:
        who = "automation"
        item = (
            '{"field":"description","fieldtype":"jira","fieldId":"description","from":null,'
            f'"fromString":"revision {j}","to":null,"toString":"revision {j + 1}"}}'
        )
    return f'{{"id":"{i * 100 + j}","author":{_user(who)},"created":"{at}","items":[{item}]}}'


def jira_issue(i: int, history: int, cap: int) -> str:
    first = max(0, history - cap)
    hs = ",".join(jira_history(i, j) for j in range(first, history))
    created = _jts(BASE + timedelta(minutes=i))
    done = _jts(BASE + timedelta(minutes=i) + timedelta(hours=45))
    return (
        f'{{"expand":"changelog","id":"{10000 + i}","self":"https://jira.example/rest/api/3/'
        f'issue/{10000 + i}","key":"CHG-{i}","fields":{{"summary":"Change number {i}",'
        '"status":{"name":"Done","id":"10003","statusCategory":{"key":"done"}},'
        '"issuetype":{"name":"Change","id":"10005","subtask":false},'
        f'"created":"{created}","updated":"{_jts(datetime.now(UTC))}",'
        f'"resolutiondate":"{done}","resolution":{{"name":"Done","id":"1"}},'
        f'"reporter":{_user("alice")},"assignee":{_user("bob")},"labels":["prod"],'
        '"issuelinks":[],"priority":{"name":"Medium","id":"3"},'
        '"watches":{"watchCount":2,"isWatching":false}},'
        f'"changelog":{{"startAt":0,"maxResults":{history - first},"total":{history},'
        f'"histories":[{hs}]}}}}'
    )


# --------------------------------------------------------------------------- fake ServiceNow


def _pair(value: str, display: str | None = None) -> str:
    d = value if display is None else display
    return f'{{"display_value":"{d}","value":"{value}"}}'


def _sn_time(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%d %H:%M:%S")


def sn_record(i: int) -> str:
    t = BASE + timedelta(minutes=i)
    return (
        f'{{"sys_id":{_pair(f"{i:032x}")},"number":{_pair(f"CHG{i:07d}")},'
        f'"short_description":{_pair(f"Change number {i}")},"state":{_pair("3", "Closed")},'
        f'"approval":{_pair("approved", "Approved")},"priority":{_pair("4", "4 - Low")},'
        f'"sys_created_on":{_pair(_sn_time(t))},"opened_at":{_pair(_sn_time(t))},'
        f'"resolved_at":{_pair("")},"closed_at":{_pair(_sn_time(t + timedelta(hours=30)))},'
        f'"opened_by":{_pair("u1", "Alice Smith")},"opened_by.user_name":{_pair("alice")},'
        f'"requested_by":{_pair("u1", "Alice Smith")},"requested_by.user_name":{_pair("alice")},'
        f'"assigned_to":{_pair("u2", "Bob Smith")},"assigned_to.user_name":{_pair("bob")},'
        f'"type":{_pair("normal", "Normal")}}}'
    )


_SN_AUDIT = [  # (hours after creation, user, field, old, new)
    (0, "alice", "state", "", "-5"),
    (0, "alice", "approval", "", "not requested"),
    (1, "alice", "state", "-5", "-3"),
    (1, "alice", "approval", "not requested", "requested"),
    (5, "system", "approval", "requested", "approved"),
    (5, "system", "state", "-3", "-2"),
    (20, "bob", "state", "-2", "-1"),
    (30, "bob", "state", "-1", "3"),
]


def sn_audit(i: int) -> list[str]:
    t = BASE + timedelta(minutes=i)
    return [
        f'{{"documentkey":"{i:032x}","fieldname":"{f}","oldvalue":"{o}","newvalue":"{n}",'
        f'"user":"{u}","sys_created_on":"{_sn_time(t + timedelta(hours=h))}"}}'
        for h, u, f, o, n in _SN_AUDIT
    ]


def sn_approval(i: int) -> str:
    t = BASE + timedelta(minutes=i) + timedelta(hours=5)
    return (
        f'{{"sysapproval":{_pair(f"{i:032x}", f"CHG{i:07d}")},"approver":'
        f'{_pair("u3", "Carol Smith")},"approver.user_name":{_pair("carol")},'
        f'"state":{_pair("approved", "Approved")},"sys_updated_on":{_pair(_sn_time(t))}}}'
    )


SN_CHOICES = [
    ("-5", "New"),
    ("-3", "Authorize"),
    ("-2", "Scheduled"),
    ("-1", "Implement"),
    ("0", "Review"),
    ("3", "Closed"),
]


# --------------------------------------------------------------------------- server


class FakeHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    size = 0
    history = 50
    cap = 40
    requests = 0

    def log_message(self, *args: Any) -> None:  # quiet
        pass

    def setup(self) -> None:
        super().setup()
        # Headers and body are separate writes: without this, Nagle + delayed ACK add
        # ~40 ms to every keep-alive response and the benchmark measures TCP, not code.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _send(self, body: str, status: int = 200) -> None:
        send(self, status, {"Content-Type": "application/json"}, body.encode())

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        q = {k: v[0] for k, v in parse_qs(parts.query).items()}
        path = parts.path
        if path == "/__stats":
            self._send(json.dumps({"requests": FakeHandler.requests}))
            return
        FakeHandler.requests += 1
        n = FakeHandler.size
        if path == "/rest/api/3/search/jql":
            start = int(q.get("nextPageToken", "0"))
            size = min(int(q.get("maxResults", 50)), 100)
            end = min(n, start + size)
            issues = ",".join(jira_issue(i, self.history, self.cap) for i in range(start, end))
            tail = '"isLast":true' if end >= n else f'"isLast":false,"nextPageToken":"{end}"'
            self._send(f'{{"issues":[{issues}],{tail}}}')
        elif path.startswith("/rest/api/3/issue/") and path.endswith("/changelog"):
            i = int(path.split("/")[5].split("-")[1])
            start = int(q.get("startAt", 0))
            size = min(int(q.get("maxResults", 50)), 100)
            end = min(self.history, start + size)
            values = ",".join(jira_history(i, j) for j in range(start, end))
            self._send(
                f'{{"maxResults":{size},"startAt":{start},"total":{self.history},'
                f'"isLast":{"true" if end >= self.history else "false"},"values":[{values}]}}'
            )
        elif path == "/api/now/table/change_request":
            offset, limit = int(q.get("sysparm_offset", 0)), int(q.get("sysparm_limit", 100))
            rows = ",".join(sn_record(i) for i in range(offset, min(n, offset + limit)))
            self._send(f'{{"result":[{rows}]}}')
        elif path in ("/api/now/table/sys_audit", "/api/now/table/sysapproval_approver"):
            query = q.get("sysparm_query", "")
            marker = "documentkeyIN" if path.endswith("sys_audit") else "sysapprovalIN"
            ids = query.split(marker, 1)[1].split("^", 1)[0].split(",")
            offset, limit = int(q.get("sysparm_offset", 0)), int(q.get("sysparm_limit", 100))
            rows: list[str] = []
            for sid in ids:
                i = int(sid, 16)
                if path.endswith("sys_audit"):
                    rows.extend(sn_audit(i))
                else:
                    rows.append(sn_approval(i))
            self._send(f'{{"result":[{",".join(rows[offset : offset + limit])}]}}')
        elif path == "/api/now/table/sys_choice":
            rows = [
                f'{{"name":"change_request","value":"{v}","label":"{lb}"}}' for v, lb in SN_CHOICES
            ]
            self._send(f'{{"result":[{",".join(rows)}]}}')
        else:
            self._send('{"message":"not found"}', 404)


def serve(size: int, history: int, cap: int) -> None:
    FakeHandler.size, FakeHandler.history, FakeHandler.cap = size, history, cap
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeHandler)
    server.daemon_threads = True
    print(server.server_address[1], flush=True)
    server.serve_forever()


# --------------------------------------------------------------------------- children


def _stats(url: str) -> int:
    import httpx

    return int(httpx.get(f"{url}/__stats", timeout=10).json()["requests"])


def child_baseline(source: str, url: str, size: int, history: int, cap: int) -> dict[str, Any]:
    import httpx

    items = 0
    t0 = time.perf_counter()
    with httpx.Client(base_url=url, timeout=30) as c:
        if source == "jira":
            token: str | None = None
            while True:
                params: dict[str, Any] = {
                    "jql": "project = CHG",
                    "maxResults": 100,
                    "expand": "changelog",
                }
                if token:
                    params["nextPageToken"] = token
                body = json.loads(c.get("/rest/api/3/search/jql", params=params).content)
                for issue in body["issues"]:
                    items += 1
                    cl = issue["changelog"]
                    if cl["total"] > len(cl["histories"]):
                        json.loads(
                            c.get(
                                f"/rest/api/3/issue/{issue['key']}/changelog",
                                params={"startAt": 0, "maxResults": 100},
                            ).content
                        )
                if body.get("isLast"):
                    break
                token = body["nextPageToken"]
        else:
            offset = 0
            while True:
                page = json.loads(
                    c.get(
                        "/api/now/table/change_request",
                        params={"sysparm_offset": offset, "sysparm_limit": 100},
                    ).content
                )["result"]
                if not page:
                    break
                ids = ",".join(r["sys_id"]["value"] for r in page)
                json.loads(
                    c.get(
                        "/api/now/table/sys_audit",
                        params={"sysparm_query": f"documentkeyIN{ids}", "sysparm_limit": 1000},
                    ).content
                )
                json.loads(
                    c.get(
                        "/api/now/table/sysapproval_approver",
                        params={"sysparm_query": f"sysapprovalIN{ids}", "sysparm_limit": 1000},
                    ).content
                )
                items += len(page)
                offset += len(page)
                if len(page) < 100:
                    break
    return {"items": items, "seconds": time.perf_counter() - t0}


def child_connector(source: str, url: str, size: int, history: int, cap: int) -> dict[str, Any]:
    from collections import defaultdict

    from core.checks import evaluate
    from core.connector import CollectContext
    from core.records import Evidence

    os.environ["ANNEXA_BENCH_TOKEN"] = TOKEN
    if source == "jira":
        from connectors.jira import JiraConnector, JiraOptions

        cls: Any = JiraConnector
        opts: Any = JiraOptions.model_validate(
            {
                "url": url,
                "email": "bench@example.com",
                "token": {"env": "ANNEXA_BENCH_TOKEN"},
                "processes": [
                    {
                        "kind": "change",
                        "jql": "project = CHG",
                        "approved_states": ["Approved"],
                        "implemented_states": ["Done"],
                    }
                ],
            }
        )
    else:
        from connectors.servicenow import ServiceNowConnector, ServiceNowOptions

        cls = ServiceNowConnector
        opts = ServiceNowOptions.model_validate(
            {
                "instance_url": url,
                "token": {"env": "ANNEXA_BENCH_TOKEN"},
                "processes": [{"kind": "change", "query": ""}],
            }
        )
    specs = cls.checks()
    by_type: dict[str, list[Any]] = defaultdict(list)
    for s in specs:
        by_type[s.resource_type].append(s)
    params = {s.id: s.parameters for s in specs}
    items = 0
    statuses: dict[str, int] = defaultdict(int)
    errors: list[str] = []
    t0 = time.perf_counter()
    for rec in cls("bench", opts).collect(CollectContext(run_id="bench")):
        if isinstance(rec, Evidence):
            h = rec.content_hash()
            for f in evaluate(rec, by_type[rec.resource_type], params, h):
                statuses[f.status] += 1
            if rec.resource_type.endswith(".ticket"):
                items += 1
        elif getattr(rec, "ok", True) is False:
            errors.append(str(rec.error))  # type: ignore[union-attr]
    return {
        "items": items,
        "seconds": time.perf_counter() - t0,
        "findings": dict(statuses),
        "errors": errors,
    }


def run_child(args: argparse.Namespace) -> None:
    start_rss = peak_rss_mb()
    fn = child_baseline if args.child == "baseline" else child_connector
    before = _stats(args.url)
    out = fn(args.source, args.url, args.size, args.history, args.inline_cap)
    out["requests"] = _stats(args.url) - before
    out["peak_rss_mb"] = peak_rss_mb()
    out["start_rss_mb"] = start_rss
    print(json.dumps(out))


# --------------------------------------------------------------------------- driver


def measure(source: str, size: int, args: argparse.Namespace) -> dict[str, Any]:
    # The estate's shape, which the server and every child must agree on.
    estate = ["--size", str(size), "--history", str(args.history)]
    estate += ["--inline-cap", str(args.inline_cap)]
    server = subprocess.Popen(
        [sys.executable, __file__, "--serve", *estate], stdout=subprocess.PIPE, text=True
    )
    try:
        assert server.stdout is not None
        url = f"http://127.0.0.1:{server.stdout.readline().strip()}"
        result: dict[str, Any] = {"source": source, "size": size}
        with_baseline = size in (args.baseline_sizes or [min(args.sizes)])
        for scenario in ("baseline", "connector") if with_baseline else ("connector",):
            proc = subprocess.run(
                [sys.executable, __file__, "--child", scenario, "--source", source, "--url", url,
                 *estate],
                capture_output=True,
                text=True,
                timeout=3600,
                check=False,
            )
            if proc.returncode != 0:
                raise RuntimeError(f"{scenario} child failed:\n{proc.stderr[-3000:]}")
            result[scenario] = json.loads(proc.stdout.strip().splitlines()[-1])
        return result
    finally:
        server.terminate()
        server.wait(timeout=10)


def report(results: list[dict[str, Any]]) -> None:
    print(
        f"\npython {platform.python_version()} on {platform.machine()}, "
        f"{os.cpu_count()} CPUs; 'vs base' = connector items/s / bare-httpx items/s"
    )
    head = (
        f"{'source':<11}{'items':>8}{'items/s':>10}{'req/item':>10}{'peak RSS':>10}"
        f"{'base items/s':>14}{'base RSS':>10}{'vs base':>9}"
    )
    print(head)
    base: dict[str, dict[str, Any]] = {}
    for r in sorted(results, key=lambda r: r["size"]):
        base.setdefault(r["source"], r.get("baseline") or {})
    for r in results:
        c, b = r["connector"], r.get("baseline") or base[r["source"]]
        ips, bps = c["items"] / c["seconds"], b["items"] / b["seconds"]
        mark = " " if r.get("baseline") else "*"
        print(
            f"{r['source']:<11}{c['items']:>8}{ips:>10.0f}{c['requests'] / c['items']:>10.3f}"
            f"{c['peak_rss_mb']:>9.0f}M{bps:>13.0f}{mark}{b['peak_rss_mb']:>9.0f}M"
            f"{ips / bps:>9.2f}"
        )
        if c["errors"]:
            print(f"  errors: {c['errors'][:3]}")
    print("* baseline measured at the smallest size of the same source")
    for source in sorted({r["source"] for r in results}):
        rs = sorted((r for r in results if r["source"] == source), key=lambda r: r["size"])
        if len(rs) >= 2:
            lo, hi = rs[0]["connector"], rs[-1]["connector"]
            growth = hi["peak_rss_mb"] / lo["peak_rss_mb"]
            verdict = "flat" if growth <= TARGET_RSS_GROWTH else "GROWS"
            print(
                f"{source}: peak RSS {lo['peak_rss_mb']:.0f} MB at {rs[0]['size']} items → "
                f"{hi['peak_rss_mb']:.0f} MB at {rs[-1]['size']} items: x{growth:.2f} "
                f"({verdict}; target ≤ x{TARGET_RSS_GROWTH})"
            )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    ap.add_argument("--sources", default="jira,servicenow")
    ap.add_argument("--history", type=int, default=50, help="Jira changelog entries per issue")
    ap.add_argument("--inline-cap", type=int, default=40, help="histories embedded in search")
    ap.add_argument(
        "--baseline-sizes",
        type=int,
        nargs="*",
        help="sizes that also run the bare-httpx baseline (default: the smallest); other "
        "sizes are compared with the baseline of the smallest size",
    )
    ap.add_argument("--json", type=Path, help="also write the raw results here")
    ap.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--child", choices=["baseline", "connector"], help=argparse.SUPPRESS)
    ap.add_argument("--source", help=argparse.SUPPRESS)
    ap.add_argument("--url", help=argparse.SUPPRESS)
    ap.add_argument("--size", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        serve(args.size, args.history, args.inline_cap)
        return
    if args.child:
        run_child(args)
        return
    results = []
    print(
        f"Jira: {args.history} changelog entries per issue, {args.inline_cap} embedded; "
        "ServiceNow: 8 audit rows + 1 approval per record"
    )
    for source in args.sources.split(","):
        for size in args.sizes:
            t0 = time.perf_counter()
            results.append(measure(source, size, args))
            print(f"  {source} {size}: done in {time.perf_counter() - t0:.0f}s", flush=True)
    report(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()

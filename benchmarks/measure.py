"""What every benchmark does the same way: peak memory, scratch databases, a fake API on
loopback, a measured child process and the tally of one connector's stream."""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def peak_rss_mb() -> float:
    """This process's peak RSS in MB.

    ``VmHWM`` on Linux: ``ru_maxrss`` survives ``exec``, so a child started by a parent
    that holds a large fake estate would report the parent's peak, not its own.
    ``ru_maxrss`` elsewhere (bytes on macOS, KiB on Linux and the BSDs).
    """
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return maxrss / (1024 * 1024) if sys.platform == "darwin" else maxrss / 1024


@contextmanager
def scratch_database(
    engine_kind: str, pg_url: str, *, keep: bool = False, reuse: str | None = None
) -> Iterator[str]:
    """The URL of an empty database for one measurement, dropped afterwards.

    ``engine_kind`` is ``sqlite`` (a file in a new temporary directory) or
    ``postgresql`` (a new database on the server of ``pg_url``, named
    ``annexa_bench_<random>``, dropped with ``FORCE``). ``reuse`` yields that URL
    untouched (a database kept by an earlier ``keep=True`` run); ``keep`` leaves the
    database in place and prints its URL.
    """
    if reuse:
        yield reuse
        return
    if engine_kind == "sqlite":
        url = f"sqlite:///{tempfile.mkdtemp()}/bench.db"
        yield url
        if keep:
            print(f"kept {url}", flush=True)
        return
    import psycopg
    from sqlalchemy.engine import make_url

    name = f"annexa_bench_{uuid.uuid4().hex[:8]}"
    admin = make_url(pg_url).set(drivername="postgresql").render_as_string(False)
    with psycopg.connect(admin, autocommit=True) as c:
        c.execute(f"CREATE DATABASE {name}")
    url = make_url(pg_url).set(drivername="postgresql+psycopg", database=name)
    try:
        yield url.render_as_string(False)
    finally:
        if keep:
            print(f"kept {url.render_as_string(False)}", flush=True)
        else:
            with psycopg.connect(admin, autocommit=True) as c:
                c.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def send(
    handler: BaseHTTPRequestHandler, status: int, headers: dict[str, str], body: bytes
) -> None:
    """Write one whole response from a fake's handler: status, ``headers``, Content-Length and
    ``body``."""
    handler.send_response(status)
    for k, v in headers.items():
        handler.send_header(k, v)
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


@contextmanager
def serving(handler: type[BaseHTTPRequestHandler], **state: Any) -> Iterator[str]:
    """A threaded HTTP server for ``handler`` on a free loopback port, for the ``with``
    block; yields its base URL. ``state`` becomes attributes of the server, where the
    handler finds its fake (``self.server.<name>``)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    for name, value in state.items():
        setattr(server, name, value)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def run_served(script: str, handler: type[BaseHTTPRequestHandler], fake: Any, minimum: int,
               kind: str, n: int, *args: str) -> dict[str, Any]:
    """Serve ``fake`` (as ``self.server.fake``, its ``base`` set to the URL) while the child
    ``script --child KIND --url BASE ARGS`` reads it; the child's result with the fake's
    count of requests and of the throttled ones, and the ``minimum`` the estate needs."""
    with serving(handler, fake=fake) as fake.base:
        result = run_child(script, f"{kind} N={n}", kind, "--url", fake.base, *args)
    result.update(connector=kind, n=n, requests=fake.requests, throttled=fake.throttled,
                  minimum_requests=minimum)
    return result


def run_child(script: str, label: str, *args: str) -> dict[str, Any]:
    """Run ``script --child ARGS`` in a fresh interpreter (its own peak memory, none of the
    parent's fake estate) and return the JSON object of its last output line."""
    cmd = [sys.executable, script, "--child", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=3600, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"{label} child failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def quiet_logs() -> None:
    """Only errors from the connector's logger: a log line per page would be measured too."""
    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))


def tally_stream(conn: Any, noun: str, types: Collection[str] | None = None) -> dict[str, Any]:
    """Read ``conn``'s stream once, evaluating each evidence with the connector's checks and
    their default parameters as the engine does, and return what a child reports: ``noun``
    (the evidence of ``types``, or all evidence), findings, failing findings, seconds, peak
    memory before and after, and the units that failed."""
    from core.checks import evaluate
    from core.connector import CollectContext
    from core.records import Coverage, Evidence

    specs: dict[str, list[Any]] = {}
    for s in conn.checks():
        specs.setdefault(s.resource_type, []).append(s)
    params = {s.id: s.parameters for s in conn.checks()}
    before = peak_rss_mb()
    counted = findings = failing = 0
    failed_units = []
    started = time.perf_counter()
    for rec in conn.collect(CollectContext(run_id="bench")):
        if isinstance(rec, Evidence):
            counted += types is None or rec.resource_type in types
            for f in evaluate(rec, specs.get(rec.resource_type, ()), params):
                findings += 1
                failing += f.status == "fail"
        elif isinstance(rec, Coverage) and not rec.ok:
            failed_units.append(f"{rec.unit}: {rec.error}")
    return {
        noun: counted,
        "findings": findings,
        "failing": failing,
        "seconds": time.perf_counter() - started,
        "rss_before_mb": before,
        "peak_rss_mb": peak_rss_mb(),
        "failed_units": failed_units,
    }


def stream_header(noun: str) -> str:
    """The header of a stream benchmark's table, ``noun`` being what it counts."""
    return (
        f"{'connector':<9} {noun:>9} {'seconds':>8} {noun + '/s':>9} {'requests':>9} "
        f"{'minimum':>8} {'ratio':>6} {'429s':>5} {'peak RSS MB':>12} {'vs base':>8}"
    )


def stream_row(kind: str, r: dict[str, Any], noun: str, growth: float) -> str:
    """One run's row under :func:`stream_header` (``minimum_requests``: the fewest
    requests the estate needs)."""
    minimum = "minimum_requests"
    return (
        f"{kind:<9} {r[noun]:>9} {r['seconds']:>8.2f} {r[noun] / r['seconds']:>9.0f} "
        f"{r['requests']:>9} {r[minimum]:>8} {r['requests'] / r[minimum]:>6.3f} "
        f"{r['throttled']:>5} {r['peak_rss_mb']:>12.1f} {growth:>7.2f}x"
    )


def stream_problems(r: dict[str, Any], noun: str, expected: int) -> list[str]:
    """What one run of a stream benchmark missed: failed units, a count of ``noun`` other
    than ``expected``, or successful requests other than the minimum (over- or
    under-fetching)."""
    problems = []
    if r["failed_units"]:
        problems.append(f"failed units: {r['failed_units']}")
    if r[noun] != expected:
        problems.append(f"expected {expected} {noun}, collected {r[noun]}")
    if r["requests"] - r["throttled"] != r["minimum_requests"]:
        problems.append("successful requests differ from the minimum: over- or under-fetching")
    return problems


def stream_table(kinds: list[str], sizes: list[int], noun: str, target_rss_ratio: float,
                 run: Callable[[str, int], dict[str, Any]]) -> bool:
    """Run every connector of ``kinds`` at every size (``run(kind, n)``), smallest first,
    and print the table and every miss: :func:`stream_problems`, or a peak memory that
    grew more than ``target_rss_ratio`` from the smallest size to the largest. True when
    every target was met."""
    print(stream_header(noun))
    ok = True
    for kind in kinds:
        base = growth = 0.0
        for n in sorted(sizes):
            r = run(kind, n)
            base = base or r["peak_rss_mb"]
            growth = r["peak_rss_mb"] / base
            print(stream_row(kind, r, noun, growth), flush=True)
            for problem in stream_problems(r, noun, n):
                ok = False
                print(f"  {problem}")
        if growth > target_rss_ratio:
            ok = False
            print(f"  {kind}: peak RSS grew {growth:.2f}x from {min(sizes)} to {max(sizes)} "
                  f"{noun} (target <= {target_rss_ratio}x)")
    print("all targets met" if ok else "SOME TARGETS MISSED")
    return ok


def env_secret(name: str, value: str) -> dict[str, str]:
    """Put ``value`` in the child's environment as ``name`` and return the ``{"env": name}``
    reference a connector's secret option takes (the secret itself never goes in options)."""
    os.environ[name] = value
    return {"env": name}


def child_http(timeout: float) -> Any:
    """The child's HTTP options (generous retries: throttling is part of the estate), with
    the logs quietened first (see :func:`quiet_logs`)."""
    quiet_logs()
    from connectors.http import HttpOptions

    return HttpOptions(max_attempts=10, retry_min_wait=0.0, retry_max_wait=0.05, timeout=timeout)


def stream_parser(doc: str | None, sizes_flag: str, default_sizes: list[int],
                  kinds: list[str]) -> argparse.ArgumentParser:
    """The options every stream benchmark takes: ``--<sizes_flag>`` (the estate sizes),
    ``--connectors`` (of ``kinds``, all by default), and the ``--child KIND --url URL``
    a parent passes to the child it measures."""
    ap = argparse.ArgumentParser(description=(doc or "").splitlines()[0])
    ap.add_argument(f"--{sizes_flag}", type=int, nargs="+", default=default_sizes)
    ap.set_defaults(sizes_flag=sizes_flag)
    ap.add_argument("--connectors", default=",".join(kinds))
    ap.add_argument("--child", choices=kinds)
    ap.add_argument("--url")
    return ap


def stream_main(ap: argparse.ArgumentParser, noun: str, target_rss_ratio: float,
                child: Callable[[argparse.Namespace], dict[str, Any]],
                run: Callable[[argparse.Namespace, str, int], dict[str, Any]]) -> None:
    """A stream benchmark's entry point: as the child (``--child``), print what ``child``
    measured as one JSON line; as the parent, :func:`stream_table` over the sizes, each
    run by ``run(args, kind, n)``, exiting 1 when a target was missed."""
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args)))
        return
    sizes = getattr(args, ap.get_default("sizes_flag"))
    ok = stream_table(args.connectors.split(","), sizes, noun, target_rss_ratio,
                      lambda kind, n: run(args, kind, n))
    sys.exit(0 if ok else 1)

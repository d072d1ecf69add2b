"""Benchmark: server time per console page on a year of hourly history.

    python benchmarks/console.py [--resources 10000] [--hours 8760] [--engines sqlite,postgresql]
                                 [--requests 20] [--reuse URL] [--keep-db]

The database is the one of ``benchmarks/history.py`` (its ``generate``: a year of hourly
runs over ``--resources`` S3 buckets, 1 % changing per run), or a kept one (``--reuse``).
The console is built as ``annexa serve`` builds it and served by a real uvicorn on
127.0.0.1; each page is requested ``--requests`` times over httpx, and the server time
is read from the ``Server-Timing`` header the console sets on every response (time until
the response starts). Figures per page: p50 / p95 of that server time, and the client's
wall time p50. Measured in the same run: ``control_statuses`` at now by the history walk
(the path the overview and control pages took before the materialised findings in force,
``store.current``; each page's ratio is to it), the same call as the pages now make it,
and at mid-year by the walk, from the snapshots (``store.snapshots``: what
``annexa controls --at`` runs now) and from memory (what the console holds once it has
read an instant). The pages at mid-year are measured as an auditor opens them at one
date (the first request reads the instant, the rest are answered from what it held),
and the overview, a control and the SoA again with nothing held before each request
(rows "first read"). Target (issue 20): every page < 300 ms. A database
kept by an older version is upgraded first (migrations 0009 and 0010 build the table and
the snapshots from the history; 0011 indexes the table and compacts it on PostgreSQL).
``--generate-only`` builds and keeps a database.

The generated year ends at the hour generation began (``benchmarks/history.py``), so
the "now" pages — the 30-day timeline and trend fragments among them — see a full last
30 days of history, as on a live daemon. ``--reuse`` reads the span from the database
(first run's start, last run's finish); since a database measured days after it was
generated has an emptier window at "now", the status pages and both fragments are also
measured at ``?at=`` the end of its history (rows "(at end of history)"). Mid-year is
the middle of that span.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.history import DEFAULT_PG_URL, RESULTS_DIR, generate, span_of  # noqa: E402

TARGET_MS = 300.0
#: Pages measured with nothing held in memory before each request (a new instant).
FIRST = ", first read"


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(p / 100 * (len(s) - 1))))]


def measure(url: str, span: dict[str, Any], n: int, only: list[str] | None = None
            ) -> dict[str, Any]:
    import httpx

    from collector.config import AnnexaConfig, Settings
    from collector.console import build
    from collector.console.auth import open_access
    from mappings.loader import load_mappings
    from store.engine import make_engine
    from store.migrate import upgrade
    from store.snapshots import forget
    from store.status import control_statuses
    from tests.console_fixtures import LiveConsole

    index = load_mappings()
    upgrade(make_engine(url))  # a kept database from an older version gains migration 0009
    settings = Settings(AnnexaConfig(database={"url": url}), None)
    engine = make_engine(url, readonly=True)
    app = build(settings, engine, index, open_access())
    end, start = span["end"], span["start"]
    mid = start + (end - start) / 2
    control = index.controls_for("aws.s3.bucket_default_encryption")[0]
    key = "aws.s3.bucket|111122223333|eu-west-1|bucket-00042"
    with engine.connect() as conn:
        from store.queries import list_runs

        run_id = list_runs(conn, limit=1)[0]["id"]
    at = quote(mid.isoformat())
    # The end of the history: "now" for a database measured as soon as it is generated
    # (its year ends at the generation hour), and the same full window for one measured
    # days later, when the pages' own "now" has moved past the last run.
    at_end = quote(end.isoformat())
    pages = {
        "overview (now)": "/",
        "overview (--at mid-year)": f"/?at={at}",
        "overview csv": "/?format=csv",
        f"control {control} (now)": f"/controls/{control}",
        f"control {control} (--at mid-year)": f"/controls/{control}?at={at}",
        f"control {control} timeline fragment (htmx)": f"/controls/{control}/timeline",
        f"control {control} timeline fragment (--at mid-year)":
            f"/controls/{control}/timeline?at={at}",
        f"control {control} all findings CSV (download)":
            f"/controls/{control}/findings?format=csv",
        "resource + diff (now)": f"/resource?source=bench-aws&key={quote(key)}",
        "resource + diff (--at mid-year)": f"/resource?source=bench-aws&key={quote(key)}&at={at}",
        "runs": "/runs",
        "runs (--at mid-year)": f"/runs?at={at}",
        "verify one run": f"/runs/{run_id}/verify",
        "overview trend fragment (htmx)": "/trend",
        "overview (at end of history)": f"/?at={at_end}",
        f"control {control} (at end of history)": f"/controls/{control}?at={at_end}",
        f"control {control} timeline fragment (at end of history)":
            f"/controls/{control}/timeline?at={at_end}",
        "overview trend fragment (at end of history)": f"/trend?at={at_end}",
        "SoA": "/soa",
        "SoA (--at mid-year)": f"/soa?at={at}",
        # The same three at an instant read for the first time: nothing held in memory
        # (store.snapshots.light_rows_at) before each request.
        f"overview (--at mid-year){FIRST}": f"/?at={at}",
        f"control {control} (--at mid-year){FIRST}": f"/controls/{control}?at={at}",
        f"SoA (--at mid-year){FIRST}": f"/soa?at={at}",
        "samples": "/samples",
        "risks": "/risks",
    }
    pages = {k: v for k, v in pages.items() if not only or any(o in k for o in only)}

    def median_ms(fn: Any) -> float:
        times = []
        for _ in range(max(3, n // 4)):
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1000)
        return statistics.median(times)

    # Before this change: the overview's query walked every key's history even at now.
    before = median_ms(lambda: control_statuses(engine, index, None, timedelta(days=7),
                                                materialised=False))
    after = median_ms(lambda: control_statuses(engine, index, None, timedelta(days=7)))
    baseline = median_ms(lambda: control_statuses(engine, index, mid, timedelta(days=7),
                                                  materialised=False))

    def first_read() -> None:
        forget()
        control_statuses(engine, index, mid, timedelta(days=7))

    snap = median_ms(first_read)
    held = median_ms(lambda: control_statuses(engine, index, mid, timedelta(days=7)))
    print(f"  control_statuses(now): walk (before) {before:7.1f} ms, materialised "
          f"{after:7.1f} ms ({before / after:4.1f}x faster); at mid-year: walk "
          f"{baseline:7.1f} ms, snapshot {snap:7.1f} ms ({baseline / snap:4.1f}x faster), "
          f"held in memory {held:7.1f} ms", flush=True)
    out: dict[str, Any] = {"baseline_control_statuses_ms": round(baseline, 1),
                           "snapshot_control_statuses_mid_ms": round(snap, 1),
                           "held_control_statuses_mid_ms": round(held, 1),
                           "before_control_statuses_now_ms": round(before, 1),
                           "after_control_statuses_now_ms": round(after, 1), "pages": {}}
    with LiveConsole(app) as live, httpx.Client(base_url=live.url, timeout=120) as c:
        for name, path in pages.items():
            cold = name.endswith(FIRST)
            if cold:
                forget()
            c.get(path).raise_for_status()  # warm
            server, wall = [], []
            for _ in range(n):
                if cold:
                    forget()
                t0 = time.perf_counter()
                r = c.get(path)
                wall.append((time.perf_counter() - t0) * 1000)
                r.raise_for_status()
                server.append(float(r.headers["server-timing"].split("dur=")[1]))
            p50, p95 = pct(server, 50), pct(server, 95)
            out["pages"][name] = {
                "server_p50_ms": round(p50, 1),
                "server_p95_ms": round(p95, 1),
                "wall_p50_ms": round(pct(wall, 50), 1),
                "ratio_to_baseline": round(p50 / baseline, 2),
                "ratio_to_before_now": round(p50 / before, 2),
                "under_target": p95 < TARGET_MS,
            }
            print(f"  {name:40s} p50 {p50:7.1f} ms  p95 {p95:7.1f} ms  "
                  f"({p50 / before:4.2f}x the walk at now)"
                  f"{'' if p95 < TARGET_MS else '  over 300 ms'}", flush=True)
    return out


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--resources", type=int, default=10_000)
    p.add_argument("--hours", type=int, default=8760)
    p.add_argument("--change-rate", type=float, default=0.01)
    p.add_argument("--engines", default="sqlite,postgresql")
    p.add_argument("--requests", type=int, default=20)
    p.add_argument("--pg-url", default=DEFAULT_PG_URL)
    p.add_argument("--keep-db", action="store_true")
    p.add_argument("--generate-only", action="store_true", help="Build the database, keep "
                   "it and print its URL (measure it later with --reuse).")
    p.add_argument("--progress-every", type=int, default=500, help="Print the generation's "
                   "progress (and its recent ms per run) every this many runs.")
    p.add_argument("--profile", metavar="FILE", help="cProfile the generation's runs after "
                   "the first into FILE.<engine> (pstats format).")
    p.add_argument("--only", nargs="*", help="Measure only pages whose name contains one of these.")
    p.add_argument("--reuse", metavar="URL", help="Measure a database kept by "
                   "benchmarks/history.py --keep-db (same --resources/--hours).")
    args = p.parse_args()
    results: dict[str, Any] = {"args": vars(args)}
    engines = args.engines.split(",")
    if args.reuse:
        # One database, measured once, named by its own engine (with the default
        # --engines it was measured twice, the second time labelled "postgresql").
        from sqlalchemy.engine import make_url

        engines = [make_url(args.reuse).get_backend_name()]
    for eng in engines:
        cleanup = None
        if args.reuse:
            url = args.reuse
        elif eng == "sqlite":
            url = f"sqlite:///{tempfile.mkdtemp()}/history.db"
        else:
            import uuid

            import psycopg
            from sqlalchemy.engine import make_url

            name = f"annexa_bench_{uuid.uuid4().hex[:8]}"
            admin = make_url(args.pg_url).set(drivername="postgresql").render_as_string(False)
            with psycopg.connect(admin, autocommit=True) as c:
                c.execute(f"CREATE DATABASE {name}")
            url = make_url(args.pg_url).set(drivername="postgresql+psycopg",
                                            database=name).render_as_string(False)

            def cleanup(name: str = name, admin: str = admin) -> None:
                import psycopg

                with psycopg.connect(admin, autocommit=True) as c:
                    c.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        try:
            if args.reuse:
                span = span_of(url)
                print(f"== {eng}: {span['runs']} runs, {span['start']} .. {span['end']}",
                      flush=True)
            else:
                print(f"== {eng}: generating {args.hours} hourly runs over {args.resources} "
                      "resources", flush=True)
                span = generate(url, argparse.Namespace(
                    **{**vars(args), "profile": args.profile and f"{args.profile}.{eng}"}))
                if eng == "postgresql":
                    import psycopg

                    with psycopg.connect(url.replace("+psycopg", ""), autocommit=True) as c:
                        c.execute("VACUUM ANALYZE")
            if args.generate_only:
                args.keep_db = True
                print(f"== {eng}: generated in {span['generation_s']} s", flush=True)
                continue
            print(f"== {eng}: console pages, {args.requests} requests each", flush=True)
            import os

            results[eng] = measure(url, span, args.requests, args.only)
            results[eng]["load_average"] = os.getloadavg()
            print(f"  load average {os.getloadavg()}", flush=True)
        finally:
            if cleanup and not args.keep_db:
                cleanup()
            elif args.keep_db:
                print(f"kept {url}", flush=True)
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    out = RESULTS_DIR / f"console-{args.engines.replace(',', '-')}.json"
    out.write_text(json.dumps(results, indent=1, default=str))
    print(f"written {out}")


if __name__ == "__main__":
    main()

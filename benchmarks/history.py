"""Benchmark: a year of hourly runs over 10,000 resources — point-in-time and export.

    python benchmarks/history.py [--resources 10000] [--hours 8760] [--change-rate 0.01]
                                 [--engines sqlite,postgresql] [--export-days 30]
                                 [--pg-url postgresql://postgres@127.0.0.1:5432/postgres]

Generation goes through ``store.writer.RunWriter``: run 0 writes every resource (an
``aws.s3.bucket`` evidence item and two findings per resource, each check mapped to its
real Annex A controls); each following hourly run writes the ``change-rate`` share of
resources that changed (new payload; each finding flips pass/fail with p=0.3). Only the
changed items are given to the writer — what a full run stores with change-only
storage, since unchanged items add no row — and no unit coverage is reported after
run 0 (a clean unit makes the writer scan every stored key for items to close, which
would dominate the generation time and stores nothing here). The writer's clock is
simulated (``store.writer.utcnow``) so runs start and finish an hour apart over the
year; nothing else is patched. The year *ends* at the hour generation began (the
current UTC hour, floored; the first run is ``--hours`` hours before it), so a page
or command asked about "now" sees a full recent history, as on a live daemon, not an
empty window after a year long past. ``--reuse`` reads the span from the database
(the first run's ``started_at``, the last run's ``finished_at``: :func:`span_of`).

Figures, per engine:

``controls --at``   ``control_statuses(at)`` (what the command runs) at 3 instants (start
                    + 1 day, mid-year, end), median of 3 calls each; target < 1 s
``findings --at``   ``findings_at(at)`` alone, mid-year
``export``          ``build_package`` for the last ``--export-days`` days: wall time, size
``db size``         the database after generation vs. the same year without change-only
                    storage: every run writing a row per item (rows x measured average
                    row size of each history table; bodies stay content-addressed)
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.measure import scratch_database  # noqa: E402 - after the path fix

DEFAULT_PG_URL = os.environ.get(
    "ANNEXA_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
RESULTS_DIR = ROOT / "benchmarks" / "results"
TARGET_AT_SECONDS = 1.0


class SimClock:
    """The writer's clock: simulated time, strictly increasing."""

    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        self.now += timedelta(microseconds=50)
        return self.now


def history_end() -> datetime:
    """Where a generated history ends: the current UTC hour, floored."""
    return datetime.now(UTC).replace(minute=0, second=0, microsecond=0)


def span_of(url: str) -> dict[str, Any]:
    """The span of a kept database's history: its first run's ``started_at`` and its
    last run's ``finished_at`` (the last started run's ``started_at`` if unsealed), or
    the newest finding observation if later: databases generated before 2026-12-05
    17:10 UTC observed each run's records 30 s after it started but finished the run
    at once, so an instant at its ``finished_at`` would precede the last run's findings
    (the findings in force would then not answer "now" there, and the last run would
    be missed)."""
    from sqlalchemy import func, select

    from store.engine import make_engine
    from store.schema import findings, runs

    engine = make_engine(url, readonly=True)
    with engine.connect() as conn:
        start, last_start, last_end, n = conn.execute(
            select(func.min(runs.c.started_at), func.max(runs.c.started_at),
                   func.max(runs.c.finished_at), func.count())
        ).one()
        newest = conn.execute(select(func.max(findings.c.observed_at))).scalar()
    engine.dispose()
    if start is None:
        raise SystemExit(f"{url}: no runs")
    end = max(t for t in (last_start, last_end, newest) if t is not None)
    return {"generation_s": None, "start": start, "end": end, "runs": n}


def generate(url: str, args: argparse.Namespace) -> dict[str, Any]:
    import store.writer as writer_mod
    from core.records import Coverage, Evidence, Finding
    from mappings.loader import load_mappings
    from store.engine import make_engine
    from store.migrate import upgrade

    index = load_mappings()
    checks = ["aws.s3.bucket_default_encryption", "aws.s3.bucket_public_access_block"]
    checks = [c for c in checks if index.controls_for(c)] or [index.links[0].check]
    engine = make_engine(url)
    upgrade(engine)
    rnd = random.Random(7)
    # The year ends at the generation hour (see the module docstring).
    end = history_end()
    start = end - timedelta(hours=args.hours)
    clock = SimClock(start)
    writer_mod.utcnow = clock  # simulated run timestamps (see module docstring)
    status = {(i, c): "pass" if rnd.random() < 0.8 else "fail"
              for i in range(args.resources) for c in checks}
    version = [0] * args.resources
    t0 = time.perf_counter()
    rows = 0
    per_run: list[float] = []
    first_s = 0.0
    profile_to = getattr(args, "profile", None)
    prof = None
    for h in range(args.hours):
        if h == 1 and profile_to:
            import cProfile

            # Runs after the first only: the per-run cost a year multiplies.
            prof = cProfile.Profile()
            prof.enable()
        t_run = time.perf_counter()
        clock.now = start + timedelta(hours=h)
        when = clock.now + timedelta(seconds=30)
        if h == 0:
            changed = list(range(args.resources))
        else:
            changed = rnd.sample(range(args.resources), int(args.resources * args.change_rate))
        w = writer_mod.RunWriter(
            engine, source="bench-aws", connector_type="aws", config_digest="c" * 64,
            mapping_digest=index.digest, agent_version="bench",
            signer=getattr(args, "signer", None),
        )
        w.start()
        for i in changed:
            if h:
                version[i] += 1
                for c in checks:
                    if rnd.random() < 0.3:
                        status[(i, c)] = "fail" if status[(i, c)] == "pass" else "pass"
            name = f"bucket-{i:05d}"
            ev = Evidence("111122223333", "eu-west-1", "aws.s3.bucket", name,
                          {"Name": name, "Version": version[i], "Tags": {"team": f"t{i % 40}"},
                           "Policy": {"Statement": [{"Effect": "Deny", "Sid": f"s{i}"}]}},
                          collected_at=when)
            eh = w.add_evidence(ev)
            for c in checks:
                st = status[(i, c)]
                w.add_finding(Finding(c, "111122223333", "eu-west-1", "aws.s3.bucket", name,
                                      st, "high", f"{name}: {c} {st}", evidence_hash=eh,
                                      observed_at=when, controls=index.controls_for(c)))
            rows += 1 + len(checks)
        if h == 0:
            w.add_coverage(Coverage("111122223333", "global", "s3", ok=True))
        # The run finishes after what it observed (a minute after it started): its
        # records lie between its started_at and its finished_at, as a real run's do.
        clock.now = when + timedelta(seconds=30)
        w.finish("succeeded")
        took = time.perf_counter() - t_run
        if h == 0:
            first_s = took
        else:
            per_run.append(took)
        every = getattr(args, "progress_every", 500)
        if h and h % every == 0:
            el = time.perf_counter() - t0
            recent = per_run[-every:]
            print(f"  {h}/{args.hours} runs, {el:.0f}s (last {len(recent)}: "
                  f"{1000 * statistics.mean(recent):.0f} ms/run)", flush=True)
    gen = time.perf_counter() - t0
    if prof is not None:
        prof.disable()
        prof.dump_stats(profile_to)
        print(f"  profile of runs 1..{args.hours - 1} written to {profile_to}", flush=True)
    # Per run after the first (which writes the whole estate): what the year's length costs.
    per_run_ms = round(1000 * statistics.mean(per_run), 1) if per_run else None
    print(f"  first run {first_s:.1f}s; then {per_run_ms} ms/run over {len(per_run)} runs",
          flush=True)
    engine.dispose()
    return {"generation_s": round(gen, 1), "first_run_s": round(first_s, 1),
            "per_run_ms": per_run_ms, "records_written": rows, "start": start,
            "end": end}


def db_size(url: str) -> dict[str, Any]:
    from sqlalchemy import text

    from store.engine import make_engine

    engine = make_engine(url)
    out: dict[str, Any] = {"tables": {}}
    with engine.connect() as conn:
        pg = conn.dialect.name == "postgresql"
        if pg:
            out["total_bytes"] = conn.execute(
                text("SELECT pg_database_size(current_database())")).scalar_one()
        else:
            conn.execute(text("PRAGMA wal_checkpoint(TRUNCATE)"))
            out["total_bytes"] = Path(engine.url.database or "").stat().st_size
        for t in ("evidence", "findings", "blobs", "runs"):
            n = conn.execute(text(f"SELECT count(*) FROM {t}")).scalar_one()
            if pg:
                size = conn.execute(text(f"SELECT pg_total_relation_size('{t}')")).scalar_one()
            else:
                try:
                    size = conn.execute(text(
                        "SELECT SUM(pgsize) FROM dbstat WHERE name = :t OR name IN "
                        "(SELECT name FROM sqlite_master WHERE tbl_name = :t AND type='index')"
                    ), {"t": t}).scalar_one()
                except Exception:  # noqa: BLE001 - dbstat not compiled in
                    size = None
            out["tables"][t] = {"rows": n, "bytes": size}
    engine.dispose()
    return out


def measure(url: str, args: argparse.Namespace, span: dict[str, Any]) -> dict[str, Any]:
    from exports.package import build_package
    from mappings.loader import load_mappings
    from mappings.soa import default_scope
    from store.engine import make_engine
    from store.queries import findings_at
    from store.status import control_statuses

    index = load_mappings()
    engine = make_engine(url)
    start, end = span["start"], span["end"]
    out: dict[str, Any] = {"controls_at_s": {}}
    for label, at in (("start+1d", start + timedelta(days=1)),
                      ("mid", start + (end - start) / 2), ("end", end)):
        times = []
        for _ in range(3):
            t = time.perf_counter()
            statuses = control_statuses(engine, index, at)
            times.append(time.perf_counter() - t)
        out["controls_at_s"][label] = round(statistics.median(times), 3)
        out.setdefault("statuses", {})[label] = {
            s: sum(1 for c in statuses if c.status == s) for s in {c.status for c in statuses}
        }
    with engine.connect() as conn:
        t = time.perf_counter()
        n = sum(1 for _ in findings_at(conn, start + (end - start) / 2))
        out["findings_at_mid_s"] = round(time.perf_counter() - t, 3)
        out["findings_in_force"] = n
    if args.export_days <= 0:
        engine.dispose()
        return out
    pkg = Path(tempfile.mkdtemp()) / "audit.zip"
    t = time.perf_counter()
    summary = build_package(
        engine, index, start=end - timedelta(days=args.export_days), end=end, out=pkg,
        freshness=timedelta(days=7), exceptions=[],
        scope=default_scope(index.catalog), agent_version="bench",
    )
    out["export_s"] = round(time.perf_counter() - t, 1)
    out["export"] = summary.as_dict()
    out["export_bytes"] = pkg.stat().st_size
    from exports.verify import verify_package

    t = time.perf_counter()
    ok = verify_package(pkg).ok
    out["verify_package_s"] = round(time.perf_counter() - t, 1)
    out["verify_package_ok"] = ok
    engine.dispose()
    return out


def baseline(size: dict[str, Any], args: argparse.Namespace, checks: int = 2) -> dict[str, Any]:
    """The same year without change-only storage: a row per item per run."""
    full_rows = {"evidence": args.resources * args.hours,
                 "findings": args.resources * checks * args.hours}
    est = 0.0
    for t, n_full in full_rows.items():
        info = size["tables"][t]
        if info["bytes"] and info["rows"]:
            est += info["bytes"] / info["rows"] * n_full
    other = sum(v["bytes"] or 0 for k, v in size["tables"].items() if k not in full_rows)
    return {"rows": full_rows, "estimated_bytes": int(est + other)}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--resources", type=int, default=10_000)
    p.add_argument("--hours", type=int, default=8760)
    p.add_argument("--change-rate", type=float, default=0.01)
    p.add_argument("--engines", default="sqlite,postgresql")
    p.add_argument("--export-days", type=int, default=30)
    p.add_argument("--pg-url", default=DEFAULT_PG_URL)
    p.add_argument("--keep-db", action="store_true")
    p.add_argument("--reuse", metavar="URL", help="Measure a database kept by --keep-db "
                   "(same --resources/--hours) instead of generating one.")
    args = p.parse_args()
    results: dict[str, Any] = {"args": vars(args)}
    for eng in args.engines.split(","):
        print(f"== {eng}: generating {args.hours} hourly runs over {args.resources} resources",
              flush=True)
        with scratch_database(eng, args.pg_url, keep=args.keep_db, reuse=args.reuse) as url:
            if args.reuse:
                span = span_of(url)
            else:
                span = generate(url, args)
            if eng == "postgresql":
                import psycopg

                with psycopg.connect(url.replace("+psycopg", ""), autocommit=True) as c:
                    c.execute("VACUUM ANALYZE")
            size = db_size(url)
            m = measure(url, args, span)
            base = baseline(size, args)
            r = {**{k: v for k, v in span.items() if k not in ("start", "end")}, **m,
                 "db": size, "baseline_without_change_only": base,
                 "size_ratio": round(base["estimated_bytes"] / size["total_bytes"], 1)}
            results[eng] = r
            worst = max(m["controls_at_s"].values())
            print(json.dumps(r, indent=1, default=str), flush=True)
            print(f"-- {eng}: controls --at worst {worst:.3f}s (target < {TARGET_AT_SECONDS}s: "
                  f"{'OK' if worst < TARGET_AT_SECONDS else 'MISSED'}); export "
                  f"{args.export_days}d {m.get('export_s')}s, "
                  f"{m.get('export_bytes', 0) / 1e6:.1f} MB; "
                  f"db {size['total_bytes'] / 1e6:.0f} MB vs ~{base['estimated_bytes'] / 1e6:.0f} "
                  f"MB without change-only storage ({r['size_ratio']}x)", flush=True)
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    out = RESULTS_DIR / f"history-{args.engines.replace(',', '-')}.json"
    out.write_text(json.dumps(results, indent=1, default=str))


if __name__ == "__main__":
    main()

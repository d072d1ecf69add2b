"""Benchmark: N evidence items + N findings through ``store.writer.RunWriter``.

    python benchmarks/store_writer.py [--items 10000 100000] [--engines sqlite,postgresql]
                                      [--pg-url postgresql://postgres@127.0.0.1:5432/postgres]

For each engine and N, every scenario runs in its own child process, so the peak RSS
(``VmHWM``) it reports belongs to that scenario alone:

``first``    N items, each with one finding, into a freshly migrated database
``rewrite``  the same N items again (new run, identical content) into that database
``raw``      the rows ``first`` stored (blobs, evidence, findings, run units), precomputed
             untimed, inserted with the bare DBAPI (``sqlite3`` / ``psycopg``)
             ``executemany`` in batches of ``--batch-size`` items, one commit per batch,
             into a freshly migrated database with the same schema, indexes, triggers and
             PRAGMAs

Writer timings are net of producing the records: the child also times a pass over the
same generator that builds the ``Evidence`` and ``Finding`` objects but writes nothing,
and subtracts it (``gen s``). See benchmarks/README.md for what every figure means.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import os
import platform
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import store_estate as estate  # noqa: E402
from benchmarks.measure import peak_rss_mb  # noqa: E402 - after the path fix

RESULTS = ROOT / "benchmarks" / "results" / "store_writer.json"
DEFAULT_PG_URL = os.environ.get(
    "ANNEXA_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
SOURCE = "bench-aws"
MAPPING_DIGEST = "m" * 64
TARGET_RAW_RATIO = 0.5
TARGET_REWRITE_SPEEDUP = 3.0
TARGET_RSS_GROWTH = 1.25  # "flat": at most 25 % more peak RSS for 10x the items




# -- children ----------------------------------------------------------------------------


def _writer_class(path: str | None) -> Any:
    """``store.writer.RunWriter``, or the one in the file at ``path`` (before/after runs)."""
    if not path:
        from store.writer import RunWriter

        return RunWriter
    import importlib.util

    mod_spec = importlib.util.spec_from_file_location("annexa_writer_under_test", path)
    assert mod_spec is not None and mod_spec.loader is not None
    module = importlib.util.module_from_spec(mod_spec)
    sys.modules[mod_spec.name] = module  # dataclasses look their module up there
    mod_spec.loader.exec_module(module)
    return module.RunWriter


def child_write(spec: dict[str, Any]) -> dict[str, Any]:
    """One writer run of ``spec['n']`` items; timed from ``start()`` to ``finish()``."""
    from core.records import Evidence, sha256_hex
    from store.engine import make_engine

    RunWriter = _writer_class(spec.get("writer"))
    n = spec["n"]
    salt = spec["run_salt"]
    engine = make_engine(spec["url"])
    with engine.connect():
        pass  # open the pool's connection (and the PRAGMAs) before measuring
    gc.collect()
    rss_before = peak_rss_mb()

    t0 = time.perf_counter()
    w = RunWriter(
        engine,
        source=SOURCE,
        connector_type="aws",
        config_digest="c" * 64,
        mapping_digest=MAPPING_DIGEST,
        agent_version="bench",
        batch_size=spec["batch_size"],
    )
    w.start()
    for ev, fi in estate.items(n, salt):
        h = w.add_evidence(ev)
        w.add_finding(estate.finding_for(ev, fi, h))
    for c in estate.coverage(n):
        w.add_coverage(c)
    summary = w.finish("succeeded")
    wall = time.perf_counter() - t0
    peak = peak_rss_mb()

    # The same generator and record construction, writing nothing: what a connector
    # costs, not the writer. ``body()`` is *not* called here (the writer does it).
    t1 = time.perf_counter()
    for ev, fi in estate.items(n, salt):
        assert isinstance(ev, Evidence)
        estate.finding_for(ev, fi, "0" * 64)
    for _c in estate.coverage(n):
        pass
    gen = time.perf_counter() - t1

    # What of the writer's time is ``Evidence.body()`` + SHA-256 (core/records.py).
    t2 = time.perf_counter()
    for ev, _fi in estate.items(n, salt):
        sha256_hex(ev.body())
    body = max(time.perf_counter() - t2 - gen, 0.0)
    engine.dispose()
    return {
        "wall_s": wall,
        "gen_s": gen,
        "body_s": body,
        "seconds": max(wall - gen, 1e-9),
        "rss_before_mb": rss_before,
        "peak_rss_mb": peak,
        "counts": summary.counts,
        "run_id": summary.run_id,
    }


def _storage_ts(value: datetime) -> str:
    """A UTC datetime as SQLAlchemy stores it in SQLite (naive ISO text, microseconds)."""
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")


def raw_rows(n: int, salt: int, run_id: str, sqlite_ts: bool) -> dict[str, list[tuple]]:
    """Exactly the rows ``first`` writes for ``n`` items (evidence, findings, blobs)."""
    from core.records import sha256_hex
    from store.integrity import finding_hash

    conv = _storage_ts if sqlite_ts else (lambda v: v)
    blob_rows: list[tuple] = []
    ev_rows: list[tuple] = []
    fi_rows: list[tuple] = []
    seen_blobs: set[str] = set()
    for ev, fi in estate.items(n, salt):
        body = ev.body()
        h = sha256_hex(body)
        if h not in seen_blobs:
            seen_blobs.add(h)
            blob_rows.append((h, body, len(body)))
        ev_rows.append(
            (run_id, SOURCE, ev.key, ev.scope, ev.region, ev.service, ev.resource_type,
             ev.resource_id, h, conv(ev.collected_at))
        )
        f = estate.finding_for(ev, fi, h)
        row = {
            "key": f.key, "check_id": f.check_id, "status": f.status, "severity": f.severity,
            "message": f.message, "evidence_hash": h, "controls": json.dumps(sorted(f.controls)),
            "resource_type": f.resource_type, "resource_id": f.resource_id,
        }
        fi_rows.append(
            (run_id, SOURCE, f.key, f.check_id, f.scope, f.region, f.service, f.resource_type,
             f.resource_id, f.status, f.severity, f.message, h, row["controls"],
             MAPPING_DIGEST, conv(f.observed_at), finding_hash(row))
        )
    now = datetime.now(UTC)
    unit_rows = [
        (run_id, c.scope, c.region, c.service, c.ok, c.error, conv(now))
        for c in estate.coverage(n)
    ]
    return {"blobs": blob_rows, "evidence": ev_rows, "findings": fi_rows, "run_units": unit_rows}


INSERTS = {
    "blobs": "INSERT INTO blobs (hash, body, size) VALUES ({})",
    "evidence": (
        "INSERT INTO evidence (run_id, source, key, scope, region, service, resource_type, "
        "resource_id, content_hash, collected_at) VALUES ({})"
    ),
    "findings": (
        "INSERT INTO findings (run_id, source, key, check_id, scope, region, service, "
        "resource_type, resource_id, status, severity, message, evidence_hash, controls, "
        "mapping_digest, observed_at, finding_hash) VALUES ({})"
    ),
    "run_units": (
        "INSERT INTO run_units (run_id, scope, region, service, ok, error, recorded_at) "
        "VALUES ({})"
    ),
}
_NCOLS = {"blobs": 3, "evidence": 10, "findings": 17, "run_units": 7}


def child_raw(spec: dict[str, Any]) -> dict[str, Any]:
    """Bare ``executemany`` of the precomputed rows, batch by batch, one commit each."""
    engine_name = spec["engine"]
    run_id = str(uuid.uuid4())
    rows = raw_rows(spec["n"], spec["run_salt"], run_id, sqlite_ts=engine_name == "sqlite")
    bs = spec["batch_size"]
    if engine_name == "sqlite":
        con: Any = sqlite3.connect(spec["path"], isolation_level="DEFERRED")
        # The PRAGMAs store.engine sets on every writer connection.
        con.execute("PRAGMA journal_mode=WAL")
        con.execute("PRAGMA synchronous=NORMAL")
        con.execute("PRAGMA busy_timeout=30000")
        con.execute("PRAGMA foreign_keys=ON")
        ph = "?"
        cur = con.cursor()
    else:
        import psycopg

        con = psycopg.connect(spec["conninfo"])
        ph = "%s"
        cur = con.cursor()
    sql = {t: s.format(", ".join([ph] * _NCOLS[t])) for t, s in INSERTS.items()}
    gc.collect()
    n = spec["n"]
    t0 = time.perf_counter()
    for start in range(0, n, bs):
        # A batch holds what the writer's batch holds: bs items with their bodies and findings.
        cur.executemany(sql["blobs"], rows["blobs"][start : start + bs])
        cur.executemany(sql["evidence"], rows["evidence"][start : start + bs])
        cur.executemany(sql["findings"], rows["findings"][start : start + bs])
        con.commit()
    cur.executemany(sql["run_units"], rows["run_units"])
    con.commit()
    seconds = time.perf_counter() - t0
    con.close()
    return {"seconds": seconds, "wall_s": seconds, "gen_s": 0.0, "peak_rss_mb": peak_rss_mb()}


# -- parent ------------------------------------------------------------------------------


def run_child(kind: str, spec: dict[str, Any]) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--child", kind, json.dumps(spec)],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{kind} child failed:\n{proc.stdout}\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


class Database:
    """A fresh, migrated database for one scenario; removed on ``drop``."""

    def __init__(self, engine_name: str, pg_url: str, tmp: Path) -> None:
        from sqlalchemy.engine import make_url

        self.engine_name = engine_name
        if engine_name == "sqlite":
            self.path = tmp / f"bench-{uuid.uuid4().hex[:8]}.db"
            self.url = f"sqlite:///{self.path}"
        else:
            import psycopg
            from psycopg import sql

            self.admin = make_url(pg_url).set(drivername="postgresql").render_as_string(
                hide_password=False
            )
            self.name = f"annexa_bench_{uuid.uuid4().hex[:12]}"
            with psycopg.connect(self.admin, autocommit=True) as conn:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.name)))
            url = make_url(pg_url).set(database=self.name)
            self.url = url.set(drivername="postgresql+psycopg").render_as_string(
                hide_password=False
            )
            self.conninfo = url.set(drivername="postgresql").render_as_string(
                hide_password=False
            )
        from store.engine import make_engine
        from store.migrate import upgrade

        eng = make_engine(self.url)
        upgrade(eng)
        eng.dispose()

    def spec(self) -> dict[str, Any]:
        out: dict[str, Any] = {"engine": self.engine_name, "url": self.url}
        if self.engine_name == "sqlite":
            out["path"] = str(self.path)
        else:
            out["conninfo"] = self.conninfo
        return out

    def drop(self) -> None:
        if self.engine_name == "sqlite":
            for suffix in ("", "-wal", "-shm"):
                Path(f"{self.path}{suffix}").unlink(missing_ok=True)
        else:
            import psycopg
            from psycopg import sql

            with psycopg.connect(self.admin, autocommit=True) as conn:
                conn.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                        sql.Identifier(self.name)
                    )
                )


def table_fingerprint(url: str) -> dict[str, Any]:
    """Row counts and a hash of the stored content (ids and run ids aside)."""
    from sqlalchemy import select

    from store.engine import make_engine
    from store.schema import blobs, evidence, findings

    eng = make_engine(url)
    out: dict[str, Any] = {}
    with eng.connect() as conn:
        for t, cols, order in (
            (blobs, [blobs.c.hash, blobs.c.size], blobs.c.hash),
            (evidence, [evidence.c.key, evidence.c.content_hash, evidence.c.collected_at],
             evidence.c.key),
            (findings, [findings.c.key, findings.c.finding_hash, findings.c.observed_at,
                        findings.c.status], findings.c.key),
        ):
            h = hashlib.sha256()
            count = 0
            for row in conn.execute(select(*cols).order_by(order)):
                h.update(repr(tuple(row)).encode())
                count += 1
            out[t.name] = {"rows": count, "sha256": h.hexdigest()}
    eng.dispose()
    return out


def verify_store(url: str) -> bool:
    from store.engine import make_engine
    from store.integrity import verify

    eng = make_engine(url)
    try:
        return verify(eng).ok
    finally:
        eng.dispose()


def _best(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The fastest repetition's figures; the highest peak RSS of all of them."""
    best = dict(min(runs, key=lambda r: r["seconds"]))
    best["peak_rss_mb"] = max(r["peak_rss_mb"] for r in runs)
    best["all_seconds"] = [round(r["seconds"], 4) for r in runs]
    return best


def bench_one(args: argparse.Namespace, engine_name: str, n: int, tmp: Path) -> list[dict]:
    base = {"n": n, "batch_size": args.batch_size,
            "writer": str(args.writer.resolve()) if args.writer else None}
    runs: dict[str, list[dict[str, Any]]] = {"raw": [], "first": [], "rewrite": []}
    checks: dict[str, Any] | None = None
    for rep in range(args.repeat):
        check = args.check and rep == 0
        raw_db = Database(engine_name, args.pg_url, tmp)
        try:
            runs["raw"].append(run_child("raw", {**base, **raw_db.spec(), "run_salt": 1}))
            raw_fp = table_fingerprint(raw_db.url) if check else None
        finally:
            raw_db.drop()
        db = Database(engine_name, args.pg_url, tmp)
        try:
            runs["first"].append(run_child("write", {**base, **db.spec(), "run_salt": 1}))
            fp = table_fingerprint(db.url) if check else None
            # Same content, different volatile ResponseMetadata: nothing may be written.
            runs["rewrite"].append(run_child("write", {**base, **db.spec(), "run_salt": 2}))
            if check:
                checks = {
                    "raw_rows_equal_writer_rows": raw_fp == fp,
                    "rewrite_added_no_rows": fp == table_fingerprint(db.url),
                    "rewrite_counts_written": runs["rewrite"][-1]["counts"]["evidence_written"]
                    + runs["rewrite"][-1]["counts"]["findings_written"],
                    "verify_ok": verify_store(db.url),
                }
        finally:
            db.drop()
        print(f"  {engine_name} N={n} rep {rep + 1}/{args.repeat}: "
              + ", ".join(f"{k} {v[-1]['seconds']:.2f}s" for k, v in runs.items()),
              file=sys.stderr, flush=True)
    out = []
    for scenario, rs in runs.items():
        r = _best(rs)
        out.append({"engine": engine_name, "n": n, "scenario": scenario, **r,
                    "items_per_s": n / r["seconds"],
                    **({"checks": checks} if scenario != "raw" else {})})
    return out


def bench(args: argparse.Namespace) -> dict[str, Any]:
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="annexa-bench-") as tmpdir:
        for engine_name in args.engines:
            for n in args.items:
                results.extend(bench_one(args, engine_name, n, Path(tmpdir)))
    derive(results)
    return {
        "generated_at": datetime.now(UTC).isoformat(),
        "machine": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "sqlite": sqlite3.sqlite_version,
            "loadavg_at_end": os.getloadavg(),
        },
        "batch_size": args.batch_size,
        "repeat": args.repeat,
        "writer": str(args.writer) if args.writer else "store/writer.py",
        "targets": {
            "sqlite_first_vs_raw": TARGET_RAW_RATIO,
            "rewrite_speedup": TARGET_REWRITE_SPEEDUP,
            "rss_growth_max": TARGET_RSS_GROWTH,
        },
        "results": results,
    }


def derive(results: list[dict[str, Any]]) -> None:
    """Ratios: to raw (same engine and N), rewrite speed-up, RSS growth across N."""
    by = {(r["engine"], r["n"], r["scenario"]): r for r in results}
    ns = sorted({r["n"] for r in results})
    for r in results:
        raw = by.get((r["engine"], r["n"], "raw"))
        if r["scenario"] != "raw":
            # The writer's own share: its time without Evidence.body() + SHA-256.
            r["store_seconds"] = max(r["seconds"] - r["body_s"], 1e-9)
        if raw and r["scenario"] != "raw":
            r["ratio_to_raw"] = r["items_per_s"] / raw["items_per_s"]
            r["ratio_to_raw_excl_body"] = raw["seconds"] / r["store_seconds"]
        if r["scenario"] == "rewrite":
            first = by[(r["engine"], r["n"], "first")]
            r["rewrite_speedup"] = first["seconds"] / r["seconds"]
            r["rewrite_speedup_excl_body"] = first["store_seconds"] / r["store_seconds"]
        if r["scenario"] != "raw" and len(ns) > 1 and r["n"] == ns[-1]:
            small = by.get((r["engine"], ns[0], r["scenario"]))
            if small:
                r["rss_growth"] = r["peak_rss_mb"] / small["peak_rss_mb"]


def targets(doc: dict[str, Any]) -> list[str]:
    """One line per target at the largest N, and whether it is met."""
    res = doc["results"]
    big = max(r["n"] for r in res)
    lines = []
    for r in res:
        if r["n"] != big:
            continue
        name = f"{r['engine']} {r['scenario']} N={big:,}"
        if r["engine"] == "sqlite" and r["scenario"] == "first" and "ratio_to_raw" in r:
            ok = r["ratio_to_raw"] >= TARGET_RAW_RATIO
            lines.append(f"{name}: {r['ratio_to_raw']:.2f}x raw executemany "
                         f"(target >= {TARGET_RAW_RATIO}) {'met' if ok else 'NOT MET'}")
        if "rewrite_speedup" in r:
            ok = r["rewrite_speedup"] >= TARGET_REWRITE_SPEEDUP
            lines.append(f"{name}: {r['rewrite_speedup']:.2f}x faster than the first write "
                         f"(target >= {TARGET_REWRITE_SPEEDUP}) {'met' if ok else 'NOT MET'}")
        if "rss_growth" in r:
            ok = r["rss_growth"] <= TARGET_RSS_GROWTH
            lines.append(f"{name}: peak RSS {r['rss_growth']:.2f}x the smallest N "
                         f"(target <= {TARGET_RSS_GROWTH}) {'met' if ok else 'NOT MET'}")
    return lines


def table(doc: dict[str, Any]) -> str:
    head = ("engine", "N", "scenario", "seconds", "gen s", "body() s", "items/s", "peak RSS MB",
            "ratio to raw", "rewrite speed-up", "RSS(max N)/RSS(min N)",
            "ratio excl. body()", "speed-up excl. body()")
    lines = [head]
    for r in doc["results"]:
        def fmt(key: str, spec: str, r: dict[str, Any] = r) -> str:
            return format(r[key], spec) if key in r else ""

        lines.append((
            r["engine"], f"{r['n']:,}", r["scenario"], f"{r['seconds']:.2f}",
            f"{r['gen_s']:.2f}" if r["scenario"] != "raw" else "",
            f"{r['body_s']:.2f}" if r["scenario"] != "raw" else "",
            f"{r['items_per_s']:,.0f}", f"{r['peak_rss_mb']:.1f}",
            fmt("ratio_to_raw", ".2f"), fmt("rewrite_speedup", ".2f"), fmt("rss_growth", ".2f"),
            fmt("ratio_to_raw_excl_body", ".2f"), fmt("rewrite_speedup_excl_body", ".2f"),
        ))
    widths = [max(len(row[i]) for row in lines) for i in range(len(head))]
    out = []
    for j, row in enumerate(lines):
        out.append("| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |")
        if j == 0:
            out.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--items", type=int, nargs="+", default=[10_000, 100_000])
    p.add_argument("--engines", default="sqlite,postgresql",
                   type=lambda s: [e.strip() for e in s.split(",") if e.strip()])
    p.add_argument("--pg-url", default=DEFAULT_PG_URL)
    p.add_argument("--batch-size", type=int, default=1000)
    p.add_argument("--repeat", type=int, default=1,
                   help="run every scenario R times on fresh databases; report the fastest "
                        "(and the highest peak RSS)")
    p.add_argument("--no-check", dest="check", action="store_false",
                   help="skip the (untimed) row-equality and verify checks")
    p.add_argument("--writer", type=Path, default=None,
                   help="benchmark the RunWriter defined in this file instead of store/writer.py "
                        "(e.g. `git show HEAD:store/writer.py > /tmp/writer_before.py`)")
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--child", nargs=2, metavar=("KIND", "SPEC"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        kind, spec = args.child[0], json.loads(args.child[1])
        fn = child_raw if kind == "raw" else child_write
        print(json.dumps(fn(spec)))
        return 0
    for e in args.engines:
        if e not in ("sqlite", "postgresql"):
            p.error(f"unknown engine {e!r}")
    # Interrupted runs still drop their PostgreSQL databases and temp files.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    doc = bench(args)
    doc["target_summary"] = targets(doc)
    print(table(doc))
    print("\n" + "\n".join(doc["target_summary"]))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=2, default=str))
    print(f"\nwritten to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

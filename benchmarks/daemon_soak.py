"""Soak: ``annexa daemon`` replicas on 5-second schedules over fake sources.

    python benchmarks/daemon_soak.py [--duration 600] [--period 5] [--connectors 3]
        [--replicas 2] [--records 50] [--pg-url postgresql://postgres@127.0.0.1:5432/postgres]

Starts ``--replicas`` real ``annexa daemon`` processes (each with its own spool
directory, as each container has its own volume) against a fresh PostgreSQL database,
with ``--connectors`` instances of the test connector ``paced`` (registered through an
entry point in a throw-away ``.dist-info``, see tests/daemon_fixtures.py), each on
``every <period>s``. One instance's payloads change every run; the others are stable
(change-only storage then adds no evidence rows). After ``--duration`` seconds the
replicas get SIGTERM. Reported (JSON on stdout, a summary on stderr):

* scheduled vs executed: due slots of the grid inside the measured window (after a
  warm-up of two periods, up to one period before the end) times connectors, and the
  claims recorded in ``schedule_claims`` for those slots; ``missed`` = slots with no
  claim, ``duplicate`` = slots claimed more than once (takeovers excluded);
* schedule lateness p50/p95/max: claim time minus due time, from ``schedule_claims``;
* overlapping runs of one connector (must be 0) and runs by status;
* RSS of every replica (``/proc/<pid>/status`` VmRSS) after warm-up and at the end;
* open database connections (``pg_stat_activity`` for the database), sampled every
  second: the maximum of each minute, and of the first and second half of the window
  (a single sample says little: each replica's SQLAlchemy pool keeps up to 5 idle
  connections and opens up to 10 more under load, closed again when returned; the
  count climbs while the pools fill, then plateaus. "No growth" = the second half never
  exceeds the idle pools, 5 per replica: a leaked connection would pile up above that).

Targets: no missed or duplicate run, RSS growth under 10 %, no connection growth.

With ``--kills N`` (issue 12), replica 1 is SIGKILLed N times, each time while it is
in a run, and restarted; replica 0 lives throughout. Then "missed" due times are those
neither claimed nor recorded in ``schedule_missed`` (``unaccounted``; recorded ones are
reported as ``recorded_missed``), and the takeover latency of each kill is the time
from the kill to the survivor's takeover claim of the killed run's due time. RSS is
sampled every 10 s: the slope per replica process (least squares, MiB per 10 minutes)
after ``--rss-warmup`` seconds.

``--stress [N]`` instead repeats the scenarios of tests/daemon_scenarios.py (SIGKILL
one of two replicas mid-run → takeover through the run lock; SIGTERM at claim time →
nothing unsealed) N times each (default 20) while a CPU hog loads every core, and
reports failures and takeover latencies.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from sqlalchemy import select
from sqlalchemy.engine import make_url

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from store.engine import make_engine  # noqa: E402
from store.schema import runs  # noqa: E402
from store.schema_daemon import schedule_claims, schedule_missed  # noqa: E402
from tests.daemon_scenarios import running_on  # noqa: E402

ANNEXA = Path(sys.executable).parent / "annexa"
#: Database connections a replica keeps open when idle: its pool's 5 and the session
#: holding its run locks (store/runlocks.py).
IDLE_PER_REPLICA = 6


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return -1


def plugin_dir(root: Path) -> Path:
    """``root/plugin``, for PYTHONPATH: registers the tests' ``paced`` connector."""
    from tests.daemon_fixtures import connector_plugin

    (root / "plugin").mkdir(parents=True)
    return connector_plugin(root / "plugin", "paced", "tests.daemon_fixtures:PacedConnector")


def write_config(path: Path, db_url: str, args: argparse.Namespace) -> Path:
    from tests.daemon_fixtures import config_head
    from tests.fakes import write_fake_mapping

    path.parent.mkdir(parents=True)
    write_fake_mapping(path.parent / "maps")
    lines = [
        *config_head(db_url, "info"),
        "[daemon]",
        'host = "127.0.0.1"',
        f"heartbeat = {args.heartbeat}",
        f"lease = {args.lease}",
        f"jitter = {args.jitter}",
        'grace_period = "10s"',
        f"spool_dir = {json.dumps(str(path.parent / 'spool'))}",
        'notifications = { evaluate_every = "30s" }',
    ]
    for i in range(args.connectors):
        lines += [
            "[[connectors]]",
            'type = "paced"',
            f'name = "src-{i}"',
            f'schedule = "every {args.period}s"',
            "[connectors.options]",
            f'scope = "acct-{i}"',
            f"records = {args.records}",
            f"delay = {args.delay}",
            f"stamp = {'true' if i == 0 else 'false'}",
        ]
    path.write_text("\n".join(lines) + "\n")
    return path


def pg_connections(admin: str, db: str) -> int:
    with psycopg.connect(admin, autocommit=True) as conn:
        return conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = %s", (db,)
        ).fetchone()[0]


def scrape_pool(log_path: Path) -> dict[str, float]:
    """The replica's pool gauges from its /metrics (its port is in its start-up log)."""
    import urllib.request

    port = None
    for line in log_path.read_text(errors="replace").splitlines():
        if '"daemon started"' in line:
            port = json.loads(line)["port"]
    if port is None:
        return {}
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
            text = resp.read().decode()
    except OSError:  # a replica just restarted: not listening yet
        return {}
    out = {}
    for line in text.splitlines():
        for name in ("annexa_db_pool_checked_out", "annexa_db_pool_idle"):
            if line.startswith(name + " "):
                out[name.removeprefix("annexa_db_pool_")] = float(line.split()[1])
    return out


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    k = (len(values) - 1) * p
    lo, hi = int(k), min(int(k) + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (k - lo)


def slope_mib_per_10min(series: list[tuple[float, int]]) -> float | None:
    """Least-squares slope of (seconds, KiB) samples, in MiB per 10 minutes."""
    if len(series) < 3:
        return None
    xs = [t for t, _ in series]
    ys = [k for _, k in series]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    den = sum((x - mx) ** 2 for x in xs)
    if den == 0:
        return None
    kib_per_s = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / den
    return round(kib_per_s * 600 / 1024, 3)


def cpu_hog() -> list[subprocess.Popen]:
    """One busy process per core (the issue's "CPU hog loads both cores")."""
    return [
        subprocess.Popen([sys.executable, "-c", "while True: pass"])
        for _ in range(os.cpu_count() or 2)
    ]


def stress(args: argparse.Namespace) -> int:
    """Repeat the daemon scenarios under a CPU hog; report failures and figures."""
    sys.path.insert(0, str(REPO))
    from tests.daemon_scenarios import SCENARIOS

    admin = make_url(args.pg_url).set(drivername="postgresql").render_as_string(False)
    work = Path(tempfile.mkdtemp(prefix="annexa-stress-"))
    plugin = plugin_dir(work)
    os.environ["PYTHONPATH"] = os.pathsep.join([str(plugin), str(REPO)])
    hogs = cpu_hog()
    # SIGTERM ends the benchmark through the finally clauses (hogs and daemons stopped).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    results: dict[str, Any] = {}
    try:
        for name, scenario in SCENARIOS.items():
            if args.only and name not in args.only:
                continue
            failures: list[str] = []
            figures: list[dict[str, Any]] = []
            t0 = time.monotonic()
            for i in range(args.stress):
                db = f"annexa_stress_{uuid.uuid4().hex[:8]}"
                with psycopg.connect(admin, autocommit=True) as conn:
                    conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(db)))
                url = make_url(args.pg_url).set(drivername="postgresql+psycopg", database=db)
                d = work / f"{name}-{i}"
                d.mkdir()
                try:
                    figures.append(scenario(url.render_as_string(False), plugin, d))
                    print(f"{name} #{i + 1}: ok {figures[-1]}", file=sys.stderr)
                except Exception as exc:  # noqa: BLE001 - counted and reported
                    failures.append(f"#{i + 1}: {type(exc).__name__}: {exc}"[:500])
                    print(f"{name} #{i + 1}: FAILED {failures[-1]}", file=sys.stderr)
                finally:
                    with psycopg.connect(admin, autocommit=True) as conn:
                        conn.execute(
                            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                                sql.Identifier(db)
                            )
                        )
            entry: dict[str, Any] = {
                "repetitions": args.stress,
                "failures": len(failures),
                "failure_messages": failures,
                "seconds": round(time.monotonic() - t0, 1),
            }
            lat = [f["takeover_s"] for f in figures if "takeover_s" in f]
            if lat:
                entry["takeover_s"] = {
                    "min": min(lat),
                    "median": round(statistics.median(lat), 3),
                    "max": max(lat),
                }
            if name == "sigterm":
                entry["claims_handed_back_unstarted"] = sum(f["handed_back"] for f in figures)
            results[name] = entry
    finally:
        for h in hogs:
            h.kill()
            h.wait()
    results["cpu_hog_processes"] = len(hogs)
    print(json.dumps(results, indent=2))
    ok = all(v["failures"] == 0 for k, v in results.items() if isinstance(v, dict))
    print(f"stress {'PASSED' if ok else 'FAILED'}", file=sys.stderr)
    return 0 if ok else 1


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=float, default=600.0, help="seconds (default 600)")
    ap.add_argument("--period", type=int, default=5, help="schedule period in seconds")
    ap.add_argument("--connectors", type=int, default=3)
    ap.add_argument("--replicas", type=int, default=2)
    ap.add_argument("--records", type=int, default=50, help="disks per run and connector")
    ap.add_argument("--heartbeat", type=float, default=1.0)
    ap.add_argument("--lease", type=float, default=5.0)
    ap.add_argument("--jitter", type=float, default=0.5)
    ap.add_argument("--pg-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    ap.add_argument("--keep", action="store_true", help="keep the database and the logs")
    ap.add_argument("--delay", type=float, default=0.0, help="seconds between records")
    ap.add_argument("--kills", type=int, default=0, help="SIGKILL replica 1 mid-run N times")
    ap.add_argument("--rss-warmup", type=float, default=120.0, help="seconds before the slope")
    ap.add_argument(
        "--stress", type=int, nargs="?", const=20, default=0, help="repeat the scenarios N times"
    )
    ap.add_argument(
        "--only", action="append", choices=["takeover", "sigterm"], help="with --stress"
    )
    args = ap.parse_args()
    if args.stress:
        return stress(args)

    admin = make_url(args.pg_url).set(drivername="postgresql").render_as_string(False)
    db = f"annexa_soak_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(db)))
    db_url = make_url(args.pg_url).set(drivername="postgresql+psycopg", database=db)
    db_url_s = db_url.render_as_string(hide_password=False)
    work = Path(tempfile.mkdtemp(prefix="annexa-soak-"))
    plugin = plugin_dir(work)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(plugin), str(REPO)])}
    env.pop("ANNEXA_DATABASE_URL", None)
    procs: list[subprocess.Popen] = []
    logs = []
    cfgs = [
        write_config(work / f"replica-{r}" / "annexa.toml", db_url_s, args)
        for r in range(args.replicas)
    ]

    def start(r: int) -> subprocess.Popen:
        log = (cfgs[r].parent / "daemon.log").open("ab")
        logs.append(log)
        return subprocess.Popen(
            [str(ANNEXA), "daemon", "--config", str(cfgs[r]), "--port", "0"],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=cfgs[r].parent,
        )

    procs = [start(r) for r in range(args.replicas)]
    watch_engine = make_engine(db_url)
    rss_series: dict[int, list[tuple[float, int]]] = {}
    kills: list[dict[str, Any]] = []
    t_start = datetime.now(UTC)
    warmup = 2 * args.period
    print(
        f"soak: {args.replicas} replicas, {args.connectors} connectors every "
        f"{args.period}s, {args.duration:.0f}s, work dir {work}",
        file=sys.stderr,
    )
    time.sleep(warmup)
    rss_start = {p.pid: rss_kib(p.pid) for p in procs}
    t_window0 = datetime.now(UTC)
    t0 = time.monotonic()
    window = max(0.0, args.duration - warmup)
    deadline = t0 + window
    kill_at = [t0 + window * (i + 1) / (args.kills + 1) for i in range(args.kills)]
    samples: list[tuple[float, int]] = []  # (seconds into the window, connections)
    next_rss = t0
    while time.monotonic() < deadline:
        if any(p.poll() is not None for p in procs):
            print("a replica exited early", file=sys.stderr)
            break
        now_m = time.monotonic()
        samples.append((now_m - t0, pg_connections(admin, db)))
        if now_m >= next_rss:
            for p in procs:
                rss_series.setdefault(p.pid, []).append((now_m - t0 + warmup, rss_kib(p.pid)))
            next_rss = now_m + 10
        if kill_at and now_m >= kill_at[0] and args.replicas > 1:
            victim = procs[1]
            orphan = running_on(watch_engine, victim.pid)
            if orphan is not None or now_m >= kill_at[0] + 4 * args.period:
                kill_at.pop(0)
                if orphan is not None:
                    victim.kill()
                    kills.append({"pid": victim.pid, "at": datetime.now(UTC), "orphan": orphan})
                    victim.wait()
                    procs[1] = start(1)
                    print(f"killed replica 1 (pid {victim.pid}) in run {orphan}", file=sys.stderr)
                continue
            time.sleep(0.2)
            continue
        time.sleep(1)
    t_window1 = datetime.now(UTC)
    watch_engine.dispose()
    rss_end = {p.pid: rss_kib(p.pid) for p in procs}
    for p in procs:
        rss_start.setdefault(p.pid, rss_series.get(p.pid, [(0, rss_end[p.pid])])[0][1])
    pools = {}
    for r, p in enumerate(procs):
        pools[str(p.pid)] = scrape_pool(work / f"replica-{r}" / "daemon.log")
    span = samples[-1][0] if samples else 0.0
    per_minute: list[int] = []
    for t, c in samples:
        m = int(t // 60)
        while len(per_minute) <= m:
            per_minute.append(0)
        per_minute[m] = max(per_minute[m], c)
    half = span / 2
    first_half = [c for t, c in samples if t < half] or [0]
    second_half = [c for t, c in samples if t >= half] or [0]
    for p in procs:
        p.send_signal(signal.SIGTERM)
    codes = [p.wait(30) for p in procs]
    for log in logs:
        log.close()

    engine = make_engine(db_url)
    with engine.connect() as conn:
        claims = conn.execute(select(schedule_claims)).mappings().all()
        all_runs = conn.execute(select(runs)).mappings().all()
        missed_rows = conn.execute(select(schedule_missed)).mappings().all()
    engine.dispose()
    recorded = {(m["name"], m["due_at"]) for m in missed_rows}
    takeovers = []
    for k in kills:
        mine = next((c for c in claims if c["run_id"] == k["orphan"]), None)
        if mine is None:
            continue
        after = [
            c
            for c in claims
            if c["takeover"]
            and c["name"] == mine["name"]
            and c["due_at"] == mine["due_at"]
            and c["claimed_at"] > k["at"]
        ]
        if after:
            first_take = min(after, key=lambda c: c["claimed_at"])
            takeovers.append(round((first_take["claimed_at"] - k["at"]).total_seconds(), 3))
        else:
            takeovers.append(None)
    period = timedelta(seconds=args.period)
    names0 = sorted({c["name"] for c in claims})
    # The window starts at the first grid slot after the warm-up, and not before every
    # schedule has its first claim (replicas slow to start on a loaded machine).
    first_claims = [min(c["claimed_at"] for c in claims if c["name"] == n) for n in names0]
    start_at = max([t_window0, *first_claims])
    first = datetime.fromtimestamp(
        (int(start_at.timestamp()) // args.period + 1) * args.period, UTC
    )
    slots = []
    g = first
    while g <= t_window1 - period:
        slots.append(g)
        g += period
    names = [f"src-{i}" for i in range(args.connectors)]
    by_slot: dict[tuple[str, datetime], int] = {}
    lateness = []
    for c in claims:
        if c["takeover"]:
            continue
        key = (c["name"], c["due_at"])
        by_slot[key] = by_slot.get(key, 0) + 1
        if first <= c["due_at"] <= slots[-1]:
            lateness.append((c["claimed_at"] - c["due_at"]).total_seconds())
    scheduled = len(slots) * len(names)
    executed = sum(by_slot.get((n, s), 0) for n in names for s in slots)
    missed = sum(
        1 for n in names for s in slots if by_slot.get((n, s), 0) == 0 and (n, s) not in recorded
    )
    recorded_missed = sum(1 for n in names for s in slots if (n, s) in recorded)
    # A claim whose run was lost with its replica and not taken over is also recorded
    # missed (claimed, not run): not a double count.
    lost = {
        (c["name"], c["due_at"])
        for c in claims
        if not c["takeover"] and c["status"] in ("aborted", "not_started")
    }
    both = sum(
        1
        for n in names
        for s in slots
        if by_slot.get((n, s), 0) and (n, s) in recorded and (n, s) not in lost
    )
    duplicate = sum(1 for n in names for s in slots if by_slot.get((n, s), 0) > 1)
    overlaps = 0
    for n in names:
        spans = sorted((r["started_at"], r["finished_at"]) for r in all_runs if r["source"] == n)
        overlaps += sum(
            1 for (_, f1), (s2, _) in itertools.pairwise(spans) if f1 is None or f1 > s2
        )
    statuses: dict[str, int] = {}
    for r in all_runs:
        statuses[r["status"]] = statuses.get(r["status"], 0) + 1
    per_replica: dict[str, int] = {}
    for c in claims:
        pid = c["claimed_by"].split(":")[1]
        per_replica[pid] = per_replica.get(pid, 0) + 1
    result: dict[str, Any] = {
        "duration_s": round((t_window1 - t_start).total_seconds(), 1),
        "window": [t_window0.isoformat(), t_window1.isoformat()],
        "replicas": args.replicas,
        "connectors": args.connectors,
        "period_s": args.period,
        "records_per_run": args.records,
        "scheduled": scheduled,
        "executed": executed,
        "missed": missed,
        "unaccounted": missed,
        "recorded_missed": recorded_missed,
        "claimed_and_recorded_missed": both,
        "duplicate": duplicate,
        "kills": len(kills),
        "takeover_s": {
            "each": takeovers,
            "median": (
                round(statistics.median([t for t in takeovers if t is not None]), 3)
                if any(t is not None for t in takeovers)
                else None
            ),
            "max": max((t for t in takeovers if t is not None), default=None),
            "not_taken_over": sum(1 for t in takeovers if t is None),
        },
        "rss_slope_mib_per_10min": {
            str(pid): {
                "slope": slope_mib_per_10min([x for x in ser if x[0] >= args.rss_warmup]),
                "samples": len([x for x in ser if x[0] >= args.rss_warmup]),
                "span_s": round(ser[-1][0] - ser[0][0], 1),
            }
            for pid, ser in rss_series.items()
        },
        "overlapping_runs": overlaps,
        "runs_by_status": statuses,
        "claims_per_replica_pid": per_replica,
        "lateness_s": {
            "p50": round(pct(lateness, 0.5), 4),
            "p95": round(pct(lateness, 0.95), 4),
            "max": round(max(lateness), 4) if lateness else None,
            "mean": round(statistics.fmean(lateness), 4) if lateness else None,
        },
        "rss_kib": {
            str(pid): {  # replicas alive at the end
                "start": rss_start[pid],
                "end": rss_end[pid],
                "growth_pct": round(100 * (rss_end[pid] - rss_start[pid]) / rss_start[pid], 1),
            }
            for pid in rss_end
        },
        "db_connections": {
            "max_per_minute": per_minute,
            "first_half_max": max(first_half),
            "second_half_max": max(second_half),
            "last_sample": samples[-1][1] if samples else 0,
            "pool_ceiling": args.replicas * 15,
            "pools_at_end": pools,
        },
        "exit_codes": codes,
    }
    print(json.dumps(result, indent=2))
    lived_throughout = {str(p.pid) for p in procs if p.pid in rss_series and p.pid in rss_start}
    lived_throughout = {
        pid for pid in lived_throughout if rss_series[int(pid)][0][0] <= warmup + 11
    }
    ok = (
        missed == 0
        and both == 0
        and all(t is not None for t in takeovers)
        and duplicate == 0
        and overlaps == 0
        # Replicas restarted after a kill are still warming up: judged by the others.
        and all(
            v["growth_pct"] < 10 for pid, v in result["rss_kib"].items() if pid in lived_throughout
        )
        and all(
            (v["slope"] or 0) < 1.0
            for pid, v in result["rss_slope_mib_per_10min"].items()
            if pid in lived_throughout
        )
        # Per replica: 5 idle pooled connections and the run-lock session; plus the
        # benchmark's own watcher.
        and max(second_half) <= args.replicas * IDLE_PER_REPLICA + 1
        and all(c == 0 for c in codes)
    )
    print(f"soak {'PASSED' if ok else 'FAILED'} the targets", file=sys.stderr)
    if not args.keep:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(db))
            )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

"""One run of a simulated AWS-sized organisation spread over 1, 2 and 3 daemon replicas.

``[daemon] distribute = true``: the run's units (account x region x service) go
through procrastinate's queue in PostgreSQL to every replica (collector/daemon/
distribute.py). Each configuration runs on a fresh database: N real ``annexa daemon``
subprocesses start, one claims the schedule and dispatches the run, all of them
execute units, the last unit seals it. Timed: from the run's ``started_at`` to its
``finished_at`` (both written by the database's clients, in the run's row). Also
measured: CPU seconds of the replica processes (user + system, from /proc, PostgreSQL
excluded) per resource, and each replica's peak RSS (VmHWM). As a baseline, the same
organisation collected by ``annexa collect`` in one process (no queue) on a fresh
database.

The source is a fast fake, not moto: ``SimConnector`` synthesises each unit's
resources from the unit's key (no network), so that what is measured is the engine,
the queue and the database rather than a fake AWS. It is registered as a connector
plugin through a throw-away ``.dist-info`` on PYTHONPATH, as a third-party package
would register one.

    python benchmarks/replicas.py                # 20 x 4 x 2 units, 320 resources each
    python benchmarks/replicas.py --per-unit 40  # quick look (6,400 resources)
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import psycopg
from psycopg import sql
from sqlalchemy import select
from sqlalchemy.engine import make_url

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from core.checks import CheckSpec  # noqa: E402
from core.connector import CollectContext, Connector, ConnectorOptions  # noqa: E402
from core.records import Coverage, Evidence, Record  # noqa: E402
from store.engine import make_engine  # noqa: E402
from store.schema import runs  # noqa: E402

ANNEXA = Path(sys.executable).parent / "annexa"
SERVICES = ("disk", "user")


class SimOptions(ConnectorOptions):
    accounts: int = 20
    regions: int = 4
    per_unit: int = 320


class SimConnector(Connector):
    """A simulated organisation: ``accounts`` x ``regions`` x (disk, user)."""

    type = "simorg"
    prefix = "fake"
    Options = SimOptions
    SERVICES: ClassVar[tuple[str, ...]] = SERVICES

    @classmethod
    def checks(cls) -> list[CheckSpec]:
        from tests.fakes import FAKE_REGISTRY

        return list(FAKE_REGISTRY)

    def plan_units(self, ctx: CollectContext) -> list[tuple[str, str, str]]:
        o: SimOptions = self.options  # type: ignore[assignment]
        return [
            (f"{100000000000 + a}", f"region-{r}", s)
            for a in range(o.accounts)
            for r in range(o.regions)
            for s in SERVICES
        ]

    def collect(self, ctx: CollectContext) -> Iterator[Record]:
        for unit in self.plan_units(ctx):
            yield from self.collect_unit(ctx, *unit)

    def collect_unit(
        self, ctx: CollectContext, scope: str, region: str, service: str
    ) -> Iterator[Record]:
        o: SimOptions = self.options  # type: ignore[assignment]
        for i in range(o.per_unit):
            rid = f"{scope}-{region}-{service}-{i}"
            if service == "disk":
                payload: dict[str, Any] = {
                    "VolumeId": rid, "Size": 8 + i % 500, "Encrypted": i % 7 != 0,
                    "encrypted": i % 7 != 0, "AvailabilityZone": f"{region}a",
                    "Tags": [{"Key": "team", "Value": f"t{i % 13}"}],
                }
                yield Evidence(scope, region, "fake.disk.volume", rid, payload)
            else:
                payload = {"name": rid, "mfa": i % 5 != 0, "groups": [f"g{i % 9}"],
                           "created": "2024-01-01T00:00:00Z"}
                yield Evidence(scope, region, "fake.user.account", rid, payload)
        yield Coverage(scope, region, service, ok=True)


def plugin_dir(root: Path) -> Path:
    """``root/plugin``, for PYTHONPATH: registers this module's ``simorg`` connector."""
    from tests.daemon_fixtures import connector_plugin

    (root / "plugin").mkdir(parents=True)
    return connector_plugin(root / "plugin", "simorg", "benchmarks.replicas:SimConnector")


def write_config(path: Path, db_url: str, args: argparse.Namespace, distribute: bool) -> Path:
    from tests.fakes import MAPPING

    path.parent.mkdir(parents=True)
    (path.parent / "maps").mkdir()
    (path.parent / "maps" / "fake.toml").write_text(MAPPING)
    lines = [
        "[database]", f"url = {json.dumps(db_url)}",
        "[mappings]", 'paths = ["maps"]',
        "[log]", 'format = "json"', 'level = "info"',
        "[daemon]", 'host = "127.0.0.1"', "heartbeat = 2", "lease = 10", "jitter = 0",
        f"distribute = {json.dumps(distribute)}", f"unit_workers = {args.unit_workers}",
        f"spool_dir = {json.dumps(str(path.parent / 'spool'))}", "spool = false",
        "[[connectors]]", 'type = "simorg"', 'name = "org"', 'schedule = "every 24h"',
        "[connectors.options]", f"accounts = {args.accounts}", f"regions = {args.regions}",
        f"per_unit = {args.per_unit}",
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return -1.0


class Database:
    def __init__(self, admin: str) -> None:
        self.admin = admin
        self.name = f"annexa_bench_replicas_{uuid.uuid4().hex[:8]}"

    def __enter__(self) -> str:
        with psycopg.connect(self.admin, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.name)))
        url = make_url(self.admin).set(drivername="postgresql+psycopg", database=self.name)
        return url.render_as_string(hide_password=False)

    def __exit__(self, *exc: object) -> None:
        with psycopg.connect(self.admin, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                    sql.Identifier(self.name)
                )
            )


def sealed_run(db_url: str) -> Any:
    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            return conn.execute(
                select(runs).where(runs.c.source == "org", runs.c.status != "running")
            ).first()
    except Exception:  # noqa: BLE001 - the schema may not exist yet
        return None
    finally:
        engine.dispose()


def run_replicas(n: int, args: argparse.Namespace, root: Path, env: dict[str, str]) -> dict:
    with Database(args.pg_url) as db_url:
        procs = []
        logs = []
        for i in range(n):
            cfg = write_config(root / f"r{n}-{i}" / "annexa.toml", db_url, args, True)
            log = (cfg.parent / "daemon.log").open("wb")
            logs.append(log)
            procs.append(subprocess.Popen(
                [str(ANNEXA), "daemon", "--config", str(cfg), "--port", "0"],
                stdout=log, stderr=subprocess.STDOUT, env=env, cwd=cfg.parent,
            ))
        deadline = time.monotonic() + args.timeout
        run = None
        while run is None and time.monotonic() < deadline:
            time.sleep(0.5)
            if any(p.poll() is not None for p in procs):
                raise SystemExit(f"a replica exited early; see {root}/r{n}-*/daemon.log")
            run = sealed_run(db_url)
        if run is None:
            raise SystemExit(f"{n} replicas: the run was not sealed within {args.timeout}s")
        cpu = [cpu_seconds(p.pid) for p in procs]
        rss = [peak_rss_mib(p.pid) for p in procs]
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            p.wait(60)
        for log in logs:
            log.close()
        counts = json.loads(run.counts)
        return {
            "replicas": n,
            "status": run.status,
            "seconds": (run.finished_at - run.started_at).total_seconds(),
            "cpu_s": sum(cpu),
            "cpu_per_replica_s": [round(c, 2) for c in cpu],
            "peak_rss_mib": [round(r, 1) for r in rss],
            "evidence_written": counts.get("evidence_written"),
            "units": counts.get("units"),
            "replicas_used": len(counts.get("replicas", [])),
        }


def run_single(args: argparse.Namespace, root: Path, env: dict[str, str]) -> dict:
    with Database(args.pg_url) as db_url:
        cfg = write_config(root / "single" / "annexa.toml", db_url, args, False)
        subprocess.run([str(ANNEXA), "db", "upgrade", "--config", str(cfg)], env=env,
                       cwd=cfg.parent, check=True, capture_output=True)
        t0 = time.monotonic()
        p = subprocess.Popen([str(ANNEXA), "collect", "--config", str(cfg)], env=env,
                             cwd=cfg.parent, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
        _, status, usage = os.wait4(p.pid, 0)
        wall = time.monotonic() - t0
        p.returncode = os.waitstatus_to_exitcode(status)
        run = sealed_run(db_url)
        assert run is not None, "annexa collect did not seal a run"
        return {
            "replicas": "collect (1 process, no queue)",
            "status": run.status,
            "seconds": (run.finished_at - run.started_at).total_seconds(),
            "process_seconds": wall,
            "cpu_s": usage.ru_utime + usage.ru_stime,
            "peak_rss_mib": [round(usage.ru_maxrss / 1024, 1)],
            "evidence_written": json.loads(run.counts).get("evidence_written"),
        }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--accounts", type=int, default=20)
    ap.add_argument("--regions", type=int, default=4)
    ap.add_argument("--per-unit", type=int, default=320)
    ap.add_argument("--replicas", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--unit-workers", type=int, default=1)
    ap.add_argument("--no-single", action="store_true", help="skip the annexa collect baseline")
    ap.add_argument("--timeout", type=float, default=1800)
    ap.add_argument(
        "--pg-url",
        default=os.environ.get(
            "ANNEXA_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
        ),
    )
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks/results/replicas.json")
    args = ap.parse_args()
    args.pg_url = make_url(args.pg_url).set(drivername="postgresql").render_as_string(
        hide_password=False
    )
    import tempfile

    resources = args.accounts * args.regions * len(SERVICES) * args.per_unit
    load_before = os.getloadavg()
    print(f"{args.accounts} accounts x {args.regions} regions x {len(SERVICES)} services = "
          f"{args.accounts * args.regions * len(SERVICES)} units, {resources:,} resources; "
          f"{os.cpu_count()} CPUs, load {load_before[0]:.1f} {load_before[1]:.1f} "
          f"{load_before[2]:.1f}")
    results = []
    with tempfile.TemporaryDirectory(prefix="annexa-replicas-") as tmp:
        root = Path(tmp)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(plugin_dir(root)), str(REPO)])}
        env.pop("ANNEXA_CONFIG", None)
        env.pop("ANNEXA_DATABASE_URL", None)
        if not args.no_single:
            results.append(run_single(args, root, env))
            print(f"  collect, 1 process: {results[-1]['seconds']:.1f} s")
        for n in args.replicas:
            results.append(run_replicas(n, args, root, env))
            print(f"  {n} replica(s): {results[-1]['seconds']:.1f} s")
    base = next((r["seconds"] for r in results if r["replicas"] == 1), None)
    print()
    print(f"{'configuration':<32} {'wall s':>8} {'speed-up':>9} {'CPU ms/resource':>16} "
          f"{'peak RSS MiB per process':>26} status")
    for r in results:
        speed = f"{base / r['seconds']:.2f}x" if base and isinstance(r["replicas"], int) else "-"
        label = r["replicas"] if isinstance(r["replicas"], str) else f"{r['replicas']} replica(s)"
        print(f"{label:<32} {r['seconds']:>8.1f} {speed:>9} "
              f"{1000 * r['cpu_s'] / resources:>16.3f} "
              f"{', '.join(f'{x:.0f}' for x in r['peak_rss_mib']):>26} {r['status']}")
    load_after = os.getloadavg()
    print(f"load average after: {load_after[0]:.1f} {load_after[1]:.1f} {load_after[2]:.1f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "resources": resources, "cpus": os.cpu_count(), "load_before": load_before,
        "load_after": load_after, "results": results,
    }, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Benchmark: the cost of one more hourly run on a kept year-of-history database.

    python benchmarks/more_runs.py URL [--runs 100] [--resources 10000] [--profile FILE]

Writes ``--runs`` more runs onto a database kept by ``benchmarks/console.py
--generate-only`` (or ``history.py --keep-db``), as its ``generate`` writes them: 1 %
of the resources changed per run, through ``store.writer.RunWriter`` with the writer's
clock simulated an hour apart after the database's last run. Prints the mean and median
wall time per run; ``--profile`` writes a cProfile of them (pstats format). Run on two
copies of one database (SQLite: the file; PostgreSQL: ``CREATE DATABASE … TEMPLATE``)
with ``PYTHONPATH`` set to two code trees, side by side, to compare two versions of the
writer and the seal at the same history length and the same load.
"""

from __future__ import annotations

import argparse
import cProfile
import random
import statistics
import sys
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.append(str(ROOT))  # after PYTHONPATH: the code tree measured comes first


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("url")
    p.add_argument("--runs", type=int, default=100)
    p.add_argument("--resources", type=int, default=10_000)
    p.add_argument("--profile", metavar="FILE")
    a = p.parse_args()

    from sqlalchemy import func, select

    import store.writer as writer_mod
    from benchmarks.history import SimClock
    from core.records import Evidence, Finding
    from mappings.loader import load_mappings
    from store.engine import make_engine
    from store.migrate import upgrade
    from store.schema import runs

    print(f"code: {writer_mod.__file__}", flush=True)
    index = load_mappings()
    checks = ["aws.s3.bucket_default_encryption", "aws.s3.bucket_public_access_block"]
    engine = make_engine(a.url)
    upgrade(engine)
    with engine.connect() as c:
        last = c.execute(select(func.max(runs.c.finished_at))).scalar()
    start = last + timedelta(hours=1)
    clock = SimClock(start)
    writer_mod.utcnow = clock
    rnd = random.Random(99)
    prof = cProfile.Profile() if a.profile else None
    per: list[float] = []
    for h in range(a.runs):
        t = time.perf_counter()
        if prof:
            prof.enable()
        clock.now = start + timedelta(hours=h)
        when = clock.now + timedelta(seconds=30)
        w = writer_mod.RunWriter(engine, source="bench-aws", connector_type="aws",
                                 config_digest="c" * 64, mapping_digest=index.digest,
                                 agent_version="bench")
        w.start()
        for i in rnd.sample(range(a.resources), a.resources // 100):
            name = f"bucket-{i:05d}"
            eh = w.add_evidence(Evidence("111122223333", "eu-west-1", "aws.s3.bucket", name,
                                         {"Name": name, "Version": f"more-{h}-{i}"},
                                         collected_at=when))
            for ck in checks:
                st = "pass" if rnd.random() < 0.8 else "fail"
                w.add_finding(Finding(ck, "111122223333", "eu-west-1", "aws.s3.bucket", name,
                                      st, "high", f"{name}: {ck} {st} {h}", evidence_hash=eh,
                                      observed_at=when, controls=index.controls_for(ck)))
        w.finish("succeeded")
        if prof:
            prof.disable()
        per.append(time.perf_counter() - t)
    engine.dispose()
    print(f"{a.runs} runs: mean {1000 * statistics.mean(per):.0f} ms/run, "
          f"median {1000 * statistics.median(per):.0f}", flush=True)
    if prof:
        prof.dump_stats(a.profile)


if __name__ == "__main__":
    main()

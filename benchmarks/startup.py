"""Benchmark: how long `annexa --help` and `annexa controls` take to start.

    python benchmarks/startup.py [--repeat 10] [--db PATH]

A person's first command is `annexa --help`; scripts call read commands in loops. Both
pay Python's start-up and every import at module level, so the CLI imports alembic,
SQLAlchemy, structlog, pydantic and the SDKs only inside the commands that use them.

Figures (median of ``--repeat`` runs each, wall time of a fresh process):

``baseline``           ``python -c "import typer, rich"`` (the floor of any typer CLI)
``annexa --help``      target: at most 2x the baseline
``annexa --version``   imports alembic (schema revision) and asks git for the commit
``annexa controls``    on a demo database (``annexa demo`` writes it first when ``--db``
                       does not exist), table output piped

Every figure is printed with its ratio to the baseline measured in the same run, so a
loaded machine slows both alike.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _time(argv: list[str], repeat: int, cwd: Path, env: dict[str, str]) -> float:
    """Median wall time of ``repeat`` fresh processes running ``argv`` (seconds)."""
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        proc = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, check=False)
        samples.append(time.perf_counter() - start)
        if proc.returncode != 0:
            raise SystemExit(f"{argv} exited {proc.returncode}: {proc.stderr.decode()[-400:]}")
    return statistics.median(samples)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--db", type=Path, default=None, help="demo database (default: temp)")
    args = parser.parse_args()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANNEXA_")}
    py = sys.executable
    script = Path(py).parent / "annexa"  # the installed entry point, as people run it
    annexa = [str(script)] if script.exists() else [py, "-m", "collector"]
    with tempfile.TemporaryDirectory(prefix="annexa-startup-") as tmp:
        work = Path(tmp)
        db = args.db or work / "annexa.db"
        if not db.exists():
            print(f"writing a demo database to {db} (annexa demo) …", flush=True)
            subprocess.run([*annexa, "demo", "--db", str(db)], cwd=work, env=env,
                           capture_output=True, check=False)
        env["ANNEXA_DATABASE_URL"] = f"sqlite:///{db.resolve()}"
        cases = [
            ("baseline: import typer, rich", [py, "-c", "import typer, rich"], None),
            ("annexa --help", [*annexa, "--help"], 2.0),
            ("annexa --version", [*annexa, "--version"], None),
            ("annexa controls", [*annexa, "controls"], None),
        ]
        results = [(name, _time(argv, args.repeat, work, env), target)
                   for name, argv, target in cases]
    base = results[0][1]
    print(f"{'command':32} {'median':>9} {'ratio':>7}  target")
    ok = True
    for name, secs, target in results:
        ratio = secs / base
        verdict = ""
        if target is not None:
            met = ratio <= target
            ok &= met
            verdict = f"<= {target:.1f}x: {'met' if met else 'NOT MET'}"
        print(f"{name:32} {secs * 1000:7.0f}ms {ratio:6.2f}x  {verdict}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark: the cost of signing sealed runs and of checking the signatures.

    python benchmarks/trust.py seal   [--runs 10000] [--engines sqlite,postgresql]
    python benchmarks/trust.py verify [--resources 10000] [--hours 8760] [--engines …]

``seal``: 10,000 small runs (one evidence item and two findings each) written and
sealed through ``store.writer.RunWriter``, once without a signing key and once with
one, each into a fresh database; seconds, runs/s and the ratio signed/unsigned.

``verify``: the year-of-hourly-runs database of ``benchmarks/history.py`` (every run
signed), then ``verify`` twice on it: without checking signatures (what verification
cost before signatures), and ``--trusted-keys`` (every run's signature checked against
the trusted key). Reports both times and the ratio (target <= 1.1x). Each figure is the
best of ``--repeat`` passes; the ratio is taken from figures measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import history
from benchmarks.measure import scratch_database

DEFAULT_PG_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
RESULTS_DIR = Path(__file__).with_name("results")


def seal_runs(engine: Any, runs: int, signer: Any, offset: int = 0) -> float:
    from core.records import Evidence, Finding
    from store.writer import RunWriter

    t0 = time.perf_counter()
    for i in range(offset, offset + runs):
        w = RunWriter(
            engine,
            source="bench",
            connector_type="bench",
            config_digest="c" * 64,
            mapping_digest="m" * 64,
            agent_version="bench",
            signer=signer,
        )
        w.start()
        ev = Evidence("acct", "eu-1", "bench.disk.volume", f"d{i % 50}", {"id": i})
        h = w.add_evidence(ev)
        for c in ("bench.disk.a", "bench.disk.b"):
            w.add_finding(
                Finding(
                    c,
                    "acct",
                    "eu-1",
                    "bench.disk.volume",
                    f"d{i % 50}",
                    "pass",
                    "low",
                    "ok",
                    evidence_hash=h,
                    controls=("A.8.24",),
                )
            )
        w.finish("succeeded")
    return time.perf_counter() - t0


def best(repeat: int, fn: Callable[[], float]) -> float:
    return min(fn() for _ in range(repeat))


def cmd_seal(args: argparse.Namespace) -> dict[str, Any]:
    """Signed and unsigned runs sealed in alternating rounds, each into its own database,
    so that a loaded machine's drift weighs on both alike."""
    from core.signing import Signer
    from store.engine import make_engine
    from store.migrate import upgrade

    signer = Signer.generate()
    out: dict[str, Any] = {}
    rounds = max(1, args.rounds)
    per_round = args.runs // rounds
    for kind in args.engines.split(","):
        with (
            scratch_database(kind, args.pg_url) as url_plain,
            scratch_database(kind, args.pg_url) as url_key,
        ):
            if kind == "sqlite":  # two files, not one
                url_key = url_key.replace("trust.db", "trust-signed.db")
            plain_engine, key_engine = make_engine(url_plain), make_engine(url_key)
            upgrade(plain_engine)
            upgrade(key_engine)
            plain = signed = 0.0
            for r in range(rounds):
                plain += seal_runs(plain_engine, per_round, None, r * per_round)
                signed += seal_runs(key_engine, per_round, signer, r * per_round)
            plain_engine.dispose()
            key_engine.dispose()
        n = per_round * rounds
        out[kind] = {
            "runs": n,
            "unsigned_s": round(plain, 2),
            "signed_s": round(signed, 2),
            "unsigned_ms_per_run": round(1000 * plain / n, 2),
            "signed_ms_per_run": round(1000 * signed / n, 2),
            "ratio_signed_to_unsigned": round(signed / plain, 3),
        }
        print(
            f"-- {kind}: {n} runs sealed in {plain:.2f}s unsigned, {signed:.2f}s signed "
            f"({signed / plain:.3f}x), in {rounds} alternating rounds",
            flush=True,
        )
    return out


def cmd_verify(args: argparse.Namespace) -> dict[str, Any]:
    from core.signing import Signer
    from store.engine import make_engine
    from store.integrity import verify

    signer = Signer.generate()
    trusted = {signer.key_id: signer.public}
    out: dict[str, Any] = {}
    for kind in args.engines.split(","):
        with scratch_database(kind, args.pg_url) as url:
            gen_args = argparse.Namespace(**vars(args), signer=signer)
            print(
                f"== {kind}: generating {args.hours} hourly signed runs over "
                f"{args.resources} resources",
                flush=True,
            )
            span = history.generate(url, gen_args)
            engine = make_engine(url)

            def timed(engine: Any = engine, **kw: Any) -> float:
                t0 = time.perf_counter()
                result = verify(engine, **kw)
                elapsed = time.perf_counter() - t0
                assert result.ok, result.problems[:3]
                return elapsed

            plain = best(args.repeat, lambda: timed(check_signatures=False))
            keyed = best(args.repeat, lambda: timed(trusted_keys=trusted))
            engine.dispose()
            out[kind] = {
                "runs": args.hours,
                "generation_s": span["generation_s"],
                "verify_without_signatures_s": round(plain, 2),
                "verify_trusted_keys_s": round(keyed, 2),
                "ratio": round(keyed / plain, 3),
            }
            print(
                f"-- {kind}: verify {plain:.2f}s without signatures, {keyed:.2f}s with "
                f"--trusted-keys ({keyed / plain:.3f}x; target <= 1.1x)",
                flush=True,
            )
    return out


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("what", choices=("seal", "verify"))
    p.add_argument("--runs", type=int, default=10_000)
    p.add_argument("--resources", type=int, default=10_000)
    p.add_argument("--hours", type=int, default=8760)
    p.add_argument("--change-rate", type=float, default=0.01)
    p.add_argument("--engines", default="sqlite,postgresql")
    p.add_argument("--pg-url", default=DEFAULT_PG_URL)
    p.add_argument("--repeat", type=int, default=1)
    p.add_argument("--rounds", type=int, default=20)
    args = p.parse_args()
    result = cmd_seal(args) if args.what == "seal" else cmd_verify(args)
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (RESULTS_DIR / f"trust-{args.what}.json").write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()

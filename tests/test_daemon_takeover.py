"""Fast takeover, exactly-once-or-missed due times and SIGTERM at claim time, with real
``annexa daemon`` processes on PostgreSQL (scenarios in tests/daemon_scenarios.py; the
20-fold repetition under a CPU hog is ``benchmarks/daemon_soak.py --stress``)."""

from __future__ import annotations

from pathlib import Path

from tests import daemon_fixtures as fx
from tests.daemon_scenarios import sigterm_at_claim_time, takeover_after_sigkill

plugin_path = fx.plugin_path


def test_a_sigkilled_replica_is_taken_over_through_its_run_lock_before_its_lease_ends(
    postgres_url: str, plugin_path: Path, tmp_path: Path
) -> None:
    figures = takeover_after_sigkill(postgres_url, plugin_path, tmp_path)
    print(figures)
    assert figures["slots"] >= 2


def test_sigterm_at_claim_time_leaves_no_run_unsealed(
    postgres_url: str, plugin_path: Path, tmp_path: Path
) -> None:
    figures = sigterm_at_claim_time(postgres_url, plugin_path, tmp_path, rounds=2)
    assert figures["claims"] >= 2

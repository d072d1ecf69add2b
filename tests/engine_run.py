"""Kept for branches written before ``tests/harness.py``: the harness is the one place."""

from tests.harness import EngineRun, RunResult, run_built, run_engine

__all__ = ["EngineRun", "RunResult", "run_built", "run_engine"]

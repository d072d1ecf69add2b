"""``annexa daemon``: scheduled collection for one or many replicas.

See :mod:`collector.daemon.service` for the moving parts, :mod:`store.leases` for the
database claim, :mod:`collector.daemon.spool` for what happens when the database is
unreachable (the journal every run keeps, CLI runs too).
"""

from __future__ import annotations

from typing import Any

__all__ = ["Daemon", "DaemonError", "run_daemon"]


def __getattr__(name: str) -> Any:
    # Lazy: CLI runs import the journal (collector.daemon.spool) without the scheduler.
    if name in __all__:
        from collector.daemon import service

        return getattr(service, name)
    raise AttributeError(name)

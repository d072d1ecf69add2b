"""``annexa daemon``: scheduled collection for one or many replicas.

See :mod:`collector.daemon.service` for the moving parts, :mod:`store.leases` for the
database claim, :mod:`collector.daemon.spool` for what happens when the database is
unreachable.
"""

from collector.daemon.service import Daemon, DaemonError, run_daemon

__all__ = ["Daemon", "DaemonError", "run_daemon"]

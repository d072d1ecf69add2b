"""Run locks: a PostgreSQL session-level advisory lock per schedule, held while a run
of it is active, so that other replicas learn within seconds that its holder died.

The schedule lease (:mod:`store.leases`) tells who *claimed* a collection; it can only
say the claimant died once the lease has run out (minutes). A session-level advisory
lock is released by PostgreSQL the moment the session ends — a SIGKILLed or crashed
replica's connection closes, so its locks go with it. A replica that finds the lock of
a schedule under another replica's live lease *free* therefore knows that replica is
gone, ends the lease and takes the due time over at once.

Protocol (see :class:`collector.daemon.service.Daemon`): take the lock *before*
claiming and drop it only *after* releasing the claim, so a live claim always has its
lock held. Locks live on one dedicated connection per replica (AUTOCOMMIT, outside
any pool); the lock is re-entrant per session, so a replica never checks a schedule it
holds itself. SQLite has no sessions shared between processes: there the lease is the
only mechanism (one daemon per SQLite file anyway), and every call is a no-op.
"""

from __future__ import annotations

import hashlib
import threading

from sqlalchemy import Connection, Engine, text
from sqlalchemy.pool import NullPool

from store.engine import make_engine, normalise_url


def lock_key(name: str) -> int:
    """A stable signed 64-bit key for a schedule name (the advisory lock's id)."""
    digest = hashlib.blake2b(f"annexa:schedule:{name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


class RunLocks:
    def __init__(self, url: str, *, connect_timeout: int = 5) -> None:
        self.enabled = normalise_url(url).get_backend_name() == "postgresql"
        self._engine: Engine | None = None
        if self.enabled:
            self._engine = make_engine(
                url,
                poolclass=NullPool,
                pool_pre_ping=False,
                connect_args={"connect_timeout": connect_timeout},
            )
        self._conn: Connection | None = None
        self._held: set[str] = set()
        self._mutex = threading.Lock()

    def _connection(self) -> Connection:
        if self._conn is None or self._conn.closed or self._conn.invalidated:
            assert self._engine is not None
            self._close()
            conn = self._engine.connect().execution_options(isolation_level="AUTOCOMMIT")
            self._conn = conn
            # A new session holds nothing: take back what this replica should hold.
            for name in sorted(self._held):
                if not self._try(conn, name):
                    self._held.discard(name)
        return self._conn

    @staticmethod
    def _try(conn: Connection, name: str) -> bool:
        return bool(
            conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": lock_key(name)}).scalar()
        )

    @staticmethod
    def _unlock(conn: Connection, name: str) -> None:
        conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": lock_key(name)})

    def _close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except Exception:  # noqa: BLE001, S110 - a dead connection: nothing to close
                pass
            self._conn = None

    def acquire(self, name: str) -> bool:
        """Hold ``name``'s lock; False if another live session holds it. Raises on a
        database error (the caller treats it like a failed claim)."""
        if not self.enabled:
            return True
        with self._mutex:
            if name in self._held:
                return True
            try:
                got = self._try(self._connection(), name)
            except Exception:
                self._close()
                raise
            if got:
                self._held.add(name)
            return got

    def release(self, name: str) -> None:
        if not self.enabled:
            return
        with self._mutex:
            if name not in self._held:
                return
            self._held.discard(name)
            try:
                self._unlock(self._connection(), name)
            except Exception:  # noqa: BLE001 - a lost session holds nothing any more
                self._close()

    def holder_gone(self, name: str) -> bool:
        """Whether nobody holds ``name``'s lock (checked by taking and dropping it).

        Only meaningful for a schedule this replica does not hold itself."""
        if not self.enabled:
            return False
        with self._mutex:
            if name in self._held:
                return False
            try:
                conn = self._connection()
                if not self._try(conn, name):
                    return False
                self._unlock(conn, name)
                return True
            except Exception:  # noqa: BLE001 - cannot tell: the lease decides
                self._close()
                return False

    def check(self) -> None:
        """Keep the session alive; after a lost session, take the held locks back."""
        if not self.enabled:
            return
        with self._mutex:
            try:
                self._connection().execute(text("SELECT 1"))
            except Exception:  # noqa: BLE001 - retried at the next heartbeat
                self._close()

    def close(self) -> None:
        with self._mutex:
            self._held.clear()
            self._close()
            if self._engine is not None:
                self._engine.dispose()

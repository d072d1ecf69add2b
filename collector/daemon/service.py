"""The daemon: schedules, claims, runs, heartbeats, the reaper, replay and shutdown.

Threads:

* APScheduler (``BackgroundScheduler``, memory job store, one per replica) only
  *triggers attempts*: one job per connector instance firing at its due times plus
  jitter, a ``heartbeat`` job, a ``poll`` job (overdue work, takeovers, leftover
  spool, reaping) and a ``controls`` job (statuses turn stale with time).
* An attempt runs on a small pool: it must win the database claim
  (:func:`store.leases.claim`) before collecting; a per-connector local lock keeps
  at most one attempt per connector instance in this process, the lease keeps at
  most one across replicas.
* The HTTP endpoint and the notifier each have their own thread.
"""

from __future__ import annotations

import fcntl
import logging
import os
import signal
import socket
import sys
import threading
import time
import uuid
from collections import Counter as Tally
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from collector.config import LoadedConnector, Settings, _seconds
from collector.daemon import spool
from collector.daemon.changes import describe
from collector.daemon.execute import Outcome, collect, instance_scope, is_outage
from collector.daemon.health import HealthServer
from collector.daemon.metrics import Metrics
from collector.daemon.notify import Notification, Notifier
from collector.daemon.schedule import DueTrigger, ScheduleError, ScheduleSpec, initial_due
from core.connector import SecretUnavailableError
from core.redaction import scrub_text
from mappings.loader import MappingIndex
from store.engine import make_engine, normalise_url
from store.leases import (
    REAPED_PREFIX,
    Claim,
    claim,
    claims_held_elsewhere,
    control_changes,
    due_names,
    ensure_schedule,
    expire_lease,
    reap_stale,
    release,
    renew,
    seal_aborted,
    touch_run,
)
from store.runlocks import RunLocks
from store.status import control_statuses

log = structlog.get_logger("annexa.daemon")

#: After the grace period, how long cancelled runs get to wind down before the
#: daemon seals what is left as aborted and exits (at most; a quarter of the grace
#: period when that is shorter, at least 1 s).
ABORT_WAIT = 5.0
MAX_TAKEOVERS = 3
#: How often (at most) a replica checks, through the run locks, that the replicas
#: holding live leases are alive (PostgreSQL).
WATCH_EVERY = 2.0


class DaemonError(Exception):
    """The daemon cannot start; ``code`` is the CLI exit code."""

    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class _Active:
    name: str
    run_id: str
    cancel: threading.Event = field(default_factory=threading.Event)
    started: float = field(default_factory=time.monotonic)
    lease_lost: bool = False


def _short(exc: BaseException) -> str:
    return scrub_text(f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")


class FileLock:
    """An exclusive, non-blocking ``flock`` holding the owner's pid; released on exit
    (the kernel drops it when the process dies, even by SIGKILL)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self) -> str | None:
        """Take the lock; on failure return the holder's pid (as written) instead."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 64).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            return holder
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd
        return None

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def sqlite_lock_path(url: str) -> Path | None:
    """``<db file>.daemon.lock`` for a SQLite URL; None for other databases."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    db = Path(parsed.database).resolve()
    return db.with_name(db.name + ".daemon.lock")


class Daemon:
    def __init__(
        self,
        settings: Settings,
        index: MappingIndex,
        engine: Engine,
        *,
        port: int | None = None,
        replica_id: str | None = None,
    ) -> None:
        self.settings = settings
        self.index = index
        self.engine = engine
        cfg = settings.model.daemon
        self.cfg = cfg
        self.heartbeat_s = cfg.seconds("heartbeat")
        self.lease_s = cfg.seconds("lease")
        self.grace_s = cfg.seconds("grace_period")
        self.jitter_s = cfg.seconds("jitter")
        self.stale_after = self.heartbeat_s * cfg.stale_heartbeats
        if self.lease_s < 2 * self.heartbeat_s:
            raise DaemonError(
                f"{settings.path}: daemon.lease must be at least twice daemon.heartbeat "
                "(a lease is renewed at each heartbeat)"
            )
        self.port = cfg.port if port is None else port
        self.me = replica_id or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        spool_dir = cfg.spool_dir
        self.spool_dir = spool_dir if spool_dir.is_absolute() else Path.cwd() / spool_dir
        self.connectors: dict[str, LoadedConnector] = {}
        self.specs: dict[str, ScheduleSpec] = {}
        for i, lc in enumerate(settings.connectors):
            if not lc.cfg.enabled:
                continue
            text_spec = lc.cfg.schedule or cfg.default_schedule
            if not text_spec:
                log.info("connector not scheduled (no schedule)", connector=lc.name)
                continue
            key = f"connectors[{i}].schedule" if lc.cfg.schedule else "daemon.default_schedule"
            try:
                self.specs[lc.name] = ScheduleSpec.parse(text_spec)
            except ScheduleError as exc:
                raise DaemonError(f"{settings.path}: {key}: {exc}") from None
            self.connectors[lc.name] = lc
        self._refuse_unresolved_secrets(settings)
        self.metrics = Metrics(self.connectors, self._control_ids(index))
        self.metrics.watch_pool(engine.pool)
        try:
            self.notifier = Notifier(cfg.notifications, self.metrics, engine=engine, me=self.me)
        except SecretUnavailableError as exc:
            raise DaemonError(f"{settings.path}: daemon.notifications: {exc}") from None
        self._slots = {name: threading.Lock() for name in self.connectors}
        self._active: dict[str, _Active] = {}
        self._tracked: set[str] = set()  # run ids being replayed (heartbeated too)
        self._leftovers: dict[Path, str] = {}  # journals of a previous process → source
        self._state = threading.Lock()
        self._controls_lock = threading.Lock()
        self._controls_dirty = False
        self._spooled = 0
        self._db_up = True
        self._stop_requested = threading.Event()
        self._stopping = threading.Event()
        self._accepting = False
        self._pool = ThreadPoolExecutor(
            max_workers=max(1, len(self.connectors)), thread_name_prefix="annexa-run"
        )
        self.scheduler = BackgroundScheduler(
            timezone=UTC,
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
        )
        lock_path = sqlite_lock_path(settings.database_url)
        self._db_lock = FileLock(lock_path) if lock_path else None
        self._spool_lock: FileLock | None = None
        self._ready_engine = self._make_ready_engine(settings.database_url)
        self.runlocks = RunLocks(settings.database_url)
        self.distributor = self._make_distributor() if cfg.distribute else None
        self.http: HealthServer | None = None
        self._signals = 0

    # -- set-up -------------------------------------------------------------------------

    def _refuse_unresolved_secrets(self, settings: Settings) -> None:
        """Refuse to start, as ``collect`` does, when a scheduled connector's secret (or the
        signing key, or a notification target's) does not resolve: otherwise every due
        time would seal a ``failed`` run full of ``error`` findings until someone looked."""
        from collector.configcheck import secret_lines

        bad = [ln for ln in secret_lines(settings, list(self.connectors.values())) if not ln.ok]
        if bad:
            raise DaemonError(
                f"{settings.path}: {len(bad)} secret reference(s) do not resolve: "
                + "; ".join(f"{ln.what}: {ln.detail}" for ln in bad)
                + " (`annexa config check` lists them all)"
            )

    def _make_distributor(self) -> Any:
        """``[daemon] distribute``: this replica's share of the unit queue."""
        from collector.daemon.distribute import DistributeError, Distributor

        try:
            return Distributor(
                self.settings,
                self.engine,
                self.index,
                self.me,
                workers=self.cfg.unit_workers,
                attempts=self.cfg.unit_attempts,
                unit_timeout=self.cfg.seconds("unit_timeout"),
                heartbeat=self.heartbeat_s,
                stalled_after=self.lease_s,
                grace=self.grace_s,
                unit_lock=self.cfg.unit_lock,
            )
        except DistributeError as exc:
            raise DaemonError(f"{self.settings.path}: {exc}") from None

    @staticmethod
    def _control_ids(index: MappingIndex) -> list[str]:
        """The controls ``control_statuses`` reports on (for zero-initialised series)."""
        try:
            return list(index.catalog)
        except Exception:  # noqa: BLE001 - then series appear at the first evaluation
            return []

    @staticmethod
    def _make_ready_engine(url: str) -> Engine:
        """Readiness checks: a fresh connection each time, short timeouts."""
        if normalise_url(url).get_backend_name() == "postgresql":
            return make_engine(
                url,
                poolclass=NullPool,
                pool_pre_ping=False,
                connect_args={"connect_timeout": 2, "options": "-c statement_timeout=2000"},
            )
        return make_engine(url, poolclass=NullPool)

    def _first_due(self, name: str) -> Any:
        spec = self.specs[name]
        return lambda now, last_started: initial_due(spec, now, last_started)

    def start(self) -> None:
        # APScheduler logs every job execution at INFO: far too chatty every heartbeat.
        logging.getLogger("apscheduler").setLevel(logging.WARNING)
        if self._db_lock is not None:
            holder = self._db_lock.acquire()
            if holder is not None:
                raise DaemonError(
                    f"another annexa daemon (pid {holder}) is already running on the SQLite "
                    f"database {str(self._db_lock.path)[: -len('.daemon.lock')]} (lock "
                    f"{self._db_lock.path} is held). SQLite supports one daemon per database "
                    "file; use PostgreSQL to run several replicas."
                )
        self.spool_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._spool_lock = FileLock(self.spool_dir / ".lock")
        holder = self._spool_lock.acquire()
        if holder is not None:
            self._spool_lock = None
            self._release_locks()
            raise DaemonError(
                f"the spool directory {self.spool_dir} is in use by another annexa daemon "
                f"(pid {holder}): give each replica its own daemon.spool_dir"
            )
        for path in spool.pending(self.spool_dir):
            head = next(spool.read(path), None)
            self._leftovers[path] = head.get("source", "") if head else ""
        if self._leftovers:
            log.info("spooled runs found from a previous process", count=len(self._leftovers))
        self._set_spooled(len(self._leftovers))
        self._replay_leftovers()
        for name in self.connectors:
            due = ensure_schedule(self.engine, name, self.specs[name].text, self._first_due(name))
            log.info(
                "connector scheduled",
                connector=name,
                scope=instance_scope(self.connectors[name]),
                schedule=self.specs[name].text,
                next_due=due.isoformat(),
            )
        self._reap()
        if self.distributor is not None:
            self.distributor.start()
        self.notifier.start()
        self._evaluate_controls()
        self.http = HealthServer(self.cfg.host, self.port, ready=self.ready, metrics=self.metrics)
        self.http.start()
        self.port = self.http.port
        now = datetime.now(UTC)
        for name, spec in self.specs.items():
            self.scheduler.add_job(
                self.kick,
                DueTrigger(spec, self.jitter_s),
                args=[name],
                id=f"collect:{name}",
                name=f"collect {name}",
            )
        hb = IntervalTrigger(seconds=self.heartbeat_s, timezone=UTC)
        self.scheduler.add_job(self._heartbeat, hb, id="heartbeat", next_run_time=now)
        self.scheduler.add_job(
            self._poll,
            IntervalTrigger(seconds=self.heartbeat_s, timezone=UTC),
            id="poll",
            next_run_time=now,
        )
        self.scheduler.add_job(
            self._evaluate_controls,
            IntervalTrigger(seconds=_seconds(self.cfg.notifications.evaluate_every), timezone=UTC),
            id="controls",
        )
        if self.runlocks.enabled:
            self.scheduler.add_job(
                self._watch,
                IntervalTrigger(seconds=min(self.heartbeat_s, WATCH_EVERY), timezone=UTC),
                id="watch",
                next_run_time=now,
            )
        with self._state:
            self._accepting = True
        self.scheduler.start()
        log.info(
            "daemon started",
            replica=self.me,
            port=self.port,
            connectors=len(self.connectors),
            lease=self.lease_s,
            heartbeat=self.heartbeat_s,
            grace_period=self.grace_s,
        )

    # -- readiness ----------------------------------------------------------------------

    def ready(self) -> tuple[bool, dict[str, Any]]:
        details: dict[str, Any] = {"replica": self.me}
        try:
            with self._ready_engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            db_ok = True
            details["database"] = "ok"
        except Exception as exc:  # noqa: BLE001 - any failure means "not ready"
            db_ok = False
            # The error class only: driver messages name the host and port, and
            # /readyz answers anyone who can reach the health port.
            details["database"] = f"unreachable ({type(exc).__name__})"
            log.debug("readiness: database unreachable", error=_short(exc))
        self.metrics.db_up.set(int(db_ok))
        running = self.scheduler.running and not self._stopping.is_set()
        details["scheduler"] = "running" if running else "stopped"
        with self._state:
            details["active_runs"] = len(self._active)
        details["spooled_runs"] = self._spooled
        return db_ok and running, details

    # -- attempts -----------------------------------------------------------------------

    def kick(self, name: str) -> None:
        """Try to collect ``name`` now (on the pool); a no-op if it is busy here."""
        if not self._accepting or name in self._leftovers.values():
            return
        slot = self._slots[name]
        if not slot.acquire(blocking=False):
            return
        try:
            self._pool.submit(self._attempt, name)
        except RuntimeError:  # pool shut down
            slot.release()

    def _local_run_ids(self) -> set[str]:
        with self._state:
            return {a.run_id for a in self._active.values()} | set(self._tracked)

    def _attempt(self, name: str) -> None:
        try:
            self._attempt_locked(name)
        except Exception:  # a pool thread must not die silently
            log.error("attempt failed", connector=name, exc_info=True)
        finally:
            self._slots[name].release()

    def _attempt_locked(self, name: str) -> None:
        if not self._accepting:
            return
        lc = self.connectors[name]
        spec = self.specs[name]
        run_id = str(uuid.uuid4())
        # The run lock first, the claim second: a live claim always has its lock held,
        # so a peer finding the lock free knows the claimant died (store.runlocks).
        try:
            if not self.runlocks.acquire(name):
                return  # another replica is running it
            c = claim(
                self.engine,
                name,
                self.me,
                run_id,
                lease=self.lease_s,
                next_due=spec.next_after,
                max_takeovers=MAX_TAKEOVERS,
                catch_up=self.cfg.catch_up,
            )
        except Exception as exc:
            self.runlocks.release(name)
            if not is_outage(exc):
                raise
            log.debug("claim failed: database unreachable", connector=name, error=_short(exc))
            return
        if c is None:
            self.runlocks.release(name)
            return
        self._count_missed(name, c)
        if not c.run:
            self.runlocks.release(name)
            return
        active = _Active(name, c.run_id)
        with self._state:
            # Re-checked under the lock shutdown() takes to stop accepting: a claim won
            # after stop was requested is handed back untouched, never started.
            accepted = self._accepting
            if accepted:
                self._active[name] = active
                self.metrics.active.set(len(self._active))
        if not accepted:
            log.info("stopping: claim handed back unstarted", connector=name, run_id=run_id)
            try:
                release(self.engine, name, self.me, run_id, "not_started", retake=True)
            except Exception as exc:  # noqa: BLE001 - the lease then simply expires
                log.warning("could not release the schedule lease", error=_short(exc))
            self.runlocks.release(name)
            return
        scope = instance_scope(lc)
        with structlog.contextvars.bound_contextvars(run_id=run_id, connector=name, scope=scope):
            self._run_claimed(name, lc, c, active)

    def _count_missed(self, name: str, c: Claim) -> None:
        if not c.missed:
            return
        self.metrics.missed.labels(name).inc(len(c.missed))
        log.warning(
            "due times missed",
            connector=name,
            count=len(c.missed),
            first=c.missed[0].isoformat(),
            last=c.missed[-1].isoformat(),
            catch_up=self.cfg.catch_up,
        )

    def _run_claimed(self, name: str, lc: LoadedConnector, c: Claim, active: _Active) -> None:
        self.metrics.lateness.labels(name).observe(c.lateness)
        self.metrics.claims.labels(name, str(c.takeover).lower()).inc()
        log.info(
            "schedule claimed",
            due_at=c.due_at.isoformat(),
            lateness=round(c.lateness, 3),
            takeover=c.takeover,
            next_due=c.next_due.isoformat(),
        )
        try:
            # We hold this connector's lease now, so a run of it that has not
            # heartbeated for a lease period lost its owner: seal it before our run
            # starts, so the two never overlap, even in the runs table.
            for r in reap_stale(
                self.engine,
                stale_after=min(self.stale_after, self.lease_s),
                me=self.me,
                exclude=self._local_run_ids(),
                source=name,
                signer=self.settings.signer(),
            ):
                self.metrics.reaped.inc()
                log.warning("orphaned run sealed as aborted", orphan_run_id=r.id, host=r.host)
        except Exception as exc:  # noqa: BLE001 - reaping is best effort here
            log.warning("reaping failed", error=_short(exc))
        if self.distributor is not None:
            self._dispatch_claimed(name, lc, c)
            return
        outcome: Outcome | None = None
        try:
            outcome = collect(
                self.settings,
                lc,
                self.engine,
                self.index,
                run_id=c.run_id,
                cancel_event=active.cancel,
                spool_dir=self.spool_dir if self.cfg.spool else None,
                batch_size=self.cfg.batch_size,
            )
            if outcome.journal is not None:
                self._set_spooled(delta=1)
                outcome = self._await_replay(outcome)
        except Exception as exc:
            log.error("run could not be started or completed", error=_short(exc), exc_info=True)
        finally:
            with self._state:
                self._active.pop(name, None)
                self.metrics.active.set(len(self._active))
        status = outcome.status if outcome else "failed"
        unfinished = outcome is None or outcome.journal is not None
        retake = unfinished or (status == "aborted" and self._stopping.is_set())
        try:
            release(self.engine, name, self.me, c.run_id, status, retake=retake)
        except Exception as exc:  # noqa: BLE001 - the lease then simply expires
            # The run lock stays held (the claim is still live in the table): dropped
            # after the next attempt of this connector releases its claim.
            log.warning("could not release the schedule lease", error=_short(exc))
        else:
            self.runlocks.release(name)
        if outcome is not None and outcome.summary is not None:
            self._report(name, outcome)

    def _dispatch_claimed(self, name: str, lc: LoadedConnector, c: Claim) -> None:
        """Distributed: create the run, queue its units, give the schedule back at once.

        The run outlives the claim on purpose: its units are executed (and it is
        sealed) by whichever replicas are alive, each keeping it heartbeated, so a
        dead dispatcher loses nothing.
        """
        status = "dispatched"
        try:
            self.distributor.dispatch(lc, c.run_id)
        except Exception as exc:
            status = "failed"
            log.error("run could not be dispatched", error=_short(exc), exc_info=True)
        finally:
            with self._state:
                self._active.pop(name, None)
                self.metrics.active.set(len(self._active))
        try:
            release(self.engine, name, self.me, c.run_id, status, retake=status == "failed")
        except Exception as exc:  # noqa: BLE001 - the lease then simply expires
            log.warning("could not release the schedule lease", error=_short(exc))
        else:
            self.runlocks.release(name)

    def _await_replay(self, outcome: Outcome) -> Outcome:
        """Wait for the database, then write the spooled run; give up only at shutdown."""
        assert outcome.journal is not None
        delay = min(1.0, self.heartbeat_s)
        while not self._stopping.is_set():
            try:
                result = self._replay(outcome.journal)
            except Exception as exc:
                if not is_outage(exc):
                    raise
                self._stopping.wait(delay)
                delay = min(delay * 2, max(5.0, self.heartbeat_s))
                continue
            self._set_spooled(delta=-1)
            log.info("spooled run written", mode=result.mode)
            summary = result.summary
            return Outcome(
                summary.run_id if summary else outcome.run_id,
                summary.status if summary else outcome.status,
                summary,
                None,
                outcome.duration,
            )
        log.warning("stopping with a spooled run; it is written at the next start")
        return outcome

    def _replay(self, path: Path) -> spool.ReplayResult:
        """Replay one journal; the run being written is heartbeated meanwhile."""
        ids: list[str] = []

        def track(run_id: str) -> None:
            ids.append(run_id)
            with self._state:
                self._tracked.add(run_id)

        try:
            return spool.replay(
                self.engine,
                path,
                batch_size=self.cfg.batch_size,
                on_run=track,
                signer=self.settings.signer(),
            )
        finally:
            with self._state:
                self._tracked.difference_update(ids)

    def _set_spooled(self, value: int | None = None, delta: int = 0) -> None:
        with self._state:
            self._spooled = value if value is not None else self._spooled + delta
            self.metrics.spooled.set(self._spooled)

    def _report(self, name: str, outcome: Outcome) -> None:
        s = outcome.summary
        assert s is not None
        self.metrics.run_finished(
            name,
            s.status,
            outcome.duration,
            s.finished_at.timestamp(),
            s.counts.get("findings_by_status", {}),
        )
        log.info(
            "run finished",
            run_id=s.run_id,
            status=s.status,
            duration=round(outcome.duration, 3),
            **{k: v for k, v in s.counts.items() if isinstance(v, int)},
        )
        self._evaluate_controls()

    # -- periodic jobs --------------------------------------------------------------------

    def _heartbeat(self) -> None:
        with self._state:
            active = list(self._active.values())
            tracked = list(self._tracked)
        if active:
            self.runlocks.check()
        for a in active:
            where = {
                "run_id": a.run_id,
                "connector": a.name,
                "scope": instance_scope(self.connectors[a.name]),
            }
            try:
                kept = renew(self.engine, a.name, self.me, a.run_id, lease=self.lease_s)
                if not kept and not a.lease_lost:
                    a.lease_lost = True
                    log.warning(
                        "schedule lease lost (taken over after expiry); the run continues",
                        **where,
                    )
            except Exception as exc:  # noqa: BLE001 - retried at the next heartbeat
                log.debug("heartbeat failed", error=_short(exc), **where)
        for run_id in tracked:
            try:
                with self.engine.begin() as conn:
                    touch_run(conn, run_id)
            except Exception as exc:  # noqa: BLE001
                log.debug("heartbeat failed", run_id=run_id, error=_short(exc))

    def _watch(self) -> None:
        """Take over at once from a replica that died holding a live lease (PostgreSQL):
        its run lock is free although its claim is live (see store.runlocks)."""
        if not self._accepting:
            return
        try:
            held = claims_held_elsewhere(self.engine, self.me)
        except Exception as exc:  # noqa: BLE001 - the next watch (or the lease) covers it
            log.debug("watch failed", error=_short(exc))
            return
        for h in held:
            if h.name not in self.connectors or self._slots[h.name].locked():
                continue
            if not self.runlocks.holder_gone(h.name):
                continue
            try:
                if not expire_lease(self.engine, h):
                    continue  # it finished (or was taken over) meanwhile
                log.warning(
                    "replica holding a schedule is gone (its run lock was released): taking over",
                    connector=h.name,
                    replica=h.claimed_by,
                    orphan_run_id=h.run_id,
                )
                reason = (
                    f"{REAPED_PREFIX} {self.me}: the replica running it ({h.claimed_by}) died "
                    "(its database session ended and released the run lock)"
                )
                if seal_aborted(self.engine, h.run_id, reason, signer=self.settings.signer()):
                    self.metrics.reaped.inc()
            except Exception as exc:  # noqa: BLE001 - the lease remains the fallback
                log.warning("takeover failed", connector=h.name, error=_short(exc))
                continue
            self.kick(h.name)

    def _poll(self) -> None:
        if not self._accepting:
            return
        try:
            with self.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        except Exception as exc:  # noqa: BLE001 - reported once, retried every poll
            if self._db_up:
                log.warning("database unreachable", error=_short(exc))
            self._db_up = False
            self.metrics.db_up.set(0)
            return
        self.metrics.db_up.set(1)
        if not self._db_up:
            log.info("database reachable again")
            self._db_up = True
        try:
            self._replay_leftovers()
            busy = set()
            with self._state:
                busy = set(self._active)
            for name in due_names(
                self.engine, [n for n in self.connectors if n not in busy], MAX_TAKEOVERS
            ):
                self.kick(name)
            if self.distributor is not None:
                self.distributor.sweep()
            self._reap()
        except Exception as exc:  # noqa: BLE001 - next poll retries
            log.debug("poll failed", error=_short(exc))

    def _reap(self) -> None:
        for r in reap_stale(
            self.engine,
            stale_after=self.stale_after,
            me=self.me,
            exclude=self._local_run_ids(),
            signer=self.settings.signer(),
        ):
            self.metrics.reaped.inc()
            log.warning(
                "orphaned run sealed as aborted",
                orphan_run_id=r.id,
                connector=r.source,
                host=r.host,
                last_heartbeat=r.heartbeat_at.isoformat() if r.heartbeat_at else None,
            )

    def _replay_leftovers(self) -> None:
        for path in list(self._leftovers):
            source = self._leftovers[path]
            try:
                result = self._replay(path)
            except Exception as exc:
                if is_outage(exc):
                    return
                log.error("spooled run could not be written", spool=str(path), exc_info=True)
                raise
            del self._leftovers[path]
            self._set_spooled(delta=-1)
            log.info(
                "spooled run from a previous process handled",
                run_id=result.original_run_id,
                connector=source,
                mode=result.mode,
                status=result.summary.status if result.summary else None,
            )

    def _evaluate_controls(self) -> None:
        """Compute control statuses; record changes; queue their notifications."""
        self._controls_dirty = True
        while self._controls_dirty:
            if not self._controls_lock.acquire(blocking=False):
                return  # the thread evaluating now sees the dirty flag and goes again
            try:
                self._controls_dirty = False
                self._evaluate_controls_once()
            finally:
                self._controls_lock.release()

    def _evaluate_controls_once(self) -> None:
        try:
            statuses = control_statuses(self.engine, self.index, None, self.settings.freshness)
            self.metrics.set_controls(
                Tally(c.status for c in statuses), {c.id: c.status for c in statuses}
            )
            by_id = {c.id: c for c in statuses}

            def notifications(conn: Any, ch: Any) -> list[tuple[str, dict[str, Any]]]:
                if not self.notifier.enabled:
                    return []
                c = by_id[ch.control]
                what = describe(conn, self.index, ch.control, ch.new)
                return self.notifier.destinations(
                    Notification(
                        control=ch.control,
                        title=c.title,
                        old=ch.old,
                        new=ch.new,
                        at=ch.at,
                        resources=tuple(c.failing or c.erroring),
                        severity=what["severity"],
                        run_id=what["run_id"],
                        items=tuple(what["items"]),
                        more=what["more"],
                        command=what["command"],
                    )
                )

            changes = control_changes(
                self.engine,
                {c.id: c.status for c in statuses if c.status != "manual"},
                outbox=notifications,
            )
            for ch in changes:
                log.info("control status changed", control=ch.control, old=ch.old, new=ch.new)
            if changes:
                self.notifier.wake()
        except Exception as exc:  # noqa: BLE001 - evaluated again later
            log.warning("control evaluation failed", error=_short(exc))

    # -- lifecycle ------------------------------------------------------------------------

    def request_stop(self, signum: int | None = None, _frame: Any = None) -> None:
        self._signals += 1
        if self._signals > 1:
            log.warning("second stop signal: cancelling running collections now")
            with self._state:
                for a in self._active.values():
                    a.cancel.set()
        self._stop_requested.set()

    def install_signals(self) -> None:
        signal.signal(signal.SIGTERM, self.request_stop)
        signal.signal(signal.SIGINT, self.request_stop)

    def run(self) -> int:
        self.start()
        self.install_signals()
        while not self._stop_requested.wait(0.5):
            pass
        self.shutdown()

        # A connector that ignores cancellation must not hold the process past the
        # grace period: at exit the interpreter joins pool threads (and non-daemon ones).
        def holds_exit(t: threading.Thread) -> bool:
            return (
                t is not threading.main_thread()
                and t.is_alive()
                and (not t.daemon or t.name.startswith(("annexa-run", "ThreadPoolExecutor")))
            )

        deadline = time.monotonic() + 1.0
        for t in threading.enumerate():
            if holds_exit(t):
                t.join(max(0.0, deadline - time.monotonic()))
        busy = [t.name for t in threading.enumerate() if holds_exit(t)]
        if busy:
            log.warning("exiting with threads still busy", threads=busy)
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(0)
        return 0

    def _release_locks(self) -> None:
        for lock in (self._spool_lock, self._db_lock):
            if lock is not None:
                lock.release()

    def _wait_idle(self, deadline: float) -> bool:
        while time.monotonic() < deadline:
            with self._state:
                if not self._active:
                    return True
            time.sleep(0.05)
        with self._state:
            return not self._active

    def _seal_left(self) -> None:
        """Seal runs that did not stop after cancellation as aborted, before exiting.

        Safe although their threads still live: the run writer touches the run row,
        ``status = 'running'``, in the same transaction before writing any row, so a
        batch racing the seal either commits before it or is refused after it (the
        digest covers exactly what was committed). The lease is expired so that a peer
        (or this daemon's next start) takes the due time over.
        """
        with self._state:
            left = list(self._active.values())
        for a in left:
            where = {"run_id": a.run_id, "connector": a.name}
            reason = (
                "aborted at shutdown: the run did not stop within the grace period "
                f"and {ABORT_WAIT:g} s after cancellation (replica {self.me})"
            )
            try:
                sealed = seal_aborted(self.engine, a.run_id, reason, signer=self.settings.signer())
                log.warning("run did not stop after cancellation; sealed as aborted", **where)
                if not sealed:
                    log.info("run was already sealed", **where)
            except Exception as exc:  # noqa: BLE001 - then a peer's reaper seals it
                log.warning(
                    "could not seal the run; left to the reaper", error=_short(exc), **where
                )
            try:
                release(self.engine, a.name, self.me, a.run_id, "aborted", retake=True)
            except Exception as exc:  # noqa: BLE001 - the lease then simply expires
                log.warning("could not release the schedule lease", error=_short(exc))

    def shutdown(self) -> None:
        t0 = time.monotonic()
        with self._state:  # after this, no attempt registers a run (_attempt_locked)
            self._accepting = False
        self._stopping.set()
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)
        with self._state:
            running = [a.run_id for a in self._active.values()]
        log.info("stopping: no new claims", running_runs=running, grace_period=self.grace_s)
        if not self._wait_idle(t0 + self.grace_s):
            with self._state:
                for a in self._active.values():
                    log.warning("grace period expired: cancelling run", run_id=a.run_id)
                    a.cancel.set()
            abort_wait = min(ABORT_WAIT, max(1.0, self.grace_s / 4))
            if not self._wait_idle(time.monotonic() + abort_wait):
                self._seal_left()
        self._pool.shutdown(wait=False, cancel_futures=True)
        if self.distributor is not None:
            self.distributor.stop()
        self.notifier.stop(timeout=2.0)
        if self.http is not None:
            self.http.stop()
        self._ready_engine.dispose()
        self.runlocks.close()
        self.engine.dispose()
        self._release_locks()
        log.info("daemon stopped", seconds=round(time.monotonic() - t0, 3))


def run_daemon(
    settings: Settings,
    *,
    index: MappingIndex,
    engine: Engine,
    port: int | None = None,
) -> int:
    """Run until SIGTERM/SIGINT; return the process exit code."""
    daemon = Daemon(settings, index, engine, port=port)
    return daemon.run()


__all__ = ["Daemon", "DaemonError", "FileLock", "run_daemon"]

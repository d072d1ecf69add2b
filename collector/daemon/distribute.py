"""One run's units spread over daemon replicas (``[daemon] distribute = true``).

The queue is procrastinate's (PostgreSQL, its own schema in the same database): the
replica that claims a schedule creates the run, records its units in the ledger
(:mod:`store.dispatch`) and defers one job per unit; every replica runs a
procrastinate worker that executes units through the run engine
(:func:`collector.runner.drive` with ``unit=``). See docs/replicas.md for why.

Guarantees, and where they come from:

* a unit's records, the closing of what it no longer sees and its ledger row turning
  final commit in ONE transaction (:meth:`store.writer.RunWriter.commit_unit`): a
  replica killed mid-unit has committed nothing of it, and an attempt that finds the
  row final writes nothing, so a retried unit never duplicates a row;
* a replica that dies stops heartbeating its procrastinate worker: any live replica
  finds its jobs stalled and puts them back in the queue (``retry_stalled``);
* a unit that fails ``unit_attempts`` times, or is not final ``unit_timeout`` after
  dispatch, is recorded as an error of every check of its service, never a pass;
* the run is sealed by whoever makes its last unit final, in a transaction that
  re-checks that no unit is open and that the run is still running: exactly once.

Job arguments are the run id, the connector instance's name and the unit: never an
option or a secret; each replica builds the connector from its own configuration.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterable
from datetime import timedelta
from typing import Any

import psycopg
import structlog
from procrastinate import App, PsycopgConnector, RetryStrategy, SyncPsycopgConnector
from procrastinate.schema import SchemaManager
from procrastinate.worker import Worker
from sqlalchemy import Connection, Engine
from sqlalchemy.engine import make_url

from collector.config import LoadedConnector, Settings
from collector.runner import (
    AGENT_VERSION,
    RunHeartbeat,
    WriterSink,
    drive,
    stamp_runs,
    unit_error,
)
from core.connector import CollectContext
from core.records import Coverage, utcnow
from core.redaction import scrub_text
from mappings.loader import MappingIndex
from store.dispatch import (
    Unit,
    UnitRow,
    add_units,
    begin_unit,
    expired_units,
    finish_unit,
    open_runs,
    open_units,
    runs_to_seal,
    units_of,
)
from store.leases import touch_run
from store.sealing import db_now, seal_run
from store.writer import RunSealedError, RunWriter

log = structlog.get_logger("annexa.daemon")

QUEUE = "annexa-units"
TASK = "annexa.collect_unit"
#: Serialises the creation of procrastinate's schema by replicas starting together.
_SCHEMA_LOCK = 0x616E6E66
#: A unit's records are buffered whole and written in one transaction at its end.
_WHOLE_UNIT = 2**62


class DistributeError(RuntimeError):
    """Distribution cannot start (wrong database, queue schema not applicable)."""


def conninfo(url: str) -> str:
    """The libpq URL procrastinate/psycopg take, from the SQLAlchemy one."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "postgresql":
        raise DistributeError(
            "daemon.distribute = true needs PostgreSQL (the queue and the replicas share "
            f"it); database.url is {parsed.get_backend_name()}. With SQLite one process "
            "runs each connector instance whole: set daemon.distribute = false."
        )
    return parsed.set(drivername="postgresql").render_as_string(hide_password=False)


def ensure_queue_schema(url: str) -> bool:
    """Apply procrastinate's schema to the database once; True if it was applied now.

    Under a transaction-level advisory lock, so replicas starting together apply it
    once; a database that has it already is left alone.
    """
    with psycopg.connect(conninfo(url), autocommit=False) as conn:
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
        row = conn.execute("SELECT to_regclass('procrastinate_jobs')").fetchone()
        if row is not None and row[0] is not None:
            return False
        conn.execute(SchemaManager.get_schema())  # type: ignore[arg-type]
        conn.commit()
        return True


def _sum_counts(rows: Iterable[UnitRow]) -> dict[str, Any]:
    total: dict[str, Any] = {}
    for r in rows:
        for k, v in r.counts.items():
            if isinstance(v, dict):
                inner = total.setdefault(k, {})
                for ik, iv in v.items():
                    inner[ik] = inner.get(ik, 0) + iv
            elif isinstance(v, int):
                total[k] = total.get(k, 0) + v
    if "findings_by_status" in total:
        total["findings_by_status"] = dict(sorted(total["findings_by_status"].items()))
    return total


def run_status(rows: list[UnitRow]) -> str:
    """succeeded (every unit read), partial (some), failed (none)."""
    ok_units = sum(int(r.counts.get("units_ok", 0)) for r in rows)
    clean = all(r.state == "done" and r.status == "succeeded" for r in rows)
    if clean:
        return "succeeded"
    return "partial" if ok_units else "failed"


class Distributor:
    """This replica's side of distribution: dispatching runs, a procrastinate worker
    executing units, and the sweep (stalled jobs, timed-out units, unsealed runs)."""

    def __init__(
        self,
        settings: Settings,
        engine: Engine,
        index: MappingIndex,
        me: str,
        *,
        workers: int,
        attempts: int,
        unit_timeout: float,
        heartbeat: float,
        stalled_after: float,
        grace: float,
        unit_lock: str = "scope",
    ) -> None:
        self.settings = settings
        self.unit_lock = unit_lock
        self.engine = engine
        self.index = index
        self.me = me
        self.workers = workers
        self.attempts = attempts
        self.unit_timeout = unit_timeout
        self.heartbeat = heartbeat
        self.stalled_after = stalled_after
        self.grace = grace
        self.url = settings.database_url
        info = conninfo(self.url)
        self.app = App(connector=PsycopgConnector(conninfo=info))
        self.app.task(
            name=TASK,
            queue=QUEUE,
            # Retries of a unit that raised (the database went away mid-commit);
            # connector failures never raise (they are recorded as unit errors).
            retry=RetryStrategy(max_attempts=attempts, wait=1),
        )(self._task)
        # Deferring happens on the daemon's own threads, not on the worker's event loop:
        # a separate app with a synchronous connector and no tasks of its own (it
        # defers by name; the task lives in ``self.app``, on every replica).
        self._defer_app = App(connector=SyncPsycopgConnector(conninfo=info))
        self._worker: Worker | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._failed: BaseException | None = None

    # -- lifecycle ------------------------------------------------------------------

    def start(self) -> None:
        if ensure_queue_schema(self.url):
            log.info("procrastinate queue schema applied")
        self._defer_app.open()
        self._thread = threading.Thread(target=self._run_worker, name="annexa-units")
        self._thread.daemon = True
        self._thread.start()
        if not self._ready.wait(30) or self._failed is not None:
            raise DistributeError(f"the unit worker did not start: {self._failed}")

    def stop(self) -> None:
        if self._worker is not None:
            self._worker.stop()
        if self._thread is not None:
            self._thread.join(self.grace + 10)
        try:
            self._defer_app.close()
        except Exception:  # noqa: BLE001,S110 - closing at exit
            pass

    def _run_worker(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:
            self._failed = exc
            self._ready.set()
            log.error("unit worker stopped", error=type(exc).__name__, exc_info=True)

    async def _main(self) -> None:
        async with self.app.open_async():
            self._worker = Worker(
                self.app,
                queues=[QUEUE],
                name=self.me,
                concurrency=self.workers,
                wait=True,
                install_signal_handlers=False,  # the daemon owns the signals
                fetch_job_polling_interval=min(5.0, self.heartbeat),
                update_heartbeat_interval=self.heartbeat,
                stalled_worker_timeout=self.stalled_after,
                shutdown_graceful_timeout=self.grace,
                # The ledger (dispatch_units) is the record of every unit; a finished
                # job row would only grow procrastinate's table.
                delete_jobs="successful",
            )
            self._ready.set()
            stalled = asyncio.create_task(self._retry_stalled_forever())
            try:
                await self._worker.run()
            finally:
                stalled.cancel()

    async def _retry_stalled_forever(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat)
            try:
                await self.retry_stalled()
            except Exception as exc:  # noqa: BLE001 - retried next beat
                log.debug("stalled-job check failed", error=type(exc).__name__)

    async def retry_stalled(self) -> int:
        """Put back in the queue the units of workers that stopped heartbeating (their
        replica died): another replica then runs them."""
        jobs = await self.app.job_manager.get_stalled_jobs(
            queue=QUEUE, seconds_since_heartbeat=self.stalled_after
        )
        n = 0
        for job in jobs:
            await self.app.job_manager.retry_job(job)
            n += 1
            log.warning(
                "unit of a dead replica put back in the queue",
                job_id=job.id,
                run_id=job.task_kwargs.get("run_id"),
                unit="/".join(
                    str(job.task_kwargs.get(k)) for k in ("scope", "region", "service")
                ),
            )
        return n

    # -- dispatching (the replica that claimed the schedule) ------------------------

    def _instance(self, source: str) -> LoadedConnector | None:
        from collector.analysis import bind

        for lc in self.settings.connectors:
            if lc.name == source:
                return bind(self.settings, lc, self.engine)
        return None

    def _writer(self, lc: LoadedConnector, run_id: str) -> RunWriter:
        return RunWriter(
            self.engine,
            source=lc.name,
            connector_type=lc.cfg.type,
            config_digest=self.settings.digest(),
            mapping_digest=self.index.digest,
            agent_version=AGENT_VERSION,
            batch_size=_WHOLE_UNIT,
            run_id=run_id,
            heartbeat=False,
            signer=self.settings.signer(),
        )

    def plan(self, lc: LoadedConnector, run_id: str) -> list[Unit]:
        """The connector's units, or the whole instance as one unit.

        A plan that fails (the scope cannot even be listed) falls back to the whole
        instance as one unit: reading it records that failure as the run would.
        """
        whole: list[Unit] = [(lc.name, "global", "*")]
        try:
            units = lc.build().plan_units(
                CollectContext(run_id=run_id, log=log.bind(run_id=run_id, connector=lc.name))
            )
        except Exception as exc:  # noqa: BLE001 - recorded when the whole unit is read
            log.warning("planning units failed: the instance is one unit",
                        connector=lc.name, error=scrub_text(f"{type(exc).__name__}: {exc}"))
            return whole
        return list(dict.fromkeys(units)) if units else whole

    def lock_of(self, source: str, scope: str, region: str) -> str | None:
        """The procrastinate lock of a unit (``[daemon] unit_lock``): jobs sharing a lock
        never run at the same time, on any replica — the per-account bound on requests."""
        if self.unit_lock == "scope":
            return f"{source}:{scope}"
        if self.unit_lock == "scope_region":
            return f"{source}:{scope}/{region}"
        return None

    def dispatch(self, lc: LoadedConnector, run_id: str) -> int:
        """Create run ``run_id`` of ``lc``, record its units, queue one job per unit."""
        units = self.plan(lc, run_id)
        writer = self._writer(lc, run_id)
        writer.start()
        writer.close()
        with self.engine.begin() as conn:
            deadline = db_now(conn) + timedelta(seconds=self.unit_timeout)
            add_units(conn, run_id, lc.name, units, deadline)
        # After the ledger commits: a job never names a unit the ledger lacks. A crash
        # in between leaves pending units without jobs: they time out, never pass.
        groups: dict[str | None, list[dict[str, str]]] = {}
        for s, r, v in units:
            args = {"run_id": run_id, "source": lc.name, "scope": s, "region": r, "service": v}
            groups.setdefault(self.lock_of(lc.name, s, r), []).append(args)
        for lock, jobs in groups.items():
            self._defer_app.configure_task(TASK, queue=QUEUE, lock=lock).batch_defer(*jobs)
        log.info("run dispatched", run_id=run_id, connector=lc.name, units=len(units))
        return len(units)

    # -- executing a unit (any replica) ---------------------------------------------

    def _task(self, run_id: str, source: str, scope: str, region: str, service: str) -> None:
        unit = (scope, region, service)
        rlog = log.bind(run_id=run_id, connector=source, unit=f"{scope}/{region}/{service}")
        with self.engine.begin() as conn:
            attempt = begin_unit(conn, run_id, unit, self.me)
        if attempt is None:
            rlog.info("unit already final: nothing to do")
            return
        lc = self._instance(source)
        if lc is None:
            self.fail_unit(None, run_id, source, unit, "failed",
                           f"connector instance {source!r} is not in this replica's config")
            return
        if attempt > self.attempts:
            self.fail_unit(lc, run_id, source, unit, "failed",
                           f"gave up after {attempt - 1} attempts (its replica died or the "
                           "unit could not be written each time)")
            return
        try:
            if self.execute(lc, run_id, unit, rlog):
                rlog.info("unit done", attempt=attempt)
        except RunSealedError:
            rlog.warning("run sealed before the unit was written: dropped")
            return
        except Exception as exc:
            if attempt >= self.attempts:
                self.fail_unit(lc, run_id, source, unit, "failed",
                               scrub_text(f"{type(exc).__name__}: {exc}"))
                return
            raise  # procrastinate retries it
        self.try_seal(run_id, source)

    def execute(self, lc: LoadedConnector, run_id: str, unit: Unit, rlog: Any) -> bool:
        """Read ``unit`` through the run engine and commit it in one transaction; False
        when another attempt had already made it final (nothing written)."""
        writer = self._writer(lc, run_id)
        writer.attach()
        cancel = threading.Event()
        beat = RunHeartbeat(self.engine, run_id, cancel, every=self.heartbeat).start()
        try:
            result = drive(
                lc,
                self.index,
                WriterSink(writer),
                run_id=run_id,
                rlog=rlog,
                cancel_event=cancel,
                cancel_reason="the run was sealed while the unit was read",
                deadline=self.settings.model.collection.run_deadline_seconds,
                unit=None if unit == (lc.name, "global", "*") else unit,
            )
        finally:
            beat.stop()
        try:
            if beat.lost:
                raise RunSealedError(f"run {run_id} was sealed while a unit was read")
            return writer.commit_unit(
                lambda conn: finish_unit(
                    conn,
                    run_id,
                    unit,
                    state="done",
                    status=result.status,
                    replica=self.me,
                    counts=writer.counts.as_dict(),
                    error=json.dumps(writer.errors) if writer.errors else None,
                )
            )
        finally:
            writer.close()

    def fail_unit(
        self,
        lc: LoadedConnector | None,
        run_id: str,
        source: str,
        unit: Unit,
        state: str,
        reason: str,
    ) -> bool:
        """Record ``unit`` as unread (``failed`` or ``timed_out``): its coverage error and
        an ``error`` for every check of its service, then seal if it was the last."""
        scope, region, service = unit
        coverage = Coverage(scope, region, service, ok=False, error=reason)
        if lc is None:
            lc = self._instance(source)
        if lc is None:  # no config for it here: the ledger alone says it failed
            with self.engine.begin() as conn:
                done = finish_unit(conn, run_id, unit, state=state, status="failed",
                                   replica=self.me, counts={"units_error": 1},
                                   error=json.dumps([f"{coverage.unit}: {reason}"]))
        else:
            writer = self._writer(lc, run_id)
            writer.attach()
            try:
                unit_error(lc, self.index, WriterSink(writer), coverage)
                done = writer.commit_unit(
                    lambda conn: finish_unit(
                        conn, run_id, unit, state=state, status="failed", replica=self.me,
                        counts=writer.counts.as_dict(), error=json.dumps(writer.errors),
                    )
                )
            except RunSealedError:
                return False
            finally:
                writer.close()
        log.warning("unit recorded as unread", run_id=run_id, connector=source,
                    unit=coverage.unit, state=state, reason=reason)
        self.try_seal(run_id, source)
        return done

    # -- sealing ----------------------------------------------------------------------

    def try_seal(self, run_id: str, source: str) -> bool:
        """Seal ``run_id`` if none of its units is open; True if this call sealed it."""
        with self.engine.connect() as conn:
            if open_units(conn, run_id):
                return False
            rows = units_of(conn, run_id)
        lc = self._instance(source)
        if lc is None:
            return False
        writer = self._writer(lc, run_id)
        writer.attach(seal=True)
        if all(r.state == "done" for r in rows):
            # Every unit was read: the instance as a whole was, too (this closes a
            # whole-instance error of an earlier run, as a single-process run does).
            writer.add_coverage(Coverage(lc.name, "global", "*", ok=True))

        def seal(conn: Connection) -> bool:
            if open_units(conn, run_id):
                return False
            final = units_of(conn, run_id)
            errors = [e for r in final if r.error for e in json.loads(r.error)]
            counts = _sum_counts(final)
            counts["units"] = len(final)
            counts["replicas"] = sorted({r.replica for r in final if r.replica})
            return seal_run(
                conn,
                run_id,
                status=run_status(final),
                counts=counts,
                errors=errors,
                signer=self.settings.signer(),
                finished_at=utcnow(),
            ) is not None

        try:
            sealed = writer.commit_unit(seal)
        except RunSealedError:
            return False
        finally:
            writer.close()
        if sealed:
            log.info("distributed run sealed", run_id=run_id, connector=source,
                     units=len(rows), status=run_status(rows))
            stamp_runs(self.settings, self.engine)
        return sealed

    # -- the sweep (every replica, every heartbeat) -----------------------------------

    def sweep(self) -> None:
        """Keep open runs heartbeated, time out overdue units, seal what is complete."""
        with self.engine.begin() as conn:
            now = db_now(conn)
            for run_id in open_runs(conn):
                touch_run(conn, run_id, now)
            expired = expired_units(conn)
        for u in expired:
            self.fail_unit(
                None, u.run_id, u.source, u.unit, "timed_out",
                f"not finished within daemon.unit_timeout ({self.unit_timeout:g}s)",
            )
        with self.engine.connect() as conn:
            complete = runs_to_seal(conn)
        for run_id, source in complete:
            self.try_seal(run_id, source)

"""Schedule claims, leases, heartbeats and the reaper: how replicas share one database.

A replica may start a scheduled collection only by winning :func:`claim`, a single
conditional ``UPDATE … RETURNING`` on the schedule's row: it succeeds when the
schedule is due (``next_due <= now``) or was left unfinished by a replica whose lease
has expired, and never while another replica's lease is live. Whoever wins moves
``next_due`` on and takes a lease, renewed by :func:`renew` at every heartbeat; a
replica that dies stops renewing, its lease expires, and any other replica's next
attempt takes the unfinished collection over. Every time comparison uses the
database's clock, so replicas with skewed clocks still agree.

The reaper (:func:`reap_stale`, :func:`seal_aborted`) seals runs left ``running`` by a
dead agent as ``aborted``, with a digest chained like any other run, so that
``annexa verify`` keeps passing and nothing stays ``running`` forever.

This module never imports ``collector``: schedule arithmetic comes in as callables.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    and_,
    case,
    exists,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite

from core.signing import Signer
from store.outbox import enqueue
from store.schema import runs
from store.schema_daemon import (
    control_states,
    dispatch_units,
    schedule_claims,
    schedule_missed,
    schedules,
)
from store.sealing import db_now, seal_run

_ONE_US = timedelta(microseconds=1)
REAPED_PREFIX = "aborted by the reaper"
#: What a claim does when more than one due time has passed unserved: ``latest`` runs
#: the latest of them at once and records the earlier ones missed; ``none`` records
#: them all missed and waits for the next due time.
CATCH_UP_POLICIES = ("latest", "none")
#: At most this many missed slots are recorded one row each per claim (a daemon down
#: for a month on a 20-second schedule); the rest are named in the last row's reason.
MAX_MISSED_ROWS = 1000


def _insert_ignore(conn: Connection, table: Any) -> Any:
    if conn.dialect.name == "postgresql":
        return postgresql.insert(table).on_conflict_do_nothing()
    return sqlite.insert(table).on_conflict_do_nothing()


# -- schedules -------------------------------------------------------------------------


def last_started(conn: Connection, source: str) -> datetime | None:
    """Start of the latest finished run of ``source`` (to resume a schedule's grid)."""
    return conn.execute(
        select(func.max(runs.c.started_at)).where(
            runs.c.source == source, runs.c.status != "running"
        )
    ).scalar()


def ensure_schedule(
    engine: Engine,
    name: str,
    spec: str,
    first_due: Callable[[datetime, datetime | None], datetime],
) -> datetime:
    """Create the schedule row of ``name`` if missing; follow a changed ``spec``.

    ``first_due(now, last_started)`` gives the due time of a new row — at or before
    ``now`` when a collection is overdue (never collected, or the last run is older
    than one period), so it runs at once. Returns the row's ``next_due``.
    """
    with engine.begin() as conn:
        now = db_now(conn)
        due = first_due(now, last_started(conn, name))
        conn.execute(_insert_ignore(conn, schedules).values(name=name, spec=spec, next_due=due))
        row = conn.execute(
            select(schedules.c.spec, schedules.c.next_due).where(schedules.c.name == name)
        ).one()
        if row.spec != spec:
            # A new spec takes effect now; an overdue collection stays overdue.
            new_due = row.next_due if row.next_due <= now else min(row.next_due, due)
            conn.execute(
                update(schedules)
                .where(schedules.c.name == name)
                .values(spec=spec, next_due=new_due)
            )
            return new_due
        return row.next_due


@dataclass(frozen=True)
class Claim:
    name: str
    run_id: str
    due_at: datetime
    claimed_at: datetime
    takeover: bool
    next_due: datetime
    #: Due times this claim recorded in ``schedule_missed``.
    missed: tuple[datetime, ...] = ()
    #: False: the catch-up policy skipped every overdue slot; nothing is to be run.
    run: bool = True

    @property
    def lateness(self) -> float:
        return max(0.0, (self.claimed_at - self.due_at).total_seconds())


def _lease_free(now: datetime) -> Any:
    return or_(schedules.c.lease_until.is_(None), schedules.c.lease_until < now)


def _claimable(now: datetime, max_takeovers: int) -> Any:
    return and_(
        _lease_free(now),
        or_(
            schedules.c.next_due <= now,
            and_(schedules.c.claimed_by.is_not(None), schedules.c.takeovers < max_takeovers),
        ),
    )


def claim(
    engine: Engine,
    name: str,
    me: str,
    run_id: str,
    *,
    lease: float,
    next_due: Callable[[datetime], datetime],
    max_takeovers: int = 3,
    catch_up: str = "latest",
) -> Claim | None:
    """Atomically claim ``name`` for ``me`` if it is due; ``None`` if someone else has it.

    One ``UPDATE … WHERE <due and lease free> RETURNING``: of any number of replicas
    racing, exactly one gets a row back. A *takeover* (the previous holder's lease
    expired before it released) retries the due time that holder had claimed and keeps
    the schedule's ``next_due``; at most ``max_takeovers`` times in a row, so a
    collection that kills its agent does not loop.

    ``next_due(t)`` is the first due time strictly after ``t``. When several due times
    have passed unserved (no replica was up, or the previous run outlasted a period),
    the winner records each but one in ``schedule_missed`` in the same transaction, so
    every due time is either claimed or recorded missed, exactly once; which one runs is
    the ``catch_up`` policy (:data:`CATCH_UP_POLICIES`).
    """
    if catch_up not in CATCH_UP_POLICIES:
        raise ValueError(f"catch_up must be one of {CATCH_UP_POLICIES}, not {catch_up!r}")
    with engine.begin() as conn:
        now = db_now(conn)
        nxt = next_due(now)
        # The claim it replaces (row-locked on PostgreSQL): an unfinished one whose due
        # time is not retaken (a later due time has come) is recorded missed below.
        prev = conn.execute(
            select(schedules.c.claimed_by, schedules.c.claimed_due, schedules.c.run_id)
            .where(schedules.c.name == name)
            .with_for_update()
        ).one_or_none()
        takeover = and_(schedules.c.claimed_by.is_not(None), schedules.c.next_due > now)
        stmt = (
            update(schedules)
            .where(schedules.c.name == name, _claimable(now, max_takeovers))
            .values(
                claimed_due=case((takeover, schedules.c.claimed_due), else_=schedules.c.next_due),
                next_due=case((takeover, schedules.c.next_due), else_=nxt),
                takeovers=case((takeover, schedules.c.takeovers + 1), else_=0),
                claimed_by=me,
                claimed_at=now,
                lease_until=now + timedelta(seconds=lease),
                run_id=run_id,
            )
            .returning(schedules.c.claimed_due, schedules.c.takeovers, schedules.c.next_due)
        )
        row = conn.execute(stmt).one_or_none()
        if row is None:
            return None
        due_at = row.claimed_due or now
        is_takeover = row.takeovers > 0
        missed: list[datetime] = []
        gap = skip_all = False
        if not is_takeover:
            overdue = [due_at]
            while (later := next_due(overdue[-1])) <= now:
                if len(overdue) > MAX_MISSED_ROWS:  # jump to the latest slot ≤ now
                    while (n := next_due(later)) <= now:
                        later, gap = n, True
                    overdue.append(later)
                    break
                overdue.append(later)
            if catch_up == "none" and len(overdue) > 1:
                missed, skip_all = overdue, True
            else:
                missed, due_at = overdue[:-1], overdue[-1]
        if missed:
            _record_missed(conn, name, me, now, missed, catch_up, due_at, gap)
        if (
            not is_takeover
            and prev is not None
            and prev.claimed_by is not None
            and prev.claimed_due is not None
            and prev.claimed_due not in missed
            and prev.claimed_due != due_at
        ):
            conn.execute(
                _insert_ignore(conn, schedule_missed).values(
                    name=name,
                    due_at=prev.claimed_due,
                    recorded_at=now,
                    recorded_by=me,
                    reason=(
                        f"not run to completion: its run {prev.run_id} on {prev.claimed_by} "
                        "was lost (the replica died or stopped) and a later due time came "
                        f"before it could be taken over; claimed {due_at.isoformat()} instead"
                    ),
                )
            )
        if skip_all:
            conn.execute(
                update(schedules)
                .where(schedules.c.name == name)
                .values(
                    claimed_by=None,
                    claimed_at=None,
                    claimed_due=None,
                    lease_until=None,
                    run_id=None,
                )
            )
            return Claim(name, run_id, due_at, now, False, row.next_due, tuple(missed), False)
        if missed:
            conn.execute(
                update(schedules).where(schedules.c.name == name).values(claimed_due=due_at)
            )
        conn.execute(
            insert(schedule_claims).values(
                name=name,
                due_at=due_at,
                claimed_at=now,
                claimed_by=me,
                run_id=run_id,
                takeover=is_takeover,
            )
        )
    return Claim(name, run_id, due_at, now, is_takeover, row.next_due, tuple(missed))


def _record_missed(
    conn: Connection,
    name: str,
    me: str,
    now: datetime,
    slots: list[datetime],
    policy: str,
    served: datetime,
    gap: bool,
) -> None:
    """One ``schedule_missed`` row per slot (beyond the cap, the gap is named)."""
    if policy == "none":
        why = "overdue when claimed (catch_up = none: overdue due times are skipped)"
    else:
        why = (
            f"superseded by the later due time {served.isoformat()}, run instead "
            "(catch_up = latest)"
        )
    reason = f"not run: {why}; no replica claimed it before {now.isoformat()}"
    rows = [
        {"name": name, "due_at": d, "recorded_at": now, "recorded_by": me, "reason": reason}
        for d in slots
    ]
    if gap:
        rows[-1]["reason"] = (
            f"{reason} (more than {MAX_MISSED_ROWS} due times were missed: those between "
            f"the first {MAX_MISSED_ROWS} and {served.isoformat()} are not listed one by one)"
        )
    conn.execute(_insert_ignore(conn, schedule_missed), rows)


@dataclass(frozen=True)
class HeldClaim:
    name: str
    claimed_by: str
    run_id: str


def claims_held_elsewhere(engine: Engine, me: str) -> list[HeldClaim]:
    """Schedules under another replica's live lease (to check that replica is alive)."""
    with engine.connect() as conn:
        now = db_now(conn)
        q = select(schedules.c.name, schedules.c.claimed_by, schedules.c.run_id).where(
            schedules.c.claimed_by.is_not(None),
            schedules.c.claimed_by != me,
            schedules.c.run_id.is_not(None),
            schedules.c.lease_until >= now,
        )
        return [HeldClaim(r.name, r.claimed_by, r.run_id) for r in conn.execute(q)]


def expire_lease(engine: Engine, held: HeldClaim) -> bool:
    """End the live lease of a replica known dead, if it still holds that very claim;
    the claim stays, so the next :func:`claim` takes its due time over."""
    with engine.begin() as conn:
        now = db_now(conn)
        return bool(
            conn.execute(
                update(schedules)
                .where(
                    schedules.c.name == held.name,
                    schedules.c.claimed_by == held.claimed_by,
                    schedules.c.run_id == held.run_id,
                    schedules.c.lease_until >= now,
                )
                .values(lease_until=now - _ONE_US)
            ).rowcount
        )


def due_names(engine: Engine, names: Collection[str], max_takeovers: int = 3) -> list[str]:
    """Which of ``names`` a claim would succeed on right now (a cheap pre-check)."""
    if not names:
        return []
    with engine.connect() as conn:
        now = db_now(conn)
        q = select(schedules.c.name).where(
            schedules.c.name.in_(list(names)), _claimable(now, max_takeovers)
        )
        return [r[0] for r in conn.execute(q)]


def renew(engine: Engine, name: str, me: str, run_id: str, *, lease: float) -> bool:
    """Heartbeat: extend ``me``'s lease on ``name`` and the run's ``heartbeat_at``.

    Returns False when the lease is no longer ``me``'s (it expired and was taken over).
    """
    with engine.begin() as conn:
        now = db_now(conn)
        kept = conn.execute(
            update(schedules)
            .where(
                schedules.c.name == name,
                schedules.c.claimed_by == me,
                schedules.c.run_id == run_id,
            )
            .values(lease_until=now + timedelta(seconds=lease))
        ).rowcount
        touch_run(conn, run_id, now)
    return bool(kept)


def touch_run(conn: Connection, run_id: str, now: datetime | None = None) -> bool:
    """Refresh a running run's ``heartbeat_at``; False if it is no longer running."""
    return bool(
        conn.execute(
            update(runs)
            .where(runs.c.id == run_id, runs.c.status == "running")
            .values(heartbeat_at=now or db_now(conn))
        ).rowcount
    )


def release(
    engine: Engine, name: str, me: str, run_id: str, status: str, *, retake: bool = False
) -> bool:
    """Give the schedule back after a run; record its outcome in the claim log.

    ``retake``: the run did not complete (cancelled at shutdown): the lease is expired
    at once but the claim is kept, so any replica takes the same due time over.
    """
    with engine.begin() as conn:
        now = db_now(conn)
        conn.execute(
            update(schedule_claims)
            .where(schedule_claims.c.run_id == run_id, schedule_claims.c.claimed_by == me)
            .values(status=status, finished_at=now)
        )
        mine = and_(
            schedules.c.name == name, schedules.c.claimed_by == me, schedules.c.run_id == run_id
        )
        if retake:
            values: dict[str, Any] = {"lease_until": now - _ONE_US}
        else:
            values = {
                "claimed_by": None,
                "claimed_at": None,
                "claimed_due": None,
                "lease_until": None,
                "run_id": None,
                "takeovers": 0,
            }
        values.update(last_run_id=run_id, last_status=status, last_finished_at=now)
        return bool(conn.execute(update(schedules).where(mine).values(**values)).rowcount)


# -- the reaper ------------------------------------------------------------------------


def seal_aborted(
    engine: Engine,
    run_id: str,
    reason: str,
    *,
    stale_before: datetime | None = None,
    signer: Signer | None = None,
) -> bool:
    """Seal a ``running`` run as ``aborted`` on behalf of its dead agent (see
    :func:`store.sealing.seal_run`); its counts are its rows, its error ``reason``.

    With ``stale_before``, only if its heartbeat is older than that (re-checked under
    the chain lock, so a run whose owner just heartbeated is never sealed). Returns
    whether this call sealed it.
    """
    with engine.begin() as conn:
        sealed = seal_run(
            conn,
            run_id,
            status="aborted",
            counts=None,
            errors=[reason],
            signer=signer,
            stale_before=stale_before,
        )
        if sealed is None:
            conn.rollback()
            return False
        conn.execute(
            update(schedule_claims)
            .where(schedule_claims.c.run_id == run_id, schedule_claims.c.status.is_(None))
            .values(status="aborted", finished_at=sealed.finished_at)
        )
    return True


@dataclass(frozen=True)
class StaleRun:
    id: str
    source: str
    host: str | None
    heartbeat_at: datetime | None


#: Runs not started by a daemon (``annexa collect``) heartbeat only when they flush a
#: batch, so a quiet connector can look dead for a while: reaped much later.
UNSCHEDULED_STALE_AFTER = 1800.0


def _stale(cutoff: datetime) -> Any:
    return or_(runs.c.heartbeat_at.is_(None), runs.c.heartbeat_at < cutoff)


def stale_runs(
    engine: Engine,
    *,
    stale_after: float,
    me: str,
    exclude: Iterable[str] = (),
    source: str | None = None,
    unscheduled_stale_after: float = UNSCHEDULED_STALE_AFTER,
) -> list[tuple[StaleRun, datetime]]:
    """Runs still ``running`` that look dead, each with the heartbeat cutoff it failed.

    A daemon's run (it has a claim in ``schedule_claims``; its replica heartbeats it
    every heartbeat) is stale after ``stale_after`` seconds without a heartbeat, any
    other run after ``unscheduled_stale_after``. A run whose schedule is under another
    replica's live lease is never stale.
    """
    excluded = list(exclude)
    with engine.connect() as conn:
        now = db_now(conn)
        cutoff = now - timedelta(seconds=stale_after)
        loose = now - timedelta(seconds=max(stale_after, unscheduled_stale_after))
        live_elsewhere = exists().where(
            schedules.c.name == runs.c.source,
            schedules.c.lease_until >= now,
            schedules.c.claimed_by != me,
        )
        scheduled = exists().where(schedule_claims.c.run_id == runs.c.id)
        # A run spread over replicas ([daemon] distribute) ends by its units: each is
        # finished, failed or timed out by whichever replica is alive (collector/
        # daemon/distribute.py). A lapse in its heartbeat says nothing of them until
        # their deadline (daemon.unit_timeout) has passed.
        distributed = exists().where(
            dispatch_units.c.run_id == runs.c.id, dispatch_units.c.deadline_at >= now
        )
        q = select(
            runs.c.id, runs.c.source, runs.c.host, runs.c.heartbeat_at, scheduled.label("sch")
        ).where(
            runs.c.status == "running",
            _stale(cutoff),
            ~live_elsewhere,
            ~distributed,
        )
        if source is not None:
            q = q.where(runs.c.source == source)
        if excluded:
            q = q.where(runs.c.id.not_in(excluded))
        found = []
        for r in conn.execute(q):
            limit = cutoff if r.sch else loose
            if r.heartbeat_at is None or r.heartbeat_at < limit:
                found.append((StaleRun(r.id, r.source, r.host, r.heartbeat_at), limit))
    return found


def reap_stale(
    engine: Engine,
    *,
    stale_after: float,
    me: str,
    exclude: Iterable[str] = (),
    source: str | None = None,
    unscheduled_stale_after: float = UNSCHEDULED_STALE_AFTER,
    signer: Signer | None = None,
) -> list[StaleRun]:
    """Seal every stale run (see :func:`stale_runs`) as ``aborted``; return those sealed."""
    candidates = stale_runs(
        engine,
        stale_after=stale_after,
        me=me,
        exclude=exclude,
        source=source,
        unscheduled_stale_after=unscheduled_stale_after,
    )
    sealed = []
    for r, cutoff in candidates:
        last = r.heartbeat_at.isoformat() if r.heartbeat_at else "never"
        reason = (
            f"{REAPED_PREFIX} {me}: no heartbeat since {last} from {r.host or 'unknown host'} "
            "(the agent running it stopped)"
        )
        if seal_aborted(engine, r.id, reason, stale_before=cutoff, signer=signer):
            sealed.append(r)
    return sealed


# -- control states (notification de-duplication) -----------------------------------------


@dataclass(frozen=True)
class ControlChange:
    control: str
    old: str
    new: str
    at: datetime


def control_changes(
    engine: Engine,
    statuses: dict[str, str],
    outbox: Callable[[Connection, ControlChange], list[tuple[str, dict[str, Any]]]] | None = None,
) -> list[ControlChange]:
    """Record ``statuses`` (control → status); return the changes *this call* won.

    A control seen for the first time sets the baseline silently. A change is won by a
    conditional ``UPDATE … WHERE status = :old``: if two replicas evaluate the same
    change, exactly one gets it, so one notification is sent per change. ``outbox``
    gives the notifications of a won change (destination, payload), written to the
    outbox in the same transaction (:mod:`store.outbox`).
    """
    changes: list[ControlChange] = []
    with engine.begin() as conn:
        now = db_now(conn)
        known = {
            r.control: r.status
            for r in conn.execute(select(control_states.c.control, control_states.c.status))
        }
        missing = [c for c in statuses if c not in known]
        if missing:
            conn.execute(
                _insert_ignore(conn, control_states),
                [{"control": c, "status": statuses[c], "changed_at": now} for c in missing],
            )
        for control, new in sorted(statuses.items()):
            old = known.get(control)
            if old is None or old == new:
                continue
            won = conn.execute(
                update(control_states)
                .where(control_states.c.control == control, control_states.c.status == old)
                .values(status=new, changed_at=now)
            ).rowcount
            if won:
                change = ControlChange(control, old, new, now)
                changes.append(change)
                if outbox is not None:
                    enqueue(
                        conn,
                        control=control,
                        at=now,
                        old=old,
                        new=new,
                        rows=outbox(conn, change),
                    )
    return changes

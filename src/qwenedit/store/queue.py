"""The queue (DESIGN §1, §3): claim, lease heartbeat, progress, release, and the reaping of
tasks whose worker vanished. Every worker write is fenced (see ``task_rows.FENCE``)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import String, Update, and_, bindparam, case, cast, func, literal, select, update

from qwenedit.domain.task import ErrorCode, TaskRecord
from qwenedit.store.database import TASKS_CHANNEL, Database
from qwenedit.store.tables import accounts, tasks
from qwenedit.store.task_end import settle
from qwenedit.store.task_rows import FENCE, PENDING, PROCESSING, failed, fenced, task_record

_HOLDS = select(tasks.c.id).where(FENCE)


def _claim_statement(db: Database) -> Update:
    """The claim, built once: the oldest task of the account served longest ago, to the worker
    ``claimer``, leased until ``clock_lease`` (both clock parameters of ``db``)."""
    now = db.clock_param("clock_now")
    picked = (
        select(tasks.c.id)
        .join_from(tasks, accounts)
        .where(tasks.c.status == PENDING)
        .order_by(accounts.c.last_claimed_at.asc().nulls_first(), tasks.c.created_at, tasks.c.id)
        .limit(1)
        .with_for_update(of=tasks, skip_locked=True)
        .cte("picked")
        .prefix_with("MATERIALIZED", dialect="postgresql")
    )
    return (
        update(tasks)
        .where(tasks.c.id == picked.c.id)
        .values(
            status=PROCESSING,
            worker_id=bindparam("claimer", type_=tasks.c.worker_id.type),
            attempt=tasks.c.attempt + 1,
            lease_expires_at=db.clock_param("clock_lease"),
            claimed_at=now,
            started_at=func.coalesce(tasks.c.started_at, now),
        )
        .returning(*tasks.c)
    )


@dataclass(frozen=True)
class Reaped:
    requeued: list[str]
    """Ids of tasks put back to ``pending`` for another attempt."""
    failed: list[TaskRecord]
    """Tasks that were on their last attempt, now failed and refunded."""


class QueueRepo:
    def __init__(self, db: Database) -> None:
        self._db = db
        self._claim = _claim_statement(db)
        self._claimed_from = (
            update(accounts)
            .where(accounts.c.id == bindparam("claimed_account"))
            .values(last_claimed_at=db.clock_param("clock_now"))
        )
        claimed = self._claim.cte("claimed")
        self._claim_and_stamp = select(claimed).add_cte(
            update(accounts)
            .where(accounts.c.id == claimed.c.account_id)
            .values(last_claimed_at=db.clock_param("clock_now"))
            .cte("stamped")
        )
        """The claim and the account's stamp in one statement, for PostgreSQL (one round
        trip where two were; SQLite has no data-modifying CTE)."""

    async def claim(self, worker_id: str, lease_seconds: float) -> TaskRecord | None:
        """Take the next pending task: round-robin across accounts (the account served longest
        ago first), oldest first within one. PostgreSQL skips rows other claimers hold; SQLite's
        ``BEGIN IMMEDIATE`` already makes claimers take turns. Not durable (a claim lost with
        the machine leaves the task pending, to be claimed again)."""
        async with self._db.transaction(durable=False) as connection:
            # read once the write lock is held, so waiting for it does not shorten the lease
            clock = {
                "clock_now": self._db.clock_value(),
                "clock_lease": self._db.clock_value(lease_seconds),
            }
            if connection.dialect.name == "postgresql":
                stamped = await connection.execute(
                    self._claim_and_stamp, {"claimer": worker_id, **clock}
                )
                row = stamped.first()
                return None if row is None else task_record(row)
            row = (await connection.execute(self._claim, {"claimer": worker_id, **clock})).first()
            if row is None:
                return None
            await connection.execute(
                self._claimed_from, {"claimed_account": row.account_id, **clock}
            )
        return task_record(row)

    async def heartbeat(
        self, task_id: str, worker_id: str, attempt: int, lease_seconds: float
    ) -> bool:
        """Extend the lease; ``False`` when this attempt no longer holds the task."""
        expires = self._db.clock(lease_seconds)
        values = {"lease_expires_at": expires}
        return await self._fenced_update(task_id, worker_id, attempt, values, durable=False)

    async def report_progress(
        self, task_id: str, worker_id: str, attempt: int, progress: int
    ) -> bool:
        """Raise the stored progress (it never goes down); ``False`` when fenced out."""
        value = min(max(progress, 0), 100)
        rising = case((tasks.c.progress < value, value), else_=tasks.c.progress)
        values = {"progress": rising}
        return await self._fenced_update(task_id, worker_id, attempt, values, durable=False)

    async def holds(self, task_id: str, worker_id: str, attempt: int) -> bool:
        """Whether this attempt still holds the task: the fence, read without writing (on
        SQLite a write would take the write lock and an fsync)."""
        async with self._db.transaction(write=False) as connection:
            found = await connection.scalar(_HOLDS, fenced(task_id, worker_id, attempt))
        return found is not None

    async def release(self, task_id: str, worker_id: str, attempt: int) -> bool:
        """A stopping worker hands its task back: pending again, this attempt not counted."""
        values = {
            "status": PENDING,
            "attempt": tasks.c.attempt - 1,
            "worker_id": None,
            "lease_expires_at": None,
            "claimed_at": None,
        }
        return await self._fenced_update(task_id, worker_id, attempt, values, wake=True)

    async def _fenced_update(
        self,
        task_id: str,
        worker_id: str,
        attempt: int,
        values: dict[str, Any],
        *,
        wake: bool = False,
        durable: bool = True,
    ) -> bool:
        async with self._db.transaction(durable=durable) as connection:
            result = await connection.execute(
                update(tasks).where(FENCE).values(**values), fenced(task_id, worker_id, attempt)
            )
            if wake and result.rowcount > 0:
                await self._db.notify_on_commit(connection, TASKS_CHANNEL)
        return result.rowcount > 0

    async def seconds_until_expiry(self) -> float | None:
        """How long until the earliest running lease runs out, by the database's clock (0 if
        one has); ``None`` if no task is processing."""
        async with self._db.transaction(write=False) as connection:
            soonest, now = (
                await connection.execute(
                    select(func.min(tasks.c.lease_expires_at), self._db.clock()).where(
                        tasks.c.status == PROCESSING
                    )
                )
            ).one()
        if soonest is None:
            return None
        seconds: float = (soonest - now).total_seconds()
        return max(0.0, seconds)

    async def reap(self, *, max_attempts: int) -> Reaped:
        """Tasks whose lease expired go back to pending (progress kept; the attempt was counted
        at claim) or, on their last attempt, fail with ``service_error`` and a full refund."""
        now = datetime.now(UTC)
        expired = and_(tasks.c.status == PROCESSING, tasks.c.lease_expires_at < self._db.clock())
        message = literal("The task failed after ") + cast(tasks.c.attempt, String) + " attempts"
        values = failed(now, ErrorCode.SERVICE_ERROR.value, message)
        async with self._db.transaction() as connection:
            requeued = (
                await connection.execute(
                    update(tasks)
                    .where(expired, tasks.c.attempt < max_attempts)
                    .values(status=PENDING, worker_id=None, lease_expires_at=None)
                    .returning(tasks.c.id)
                )
            ).scalars()
            requeued_ids = list(requeued)
            if requeued_ids:
                await self._db.notify_on_commit(connection, TASKS_CHANNEL)
            rows = (
                await connection.execute(
                    update(tasks)
                    .where(expired, tasks.c.attempt >= max_attempts)
                    .values(**values)
                    .returning(*tasks.c)
                )
            ).all()
            ended = [task_record(row) for row in rows]
            for task in ended:
                await settle(self._db, connection, task, now)
        return Reaped(requeued=requeued_ids, failed=ended)

"""The callback outbox (DESIGN §4.4): a row queued in the transaction that ends a task, claimed
by dispatchers. A row refers to the final task row; the body is rendered from it when sent.

A claim counts the attempt and pushes ``next_attempt_at`` past the send's deadline in one
statement, so two dispatchers never send the same attempt, and an attempt whose dispatcher died
is retried once that lease runs out. ``record`` is fenced on the attempt number it claimed.
Both take ``now`` from their caller, the dispatcher, which owns the clock of the schedule."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from qwenedit.domain.task import TaskRecord
from qwenedit.domain.webhooks import MAX_ATTEMPTS, retry_delay
from qwenedit.errors import CallbackPending, RedeliveryLimitReached
from qwenedit.store.accounts import signing_secrets
from qwenedit.store.database import OUTBOX_CHANNEL, Database
from qwenedit.store.tables import callback_attempts, outbox, tasks
from qwenedit.store.task_rows import task_record

PENDING, DELIVERED, FAILED = "pending", "delivered", "failed"


@dataclass(frozen=True)
class Delivery:
    """One claimed attempt of one callback."""

    id: int
    task: TaskRecord
    """The finished task, as the body is rendered from it."""
    url: str
    attempt: int
    signing_secrets: tuple[str, ...]

    @property
    def task_id(self) -> str:
        return self.task.id


@dataclass(frozen=True)
class AttemptOutcome:
    status_code: int | None
    error: str | None
    duration_ms: int

    @property
    def succeeded(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


class Handoff(Protocol):
    """A dispatcher in this process that sends a callback as soon as the transaction that
    queued it commits, without claiming it from the outbox first."""

    lease_seconds: float
    """How long the row stays leased to it: past that, any dispatcher may claim it."""

    def send(self, delivery: Delivery) -> None: ...


class OutboxRepo:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def claim(self, lease_seconds: float, *, now: datetime) -> Delivery | None:
        """The most overdue pending delivery due at ``now``, its attempt counted and leased."""
        due = (
            select(outbox.c.id)
            .where(outbox.c.status == PENDING, outbox.c.next_attempt_at <= now)
            .order_by(outbox.c.next_attempt_at, outbox.c.id)
            .limit(1)
            .with_for_update(skip_locked=True)
            .scalar_subquery()
        )
        async with self._db.transaction() as connection:
            row = (
                await connection.execute(
                    update(outbox)
                    .where(outbox.c.id == due, outbox.c.status == PENDING)
                    .values(
                        attempts=outbox.c.attempts + 1,
                        next_attempt_at=now + timedelta(seconds=lease_seconds),
                    )
                    .returning(
                        outbox.c.id,
                        outbox.c.task_id,
                        outbox.c.account_id,
                        outbox.c.url,
                        outbox.c.attempts,
                    )
                )
            ).first()
            if row is None:
                return None
            task = (await connection.execute(select(tasks).where(tasks.c.id == row.task_id))).one()
            secrets = await signing_secrets(connection, row.account_id, now)
        return Delivery(
            id=row.id,
            task=task_record(task),
            url=row.url,
            attempt=row.attempts,
            signing_secrets=tuple(secrets),
        )

    async def seconds_until_due(self, *, now: datetime) -> float | None:
        """How long until the next pending delivery is due (0 if one is); ``None`` if none."""
        async with self._db.transaction(write=False) as connection:
            due = await connection.scalar(
                select(func.min(outbox.c.next_attempt_at)).where(outbox.c.status == PENDING)
            )
        if due is None:
            return None
        seconds: float = (due - now).total_seconds()
        return max(0.0, seconds)

    async def record(self, delivery: Delivery, outcome: AttemptOutcome, *, now: datetime) -> str:
        """Log the attempt that ended at ``now`` and schedule what follows: ``delivered``,
        ``failed`` (schedule exhausted) or ``pending`` (retry 1, 2, 4 s after ``now``). Returns
        the new status."""
        if outcome.succeeded:
            values: dict[str, Any] = {"status": DELIVERED, "delivered_at": now}
        else:
            delay = retry_delay(delivery.attempt) if delivery.attempt < MAX_ATTEMPTS else None
            if delay is None:
                values = {"status": FAILED}
            else:
                values = {"next_attempt_at": now + timedelta(seconds=delay)}
        async with self._db.transaction() as connection:
            await connection.execute(
                insert(callback_attempts).values(
                    outbox_id=delivery.id,
                    attempted_at=now - timedelta(milliseconds=outcome.duration_ms),
                    status_code=outcome.status_code,
                    error=outcome.error,
                    duration_ms=outcome.duration_ms,
                )
            )
            await connection.execute(
                update(outbox)
                .where(
                    outbox.c.id == delivery.id,
                    outbox.c.attempts == delivery.attempt,
                    outbox.c.status == PENDING,
                )
                .values(**values)
            )
        return str(values.get("status", PENDING))

    async def history(self, task_id: str, account_id: int) -> list[dict[str, Any]]:
        """Every delivery of a task's callback with its attempts, oldest first. One statement,
        so a delivery and its attempts come from the same snapshot even under READ COMMITTED."""
        query = (
            select(
                outbox.c.id,
                outbox.c.url,
                outbox.c.status,
                outbox.c.created_at,
                outbox.c.delivered_at,
                outbox.c.next_attempt_at,
                callback_attempts.c.id.label("attempt_id"),
                callback_attempts.c.attempted_at,
                callback_attempts.c.status_code,
                callback_attempts.c.error,
                callback_attempts.c.duration_ms,
            )
            .outerjoin(callback_attempts, callback_attempts.c.outbox_id == outbox.c.id)
            .where(outbox.c.task_id == task_id, outbox.c.account_id == account_id)
            .order_by(outbox.c.id, callback_attempts.c.id)
        )
        async with self._db.transaction(write=False) as connection:
            rows = (await connection.execute(query)).all()
        deliveries: dict[int, dict[str, Any]] = {}
        for row in rows:
            delivery = deliveries.setdefault(
                row.id,
                {
                    "id": row.id,
                    "url": row.url,
                    "status": row.status,
                    "created_at": row.created_at,
                    "delivered_at": row.delivered_at,
                    "next_attempt_at": row.next_attempt_at if row.status == PENDING else None,
                    "attempts": [],
                },
            )
            if row.attempt_id is not None:
                delivery["attempts"].append(
                    {
                        "attempted_at": row.attempted_at,
                        "status_code": row.status_code,
                        "error": row.error,
                        "duration_ms": row.duration_ms,
                    }
                )
        return list(deliveries.values())

    async def redeliver(
        self, task_id: str, account_id: int, *, max_redeliveries: int
    ) -> int | None:
        """Queue the task's callback again (a new delivery with a fresh schedule); ``None``
        when the task is not this account's, not finished, or has no callback_url.
        ``CallbackPending`` while a delivery is under way, ``RedeliveryLimitReached`` after
        ``max_redeliveries``. The task row is locked first, so concurrent calls queue one."""
        now = datetime.now(UTC)
        async with self._db.transaction() as connection:
            owned = await connection.scalar(
                select(tasks.c.id)
                .where(tasks.c.id == task_id, tasks.c.account_id == account_id)
                .with_for_update()
            )
            if owned is None:
                return None
            deliveries = (
                await connection.execute(
                    select(outbox.c.url, outbox.c.status)
                    .where(outbox.c.task_id == task_id)
                    .order_by(outbox.c.id)
                )
            ).all()
            if not deliveries:
                return None
            if any(delivery.status == PENDING for delivery in deliveries):
                raise CallbackPending(task_id)
            if len(deliveries) > max_redeliveries:
                raise RedeliveryLimitReached(task_id, max_redeliveries)
            queued = await queue_callback(connection, task_id, account_id, deliveries[-1].url, now)
            await self._db.notify_on_commit(connection, OUTBOX_CHANNEL)
            return queued

    async def pending(self, task_id: str) -> list[dict[str, Any]]:
        """Undelivered callbacks of a task."""
        async with self._db.transaction(write=False) as connection:
            rows = await connection.execute(
                select(outbox)
                .where(outbox.c.task_id == task_id, outbox.c.status == PENDING)
                .order_by(outbox.c.id)
            )
            return [row._asdict() for row in rows]


async def queue_callback(
    connection: AsyncConnection,
    task_id: str,
    account_id: int,
    url: str,
    now: datetime,
    *,
    lease_seconds: float | None = None,
) -> int:
    """A new delivery of a task's callback, in the caller's transaction: due now, or, with
    ``lease_seconds``, its first attempt already claimed for that long."""
    claimed = lease_seconds is not None
    new_id = await connection.scalar(
        insert(outbox)
        .values(
            task_id=task_id,
            account_id=account_id,
            url=url,
            created_at=now,
            next_attempt_at=now + timedelta(seconds=lease_seconds or 0),
            attempts=1 if claimed else 0,
            status=PENDING,
        )
        .returning(outbox.c.id)
    )
    return int(new_id)


async def queue_claimed(
    connection: AsyncConnection, task: TaskRecord, url: str, now: datetime, lease_seconds: float
) -> Delivery:
    """A new delivery of a finished task's callback with its first attempt claimed, in the
    caller's transaction: what ``OutboxRepo.claim`` would give for it, without the claim."""
    new_id = await queue_callback(
        connection, task.id, task.account_id, url, now, lease_seconds=lease_seconds
    )
    secrets = await signing_secrets(connection, task.account_id, now)
    return Delivery(id=new_id, task=task, url=url, attempt=1, signing_secrets=tuple(secrets))

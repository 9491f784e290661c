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

from sqlalchemy import bindparam, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from qwenedit.domain.task import TaskRecord
from qwenedit.domain.webhooks import MAX_ATTEMPTS, retry_delay
from qwenedit.errors import CallbackPending, RedeliveryLimitReached
from qwenedit.store.accounts import signing_secrets
from qwenedit.store.database import OUTBOX_CHANNEL, Database
from qwenedit.store.tables import callback_attempts, outbox, tasks
from qwenedit.store.task_rows import task_record

PENDING, DELIVERED, FAILED = "pending", "delivered", "failed"

_QUEUE = insert(outbox).returning(outbox.c.id)
_DUE = (
    select(outbox.c.id)
    .where(outbox.c.status == PENDING, outbox.c.next_attempt_at <= bindparam("due_by"))
    .order_by(outbox.c.next_attempt_at, outbox.c.id)
    .limit(1)
    .with_for_update(skip_locked=True)
    .scalar_subquery()
)
_CLAIM = (
    update(outbox)
    .where(outbox.c.id == _DUE, outbox.c.status == PENDING)
    .values(
        attempts=outbox.c.attempts + 1,
        next_attempt_at=bindparam("leased_until", type_=outbox.c.next_attempt_at.type),
    )
    .returning(outbox.c.id, outbox.c.task_id, outbox.c.account_id, outbox.c.url, outbox.c.attempts)
)
_TASK = select(tasks).where(tasks.c.id == bindparam("claimed_task"))
_LOG = insert(callback_attempts).values(
    outbox_id=bindparam("delivery_id", type_=callback_attempts.c.outbox_id.type),
    attempted_at=bindparam("started_at", type_=callback_attempts.c.attempted_at.type),
    status_code=bindparam("answer_code", type_=callback_attempts.c.status_code.type),
    error=bindparam("attempt_error", type_=callback_attempts.c.error.type),
    duration_ms=bindparam("attempt_ms", type_=callback_attempts.c.duration_ms.type),
)
_DECIDE = (
    update(outbox)
    .where(
        outbox.c.id == bindparam("delivery_id", type_=outbox.c.id.type),
        outbox.c.attempts == bindparam("attempt_no", type_=outbox.c.attempts.type),
        outbox.c.status == PENDING,
    )
    .values(
        status=bindparam("new_status", type_=outbox.c.status.type),
        delivered_at=bindparam("ended_at", type_=outbox.c.delivered_at.type),
        next_attempt_at=func.coalesce(
            bindparam("retry_at", type_=outbox.c.next_attempt_at.type), outbox.c.next_attempt_at
        ),
    )
)
_LOG_AND_DECIDE = _DECIDE.add_cte(_LOG.cte("logged"))
"""``_LOG`` then ``_DECIDE`` in one statement, for PostgreSQL (one round trip where two were)."""


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
        leased_until = now + timedelta(seconds=lease_seconds)
        async with self._db.transaction(durable=False) as connection:
            row = (
                await connection.execute(_CLAIM, {"due_by": now, "leased_until": leased_until})
            ).first()
            if row is None:
                return None
            task = (await connection.execute(_TASK, {"claimed_task": row.task_id})).one()
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
        delay = retry_delay(delivery.attempt) if delivery.attempt < MAX_ATTEMPTS else None
        retry_at = None
        if outcome.succeeded:
            status = DELIVERED
        elif delay is None:
            status = FAILED
        else:
            status, retry_at = PENDING, now + timedelta(seconds=delay)
        parameters = {
            "delivery_id": delivery.id,
            "attempt_no": delivery.attempt,
            "started_at": now - timedelta(milliseconds=outcome.duration_ms),
            "answer_code": outcome.status_code,
            "attempt_error": outcome.error,
            "attempt_ms": outcome.duration_ms,
            "new_status": status,
            "ended_at": now if status == DELIVERED else None,
            "retry_at": retry_at,
        }
        async with self._db.transaction(durable=False) as connection:
            if connection.dialect.name == "postgresql":
                await connection.execute(_LOG_AND_DECIDE, parameters)
            else:
                await connection.execute(_LOG, parameters)
                await connection.execute(_DECIDE, parameters)
        return status

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
    values = {
        "task_id": task_id,
        "account_id": account_id,
        "url": url,
        "created_at": now,
        "next_attempt_at": now + timedelta(seconds=lease_seconds or 0),
        "attempts": 1 if claimed else 0,
        "status": PENDING,
    }
    return int(await connection.scalar(_QUEUE, values))


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

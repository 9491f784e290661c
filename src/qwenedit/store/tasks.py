"""The task lifecycle seen by its owner: create (with the reserve), read, cancel, and the
worker's final word (complete or fail). Money moves in the same transaction as the state change
it pays for: the reserve with the insert, the charge and refund with the end (DESIGN §3, §5).
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from sqlalchemy import ColumnElement, Integer, and_, bindparam, delete, func, insert, not_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from qwenedit.domain.task import ErrorCode, TaskParams, TaskRecord, TaskStatus, task_id_second
from qwenedit.errors import (
    ActiveTaskLimitReached,
    CreateTooLate,
    IdempotencyConflict,
    QueueFull,
    QuotaExceeded,
    TaskAlreadyFinished,
    TaskNotFound,
)
from qwenedit.store.accounts import balance_of, move_credits
from qwenedit.store.batches import BatchedWrites
from qwenedit.store.database import TASKS_CHANNEL, Database
from qwenedit.store.direct import DirectStatement
from qwenedit.store.outbox import Handoff
from qwenedit.store.tables import idempotency_keys, tasks
from qwenedit.store.task_end import end_task, ending
from qwenedit.store.task_rows import (
    ACTIVE,
    COMPLETED,
    FENCE,
    NO_RESULTS,
    PENDING,
    ended,
    failed,
    fenced,
    params_json,
    purgeable,
    task_record,
)
from qwenedit.store.task_stats import QueueAhead, queues_ahead_on

_ENDED_AT = bindparam("ended_at", type_=tasks.c.finished_at.type)
_COMPLETE = ending(
    FENCE,
    ended(
        COMPLETED,
        _ENDED_AT,
        progress=100,
        result_keys=bindparam("keys", type_=tasks.c.result_keys.type),
        used_milli=tasks.c.price_milli * bindparam("images", type_=Integer()),
        actual_prompt=bindparam("prompt_used", type_=tasks.c.actual_prompt.type),
        engine_seconds=bindparam("engine_time", type_=tasks.c.engine_seconds.type),
    ),
)
_FAIL = ending(
    FENCE,
    failed(
        _ENDED_AT,
        bindparam("code", type_=tasks.c.error_code.type),
        bindparam("message", type_=tasks.c.error_message.type),
    ),
)
"""A worker ends its task (``fenced``), built once."""

_INSERT = DirectStatement(insert(tasks))
"""Built once (a create is the hottest write): its parameters travel apart from it. Nothing is
read back: the new task's record is made from what was written."""


@dataclass(frozen=True)
class NewTask:
    id: str
    account_id: int
    params: TaskParams
    price_milli: int
    """The price of one image for the account's group; ``n`` of them are reserved."""
    created_at: datetime

    @property
    def reserve_milli(self) -> int:
        return self.price_milli * self.params.n


@dataclass(frozen=True)
class Limits:
    """Admission limits checked in the create transaction; ``None`` is no limit."""

    max_active_per_account: int | None = None
    max_queue_depth: int | None = None


@dataclass(frozen=True)
class IdempotencyKey:
    """An ``Idempotency-Key`` header: within ``window_seconds`` the same key from the same
    account returns the task it first created; with another request it is a conflict."""

    key: str
    request_hash: str
    window_seconds: float


@dataclass(frozen=True)
class Created:
    task: TaskRecord
    replayed: bool
    """``True`` when an idempotency key returned the task it created before."""
    ahead: QueueAhead | None = None
    """The queue ahead of a new task, read in its create transaction."""


@dataclass(frozen=True)
class _CreateJob:
    new: NewTask
    limits: Limits
    idempotency: IdempotencyKey | None


CREATE_DEADLINE_SECONDS = 600.0
"""A create commits within this long of the second its task id names (it takes milliseconds),
or not at all: the sweep of orphaned inputs counts on it."""


class TaskRepo:
    def __init__(self, db: Database) -> None:
        self._db = db
        self._creates = BatchedWrites(
            db,
            self._create_on,
            finish=self._finish_creates,
            lock_order=lambda job: job.new.account_id,  # a create locks its account first
        )
        """Creates share transactions under load (group commit, ``store.batches``)."""

    async def create(
        self, new: NewTask, limits: Limits, idempotency: IdempotencyKey | None = None
    ) -> Created:
        """Reserve the credits and insert the task ``pending``, in one transaction; or, for a
        repeated idempotency key, return the task that key created and move no money.

        Raises ``QuotaExceeded``, ``ActiveTaskLimitReached``, ``QueueFull`` or
        ``IdempotencyConflict``; nothing is stored then."""
        try:
            created = await self._creates.submit(_CreateJob(new, limits, idempotency))
        except IntegrityError:
            if idempotency is None:
                raise
            # A concurrent create with the same key committed first; answer as it did.
            async with self._db.transaction(write=False) as connection:
                replay = await _replay(connection, new.account_id, idempotency, new.created_at)
            if replay is None:
                raise
            return Created(replay, replayed=True)
        return created

    async def _create_on(self, connection: AsyncConnection, job: _CreateJob) -> Created:
        """The reserve comes first: it locks the account row, so the per-account limit is
        exact."""
        new, limits, idempotency = job.new, job.limits, job.idempotency
        if time.time() - task_id_second(new.id) > CREATE_DEADLINE_SECONDS:
            raise CreateTooLate(CREATE_DEADLINE_SECONDS)
        if idempotency is not None:
            replay = await _replay(connection, new.account_id, idempotency, new.created_at)
            if replay is not None:
                return Created(replay, replayed=True)
        account = await move_credits(
            connection,
            new.account_id,
            -new.reserve_milli,
            "reserve",
            datetime.now(UTC),
            task_id=new.id,
        )
        if account is None:
            balance = await balance_of(connection, new.account_id)
            raise QuotaExceeded(new.reserve_milli, balance)
        await _check_limits(connection, new.account_id, limits)
        task = TaskRecord(
            id=new.id,
            account_id=new.account_id,
            user_group=account.user_group,
            params=new.params,
            status=TaskStatus.PENDING,
            progress=0,
            attempt=0,
            created_at=new.created_at,
            reserved_milli=new.reserve_milli,
        )
        await _INSERT.execute(
            connection,
            {
                "id": task.id,
                "account_id": task.account_id,
                "user_group": task.user_group,
                "status": PENDING,
                "progress": task.progress,
                "attempt": task.attempt,
                "params": params_json(task.params),
                "price_milli": new.price_milli,
                "reserved_milli": task.reserved_milli,
                "created_at": task.created_at,
                "result_keys": NO_RESULTS,
            },
        )
        if idempotency is not None:
            await connection.execute(
                insert(idempotency_keys).values(
                    account_id=new.account_id,
                    key=idempotency.key,
                    request_hash=idempotency.request_hash,
                    task_id=new.id,
                    created_at=new.created_at,
                )
            )
        return Created(task, replayed=False)

    async def _finish_creates(
        self, connection: AsyncConnection, batch: list[Created]
    ) -> list[Created]:
        """Once per batch of creates: wake the workers, and read the queue ahead of each new
        task (two statements for the whole batch)."""
        new = [created.task for created in batch if not created.replayed]
        if not new:
            return batch
        await self._db.notify_on_commit(connection, TASKS_CHANNEL)
        positions = iter(await queues_ahead_on(connection, new))
        return [
            created if created.replayed else replace(created, ahead=next(positions))
            for created in batch
        ]

    async def get(self, task_id: str, account_id: int, *, retention_seconds: float) -> TaskRecord:
        """The task if it belongs to ``account_id`` and is not past retention, else
        ``TaskNotFound`` (another account's task does not exist)."""
        cutoff = datetime.now(UTC) - timedelta(seconds=retention_seconds)
        async with self._db.transaction(write=False) as connection:
            row = (
                await connection.execute(
                    select(tasks).where(
                        tasks.c.id == task_id,
                        tasks.c.account_id == account_id,
                        not_(purgeable(cutoff)),
                    )
                )
            ).first()
        if row is None:
            raise TaskNotFound(task_id)
        return task_record(row)

    async def cancel(self, task_id: str, account_id: int) -> TaskRecord:
        """The owner ends a pending or processing task at once: ``failed`` with
        ``request_cancelled`` and a full refund. Its worker's fenced writes then change nothing.
        ``TaskNotFound`` or ``TaskAlreadyFinished`` otherwise."""
        now = datetime.now(UTC)
        owned = and_(tasks.c.id == task_id, tasks.c.account_id == account_id)
        values = failed(now, ErrorCode.REQUEST_CANCELLED.value, "The task was cancelled")
        async with self._db.transaction() as connection:
            active = and_(owned, tasks.c.status.in_(ACTIVE))
            record = await end_task(self._db, connection, ending(active, values), {}, now)
            if record is not None:
                return record
            if await connection.scalar(select(tasks.c.status).where(owned)) is None:
                raise TaskNotFound(task_id)
            raise TaskAlreadyFinished(task_id)

    async def complete(
        self,
        task_id: str,
        worker_id: str,
        attempt: int,
        *,
        result_keys: Sequence[str],
        actual_prompt: str | None,
        engine_seconds: float,
        handoff: Handoff | None = None,
    ) -> TaskRecord | None:
        """Finalize a success: charge the images produced, refund the rest, queue the callback
        (for ``handoff`` to send, if given). ``None``, and nothing changed, when this attempt was
        fenced out."""
        now = datetime.now(UTC)
        parameters = {
            **fenced(task_id, worker_id, attempt),
            "ended_at": now,
            "keys": json.dumps(list(result_keys)),
            "images": len(result_keys),
            "prompt_used": actual_prompt,
            "engine_time": engine_seconds,
        }
        async with self._db.transaction() as connection:
            return await end_task(self._db, connection, _COMPLETE, parameters, now, handoff)

    async def fail(
        self,
        task_id: str,
        worker_id: str,
        attempt: int,
        code: ErrorCode,
        message: str,
        *,
        handoff: Handoff | None = None,
    ) -> TaskRecord | None:
        """Finalize a failure with a full refund, as ``complete``; ``None`` when fenced out."""
        now = datetime.now(UTC)
        parameters = {
            **fenced(task_id, worker_id, attempt),
            "ended_at": now,
            "code": code.value,
            "message": message,
        }
        async with self._db.transaction() as connection:
            return await end_task(self._db, connection, _FAIL, parameters, now, handoff)


async def _replay(
    connection: AsyncConnection, account_id: int, idempotency: IdempotencyKey, now: datetime
) -> TaskRecord | None:
    """The task an idempotency key created within its window (a key past the window is
    forgotten here, so it can be used again); ``IdempotencyConflict`` if the request differs."""
    owned = and_(
        idempotency_keys.c.account_id == account_id, idempotency_keys.c.key == idempotency.key
    )
    found = (
        await connection.execute(
            select(
                idempotency_keys.c.request_hash,
                idempotency_keys.c.created_at.label("key_created_at"),
                tasks,
            )
            .join(tasks, tasks.c.id == idempotency_keys.c.task_id)
            .where(owned)
        )
    ).first()
    if found is None:
        return None
    if found.key_created_at < now - timedelta(seconds=idempotency.window_seconds):
        await connection.execute(delete(idempotency_keys).where(owned))
        return None
    if found.request_hash != idempotency.request_hash:
        raise IdempotencyConflict(idempotency.key)
    return task_record(found)


async def _count(connection: AsyncConnection, *where: ColumnElement[bool]) -> int:
    found = await connection.scalar(select(func.count()).select_from(tasks).where(*where))
    return int(found or 0)


async def _check_limits(connection: AsyncConnection, account_id: int, limits: Limits) -> None:
    if limits.max_active_per_account is not None:
        own = (tasks.c.account_id == account_id, tasks.c.status.in_(ACTIVE))
        if await _count(connection, *own) >= limits.max_active_per_account:
            raise ActiveTaskLimitReached(limits.max_active_per_account)
    depth = limits.max_queue_depth
    if depth is not None and await _count(connection, tasks.c.status == PENDING) >= depth:
        raise QueueFull(depth)

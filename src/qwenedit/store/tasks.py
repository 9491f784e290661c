"""Tasks: the queue itself (DESIGN §1, §3).

Every change a worker makes is fenced: ``WHERE id AND worker_id AND attempt AND status =
'processing'``, so a worker that lost its lease (reaped, cancelled, released) changes nothing.
Money moves in the same transaction as the state change it pays for: the reserve with the
insert, the charge and refund with the end. A hold is resolved once (one refund per task).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import (
    ColumnElement,
    String,
    and_,
    case,
    cast,
    delete,
    func,
    insert,
    literal,
    not_,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from qwenedit.domain.task import ErrorCode, TaskParams, TaskRecord, TaskStatus
from qwenedit.errors import Conflict, InsufficientQuota, NotFound, RateLimited, ServiceUnavailable
from qwenedit.store.accounts import balance_of, credits_text, move_credits
from qwenedit.store.database import AnyRow, Database
from qwenedit.store.tables import accounts, idempotency_keys, outbox, tasks

PENDING, PROCESSING = TaskStatus.PENDING.value, TaskStatus.PROCESSING.value
COMPLETED, FAILED = TaskStatus.COMPLETED.value, TaskStatus.FAILED.value
TERMINAL = (COMPLETED, FAILED)
ACTIVE = (PENDING, PROCESSING)
NO_RESULTS = "[]"
RATE_LIMIT_RETRY_AFTER = 5
QUEUE_FULL_RETRY_AFTER = 10


@dataclass(frozen=True)
class NewTask:
    id: str
    account_id: int
    params: TaskParams
    reserve_milli: int
    created_at: datetime


@dataclass(frozen=True)
class IdempotencyKey:
    """An ``Idempotency-Key`` header: within ``window_seconds`` the same key from the same
    account returns the task it first created; with another request it is a conflict."""

    key: str
    request_hash: str
    window_seconds: float


def _params_json(params: TaskParams) -> str:
    return json.dumps(dataclasses.asdict(params))


def _params(text: str) -> TaskParams:
    data = json.loads(text)
    size = data["size"]
    return TaskParams(
        **{**data, "image_urls": tuple(data["image_urls"]), "size": tuple(size) if size else None}
    )


def _record(row: AnyRow) -> TaskRecord:
    return TaskRecord(
        id=row.id,
        account_id=row.account_id,
        user_group=row.user_group,
        params=_params(row.params),
        status=TaskStatus(row.status),
        progress=row.progress,
        attempt=row.attempt,
        created_at=row.created_at,
        reserved_milli=row.reserved_milli,
        used_milli=row.used_milli,
        worker_id=row.worker_id,
        lease_expires_at=row.lease_expires_at,
        started_at=row.started_at,
        finished_at=row.finished_at,
        error_code=row.error_code,
        error_message=row.error_message,
        result_keys=tuple(json.loads(row.result_keys)),
        actual_prompt=row.actual_prompt,
        engine_seconds=None if row.engine_seconds is None else float(row.engine_seconds),
    )


def _fence(task_id: str, worker_id: str, attempt: int) -> ColumnElement[bool]:
    return and_(
        tasks.c.id == task_id,
        tasks.c.worker_id == worker_id,
        tasks.c.attempt == attempt,
        tasks.c.status == PROCESSING,
    )


def _ended(status: str, now: datetime, **values: Any) -> dict[str, Any]:
    """Column values of a task reaching a terminal status."""
    return {"status": status, "finished_at": now, "lease_expires_at": None, **values}


def _failed(now: datetime, code: str, message: Any) -> dict[str, Any]:
    return _ended(FAILED, now, error_code=code, error_message=message, used_milli=0)


class TaskRepo:
    def __init__(
        self, db: Database, render_callback_body: Callable[[TaskRecord], dict[str, Any]]
    ) -> None:
        self._db = db
        self._render = render_callback_body

    async def create(
        self,
        new: NewTask,
        *,
        max_active_per_account: int | None,
        max_queue_depth: int | None,
        idempotency: IdempotencyKey | None = None,
    ) -> TaskRecord:
        """Reserve the credits and insert the task ``pending``, in one transaction; or, for a
        repeated idempotency key, return the task that key created and move no money."""
        try:
            task, created = await self._create(
                new, max_active_per_account, max_queue_depth, idempotency
            )
        except IntegrityError:
            if idempotency is None:
                raise
            # A concurrent create with the same key committed first; answer as it did.
            async with self._db.transaction(write=False) as connection:
                replay = await _replay(connection, new.account_id, idempotency, new.created_at)
            if replay is None:
                raise
            return replay
        if created:
            await self._db.notify_new_task()
        return task

    async def _create(
        self,
        new: NewTask,
        max_active_per_account: int | None,
        max_queue_depth: int | None,
        idempotency: IdempotencyKey | None,
    ) -> tuple[TaskRecord, bool]:
        """The reserve comes first: it locks the account row, so the per-account limit is
        exact."""
        async with self._db.transaction() as connection:
            if idempotency is not None:
                replay = await _replay(connection, new.account_id, idempotency, new.created_at)
                if replay is not None:
                    return replay, False
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
                raise InsufficientQuota(
                    f"Insufficient credits: this request needs {credits_text(new.reserve_milli)} "
                    f"credits, the balance is {credits_text(balance)}"
                )
            await _check_limits(connection, new.account_id, max_active_per_account, max_queue_depth)
            row = (
                await connection.execute(
                    insert(tasks)
                    .values(
                        id=new.id,
                        account_id=new.account_id,
                        user_group=account.user_group,
                        status=PENDING,
                        progress=0,
                        attempt=0,
                        params=_params_json(new.params),
                        price_milli=new.reserve_milli // new.params.n,
                        reserved_milli=new.reserve_milli,
                        created_at=new.created_at,
                        result_keys=NO_RESULTS,
                    )
                    .returning(*tasks.c)
                )
            ).one()
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
        return _record(row), True

    async def get(
        self, task_id: str, account_id: int, *, retention_seconds: float
    ) -> TaskRecord | None:
        """The task if it belongs to ``account_id`` and ``purge`` would not delete it yet."""
        cutoff = datetime.now(UTC) - timedelta(seconds=retention_seconds)
        async with self._db.transaction(write=False) as connection:
            row = (
                await connection.execute(
                    select(tasks).where(
                        tasks.c.id == task_id,
                        tasks.c.account_id == account_id,
                        not_(_purgeable(cutoff)),
                    )
                )
            ).first()
        return None if row is None else _record(row)

    async def claim(self, worker_id: str, lease_seconds: float) -> TaskRecord | None:
        """Take the next pending task: round-robin across accounts (the account served longest
        ago first), oldest first within one. PostgreSQL skips rows other claimers hold; SQLite's
        ``BEGIN IMMEDIATE`` already makes claimers take turns."""
        now = datetime.now(UTC)
        picked = (
            select(tasks.c.id)
            .join_from(tasks, accounts)
            .where(tasks.c.status == PENDING)
            .order_by(
                accounts.c.last_claimed_at.asc().nulls_first(), tasks.c.created_at, tasks.c.id
            )
            .limit(1)
            .with_for_update(of=tasks, skip_locked=True)
            .cte("picked")
            .prefix_with("MATERIALIZED", dialect="postgresql")
        )
        async with self._db.transaction() as connection:
            row = (
                await connection.execute(
                    update(tasks)
                    .where(tasks.c.id == picked.c.id)
                    .values(
                        status=PROCESSING,
                        worker_id=worker_id,
                        attempt=tasks.c.attempt + 1,
                        lease_expires_at=now + timedelta(seconds=lease_seconds),
                        claimed_at=now,
                        started_at=func.coalesce(tasks.c.started_at, now),
                    )
                    .returning(*tasks.c)
                )
            ).first()
            if row is None:
                return None
            await connection.execute(
                update(accounts).where(accounts.c.id == row.account_id).values(last_claimed_at=now)
            )
        return _record(row)

    async def heartbeat(
        self, task_id: str, worker_id: str, attempt: int, lease_seconds: float
    ) -> bool:
        """Extend the lease; ``False`` when this attempt no longer holds the task."""
        expires = datetime.now(UTC) + timedelta(seconds=lease_seconds)
        return await self._fenced_update(task_id, worker_id, attempt, {"lease_expires_at": expires})

    async def report_progress(
        self, task_id: str, worker_id: str, attempt: int, progress: int
    ) -> bool:
        """Raise the stored progress (it never goes down); ``False`` when fenced out."""
        value = min(max(progress, 0), 100)
        rising = case((tasks.c.progress < value, value), else_=tasks.c.progress)
        return await self._fenced_update(task_id, worker_id, attempt, {"progress": rising})

    async def _fenced_update(
        self, task_id: str, worker_id: str, attempt: int, values: dict[str, Any]
    ) -> bool:
        async with self._db.transaction() as connection:
            result = await connection.execute(
                update(tasks).where(_fence(task_id, worker_id, attempt)).values(**values)
            )
        return result.rowcount > 0

    async def complete(
        self,
        task_id: str,
        worker_id: str,
        attempt: int,
        *,
        result_keys: Sequence[str],
        images_produced: int,
        actual_prompt: str | None,
        engine_seconds: float,
    ) -> TaskRecord | None:
        """Finalize a success: charge the images produced, refund the rest, queue the callback.
        ``None``, and nothing changed, when this attempt was fenced out."""
        now = datetime.now(UTC)
        values = _ended(
            COMPLETED,
            now,
            progress=100,
            result_keys=json.dumps(list(result_keys)),
            used_milli=tasks.c.price_milli * images_produced,
            actual_prompt=actual_prompt,
            engine_seconds=engine_seconds,
        )
        return await self._finish(_fence(task_id, worker_id, attempt), values, now)

    async def fail(
        self, task_id: str, worker_id: str, attempt: int, code: str, message: str
    ) -> TaskRecord | None:
        """Finalize a failure with a full refund; ``None`` when fenced out."""
        now = datetime.now(UTC)
        return await self._finish(
            _fence(task_id, worker_id, attempt), _failed(now, code, message), now
        )

    async def cancel(self, task_id: str, account_id: int) -> TaskRecord:
        """The owner ends a pending or processing task at once: ``failed`` with
        ``request_cancelled`` and a full refund. Its worker's fenced writes then change nothing."""
        now = datetime.now(UTC)
        owned = and_(tasks.c.id == task_id, tasks.c.account_id == account_id)
        values = _failed(now, ErrorCode.REQUEST_CANCELLED.value, "The task was cancelled")
        async with self._db.transaction() as connection:
            record = await self._end(
                connection, and_(owned, tasks.c.status.in_(ACTIVE)), values, now
            )
            if record is not None:
                return record
            if await connection.scalar(select(tasks.c.status).where(owned)) is None:
                raise NotFound("Task not found or expired", param="task_id")
            raise Conflict("The task has already finished", param="task_id")

    async def _finish(
        self, where: ColumnElement[bool], values: dict[str, Any], now: datetime
    ) -> TaskRecord | None:
        async with self._db.transaction() as connection:
            return await self._end(connection, where, values, now)

    async def _end(
        self,
        connection: AsyncConnection,
        where: ColumnElement[bool],
        values: dict[str, Any],
        now: datetime,
    ) -> TaskRecord | None:
        """Move the task matching ``where`` to its terminal state, then settle it."""
        row = (
            await connection.execute(
                update(tasks).where(where).values(**values).returning(*tasks.c)
            )
        ).first()
        if row is None:
            return None
        record = _record(row)
        await self._settle(connection, record, now)
        return record

    async def _settle(self, connection: AsyncConnection, task: TaskRecord, now: datetime) -> None:
        """Resolve the hold (refund what was not used) and queue the callback body."""
        refund = task.reserved_milli - (task.used_milli or 0)
        if refund > 0:
            await move_credits(connection, task.account_id, refund, "refund", now, task_id=task.id)
        if task.params.callback_url is not None:
            await connection.execute(
                insert(outbox).values(
                    task_id=task.id,
                    account_id=task.account_id,
                    url=task.params.callback_url,
                    body=json.dumps(self._render(task)),
                    created_at=now,
                    next_attempt_at=now,
                    attempts=0,
                    status="pending",
                )
            )

    async def release(self, task_id: str, worker_id: str, attempt: int) -> bool:
        """A stopping worker hands its task back: pending again, this attempt not counted."""
        released = await self._fenced_update(
            task_id,
            worker_id,
            attempt,
            {
                "status": PENDING,
                "attempt": tasks.c.attempt - 1,
                "worker_id": None,
                "lease_expires_at": None,
                "claimed_at": None,
            },
        )
        if released:
            await self._db.notify_new_task()
        return released

    async def reap(self, *, max_attempts: int) -> tuple[list[str], list[TaskRecord]]:
        """Tasks whose lease expired go back to pending (progress kept; the attempt was counted
        at claim) or, on their last attempt, fail with ``service_error`` and a full refund.
        Returns ``(requeued ids, failed records)``."""
        now = datetime.now(UTC)
        expired = and_(tasks.c.status == PROCESSING, tasks.c.lease_expires_at < now)
        message = literal("The task failed after ") + cast(tasks.c.attempt, String) + " attempts"
        values = _failed(now, ErrorCode.SERVICE_ERROR.value, message)
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
            rows = (
                await connection.execute(
                    update(tasks)
                    .where(expired, tasks.c.attempt >= max_attempts)
                    .values(**values)
                    .returning(*tasks.c)
                )
            ).all()
            failed = [_record(row) for row in rows]
            for task in failed:
                await self._settle(connection, task, now)
        if requeued_ids:
            await self._db.notify_new_task()
        return requeued_ids, failed

    async def queue_ahead(self, task: TaskRecord) -> int:
        """Pending tasks created before this one."""
        async with self._db.transaction(write=False) as connection:
            return await _count(
                connection, tasks.c.status == PENDING, tasks.c.created_at < task.created_at
            )

    async def counts_by_status(self) -> dict[str, int]:
        """Tasks by stored status, every status present (for the metrics gauge)."""
        async with self._db.transaction(write=False) as connection:
            rows = await connection.execute(
                select(tasks.c.status, func.count()).group_by(tasks.c.status)
            )
            found = {status: int(count) for status, count in rows}
        return {status.value: found.get(status.value, 0) for status in TaskStatus}

    async def recent_task_seconds(self, limit: int = 50) -> float | None:
        """Mean claim-to-finish seconds of the last ``limit`` completed tasks."""
        async with self._db.transaction(write=False) as connection:
            rows = (
                await connection.execute(
                    select(tasks.c.claimed_at, tasks.c.finished_at)
                    .where(tasks.c.status == COMPLETED, tasks.c.claimed_at.is_not(None))
                    .order_by(tasks.c.finished_at.desc())
                    .limit(limit)
                )
            ).all()
        if not rows:
            return None
        seconds = [(row.finished_at - row.claimed_at).total_seconds() for row in rows]
        return float(sum(seconds)) / len(seconds)

    async def expired_results(self, now: datetime, result_ttl: float) -> list[TaskRecord]:
        """Completed tasks whose result files outlived the TTL and are not cleared yet."""
        cutoff = now - timedelta(seconds=result_ttl)
        async with self._db.transaction(write=False) as connection:
            rows = await connection.execute(
                select(tasks).where(
                    tasks.c.status == COMPLETED,
                    tasks.c.finished_at < cutoff,
                    tasks.c.result_keys != NO_RESULTS,
                )
            )
            return [_record(row) for row in rows]

    async def clear_results(self, task_id: str) -> None:
        async with self._db.transaction() as connection:
            await connection.execute(
                update(tasks).where(tasks.c.id == task_id).values(result_keys=NO_RESULTS)
            )

    async def purge(self, now: datetime, retention_seconds: float) -> int:
        """Delete finished tasks past retention (their outbox rows go with them; ledger rows
        keep the task id as plain text, so no balance or ledger sum changes)."""
        cutoff = now - timedelta(seconds=retention_seconds)
        async with self._db.transaction() as connection:
            result = await connection.execute(delete(tasks).where(_purgeable(cutoff)))
        return result.rowcount

    async def pending_outbox(self, task_id: str) -> list[dict[str, Any]]:
        """Undelivered callbacks of a task, bodies decoded."""
        async with self._db.transaction(write=False) as connection:
            rows = await connection.execute(
                select(outbox)
                .where(outbox.c.task_id == task_id, outbox.c.status == "pending")
                .order_by(outbox.c.id)
            )
            return [{**row._asdict(), "body": json.loads(row.body)} for row in rows]


async def _replay(
    connection: AsyncConnection, account_id: int, idempotency: IdempotencyKey, now: datetime
) -> TaskRecord | None:
    """The task an idempotency key created within its window (a key past the window is
    forgotten here, so it can be used again); ``Conflict`` if the request differs."""
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
        raise Conflict(
            "This Idempotency-Key was already used with a different request",
            param="Idempotency-Key",
        )
    return _record(found)


async def _count(connection: AsyncConnection, *where: ColumnElement[bool]) -> int:
    found = await connection.scalar(select(func.count()).select_from(tasks).where(*where))
    return int(found or 0)


def _purgeable(cutoff: datetime) -> ColumnElement[bool]:
    return and_(tasks.c.status.in_(TERMINAL), tasks.c.created_at < cutoff)


async def _check_limits(
    connection: AsyncConnection,
    account_id: int,
    max_active_per_account: int | None,
    max_queue_depth: int | None,
) -> None:
    if max_active_per_account is not None:
        own = (tasks.c.account_id == account_id, tasks.c.status.in_(ACTIVE))
        if await _count(connection, *own) >= max_active_per_account:
            raise RateLimited(
                f"Too many active tasks: at most {max_active_per_account} may be pending or "
                "processing at once",
                retry_after=RATE_LIMIT_RETRY_AFTER,
            )
    queued = tasks.c.status == PENDING
    if max_queue_depth is not None and await _count(connection, queued) >= max_queue_depth:
        raise ServiceUnavailable(
            "The queue is full, try again shortly", retry_after=QUEUE_FULL_RETRY_AFTER
        )

"""Read-only figures about the tasks: the queue ahead of a task, counts for the metrics gauge,
and measured task durations for ``estimated_time``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import bindparam, case, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from qwenedit.domain.task import TaskRecord, TaskStatus
from qwenedit.store.database import AnyRow, Database
from qwenedit.store.tables import UtcDateTime, accounts, tasks
from qwenedit.store.task_rows import COMPLETED, PENDING


@dataclass(frozen=True)
class QueueAhead:
    tasks: int
    """Pending tasks a worker claims before this one (0: it is next)."""
    images: int
    """The images those tasks ask for (the sum of their ``n``)."""


_IMAGES = case((tasks.c.price_milli > 0, tasks.c.reserved_milli // tasks.c.price_milli), else_=1)
"""A task's ``n`` without reading its params: the reserve is ``n`` times the price."""


_QUEUES = select(
    accounts.c.id.label("account_id"),
    accounts.c.last_claimed_at,
    accounts.c.pending_tasks.label("pending"),
    accounts.c.pending_images.label("images"),
    select(func.min(tasks.c.created_at))
    .where(tasks.c.account_id == accounts.c.id, tasks.c.status == PENDING)
    .scalar_subquery()
    .label("oldest"),
).where(accounts.c.pending_tasks > 0)
"""Every queued account: its pending counts (kept by triggers, migration 0006) and its oldest
pending task (an index read). One row per account, however long the backlog."""

_CREATED_AT = bindparam("created_at", type_=UtcDateTime())
_QUEUED_FROM = select(func.count(), func.coalesce(func.sum(_IMAGES), 0)).where(
    tasks.c.account_id == bindparam("account_id"),
    tasks.c.status == PENDING,
    tasks.c.created_at >= _CREATED_AT,
    (tasks.c.created_at > _CREATED_AT) | (tasks.c.id >= bindparam("id")),
)
"""An account's pending tasks from a given one on (it and those queued after it): an index
range that is empty for a task just created."""

_QUEUED_SINCE = select(
    tasks.c.account_id, tasks.c.created_at, tasks.c.id, _IMAGES.label("images")
).where(
    tasks.c.account_id.in_(bindparam("account_ids", expanding=True)),
    tasks.c.status == PENDING,
    tasks.c.created_at >= _CREATED_AT,
)
"""The pending tasks of some accounts created at or after a time, one row each."""


def _turn(queue: AnyRow) -> tuple[bool, datetime, datetime]:
    """An account's place in the claim's rotation: never served first, then served longest
    ago, then the oldest pending task."""
    never = queue.last_claimed_at is None
    return (not never, queue.last_claimed_at or queue.oldest, queue.oldest)


async def queue_ahead_on(connection: AsyncConnection, task: TaskRecord) -> QueueAhead:
    """The pending tasks the claim takes before this one. The claim serves accounts in turn
    (the one served longest ago first, then by its oldest task) and each account's tasks oldest
    first, so with ``k`` older tasks of its own ahead, this task waits for ``k`` rounds: up to
    ``k`` tasks of every other account, one more of each account whose turn comes before this
    one's. (Images of another account's tasks are prorated from its pending total.)"""
    queues = await _queues(connection)
    after = (0, 0)
    if any(queue.account_id == task.account_id for queue in queues):
        count, images = (
            await connection.execute(
                _QUEUED_FROM,
                {"account_id": task.account_id, "created_at": task.created_at, "id": task.id},
            )
        ).one()
        after = (int(count), int(images))
    return _ahead(task, queues, after)


async def queues_ahead_on(
    connection: AsyncConnection, new: Sequence[TaskRecord]
) -> list[QueueAhead]:
    """``queue_ahead_on`` for tasks just created, in two statements however many they are
    (a batch of creates, ``store.batches``): what is queued after each of them is read as rows,
    which for new tasks are few."""
    if not new:
        return []
    queues = await _queues(connection)
    later = (
        await connection.execute(
            _QUEUED_SINCE,
            {
                "account_ids": sorted({task.account_id for task in new}),
                "created_at": min(task.created_at for task in new),
            },
        )
    ).all()
    ahead = []
    for task in new:
        own = [
            row
            for row in later
            if row.account_id == task.account_id
            and (row.created_at, row.id) >= (task.created_at, task.id)
        ]
        after = (len(own), sum(int(row.images) for row in own))
        ahead.append(_ahead(task, queues, after))
    return ahead


async def _queues(connection: AsyncConnection) -> list[AnyRow]:
    """``_QUEUES``, without an account whose kept count says pending where no task is (only a
    hand edit of the tables could do that): it has no place in the rotation."""
    return [queue for queue in (await connection.execute(_QUEUES)).all() if queue.oldest]


def _ahead(task: TaskRecord, queues: Sequence[AnyRow], after: tuple[int, int]) -> QueueAhead:
    """The queue ahead of ``task`` from every account's queue and ``after``: the tasks and
    images of its own account from it on."""
    mine = next((q for q in queues if q.account_id == task.account_id), None)
    rounds = images = 0
    if mine is not None:
        # clamped: on PostgreSQL outside a transaction the two reads may straddle a claim
        rounds = max(0, int(mine.pending) - after[0])
        images = max(0, int(mine.images) - after[1])
    ahead = QueueAhead(tasks=rounds, images=images)
    for queue in queues:
        if queue.account_id == task.account_id:
            continue
        first = mine is None or _turn(queue) < _turn(mine)
        taken = min(int(queue.pending), rounds + (1 if first else 0))
        prorated = round(int(queue.images) * taken / int(queue.pending))
        ahead = QueueAhead(tasks=ahead.tasks + taken, images=ahead.images + prorated)
    return ahead


class TaskStats:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def queue_ahead(self, task: TaskRecord) -> QueueAhead:
        async with self._db.transaction(write=False) as connection:
            return await queue_ahead_on(connection, task)

    async def counts_by_status(self) -> dict[str, int]:
        """Tasks by stored status, every status present (for the metrics gauge)."""
        async with self._db.transaction(write=False) as connection:
            rows = await connection.execute(
                select(tasks.c.status, func.count()).group_by(tasks.c.status)
            )
            found = {status: int(count) for status, count in rows}
        return {status.value: found.get(status.value, 0) for status in TaskStatus}

    async def recent_image_seconds(self, limit: int = 50) -> float | None:
        """Claim-to-finish seconds per image, over the last ``limit`` completed tasks."""
        async with self._db.transaction(write=False) as connection:
            rows = (
                await connection.execute(
                    select(tasks.c.claimed_at, tasks.c.finished_at, _IMAGES.label("images"))
                    .where(tasks.c.status == COMPLETED, tasks.c.claimed_at.is_not(None))
                    .order_by(tasks.c.finished_at.desc())
                    .limit(limit)
                )
            ).all()
        if not rows:
            return None
        seconds = sum((row.finished_at - row.claimed_at).total_seconds() for row in rows)
        images = sum(max(1, int(row.images)) for row in rows)
        return float(seconds) / images

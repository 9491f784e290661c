"""Read-only figures about the tasks: the queue ahead of a task, counts for the metrics gauge,
and measured task durations for ``estimated_time``."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import case, func, select

from qwenedit.domain.task import TaskRecord, TaskStatus
from qwenedit.store.database import Database
from qwenedit.store.tables import tasks
from qwenedit.store.task_rows import COMPLETED, PENDING


@dataclass(frozen=True)
class QueueAhead:
    tasks: int
    """Pending tasks a worker claims before this one (0: it is next)."""
    images: int
    """The images those tasks ask for (the sum of their ``n``)."""


_IMAGES = case((tasks.c.price_milli > 0, tasks.c.reserved_milli // tasks.c.price_milli), else_=1)
"""A task's ``n`` without reading its params: the reserve is ``n`` times the price."""


class TaskStats:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def queue_ahead(self, task: TaskRecord) -> QueueAhead:
        """Pending tasks created before this one (the claim's order within an account; across
        accounts the claim takes turns, so this is an upper bound for a light account)."""
        async with self._db.transaction(write=False) as connection:
            row = (
                await connection.execute(
                    select(func.count(), func.coalesce(func.sum(_IMAGES), 0)).where(
                        tasks.c.status == PENDING,
                        (tasks.c.created_at < task.created_at)
                        | ((tasks.c.created_at == task.created_at) & (tasks.c.id < task.id)),
                    )
                )
            ).one()
        return QueueAhead(tasks=int(row[0]), images=int(row[1]))

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

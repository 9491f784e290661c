"""Read-only figures about the tasks: the queue ahead of a task, counts for the metrics gauge,
and measured task durations for ``estimated_time``."""

from __future__ import annotations

from sqlalchemy import func, select

from qwenedit.domain.task import TaskRecord, TaskStatus
from qwenedit.store.database import Database
from qwenedit.store.tables import tasks
from qwenedit.store.task_rows import COMPLETED, PENDING


class TaskStats:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def queue_ahead(self, task: TaskRecord) -> int:
        """Pending tasks created before this one."""
        async with self._db.transaction(write=False) as connection:
            found = await connection.scalar(
                select(func.count())
                .select_from(tasks)
                .where(tasks.c.status == PENDING, tasks.c.created_at < task.created_at)
            )
        return int(found or 0)

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

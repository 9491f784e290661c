"""What the reaper deletes: result files past their TTL, and tasks past retention."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import delete, select, update

from qwenedit.domain.task import TaskRecord
from qwenedit.store.database import Database
from qwenedit.store.tables import tasks
from qwenedit.store.task_rows import COMPLETED, NO_RESULTS, purgeable, task_record

EXISTING_CHUNK = 500
"""Ids in one ``IN (...)``: well under every driver's limit on parameters."""


class RetentionRepo:
    def __init__(self, db: Database) -> None:
        self._db = db

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
            return [task_record(row) for row in rows]

    async def clear_results(self, task_id: str) -> None:
        async with self._db.transaction() as connection:
            await connection.execute(
                update(tasks).where(tasks.c.id == task_id).values(result_keys=NO_RESULTS)
            )

    async def past_retention(
        self, now: datetime, retention_seconds: float, limit: int = 500
    ) -> list[str]:
        """Ids of finished tasks past retention, oldest first: their blobs go before them."""
        cutoff = now - timedelta(seconds=retention_seconds)
        async with self._db.transaction(write=False) as connection:
            rows = await connection.execute(
                select(tasks.c.id)
                .where(purgeable(cutoff))
                .order_by(tasks.c.created_at)
                .limit(limit)
            )
            return [row.id for row in rows]

    async def now(self) -> datetime:
        """The database's time (on SQLite, this host's): the clock the orphan sweep judges
        task ids by, whichever node runs it."""
        async with self._db.transaction(write=False) as connection:
            value = await connection.scalar(select(self._db.clock()))
        assert isinstance(value, datetime)
        return value

    async def existing(self, task_ids: list[str]) -> set[str]:
        """Which of ``task_ids`` are tasks (asked ``EXISTING_CHUNK`` at a time)."""
        found: set[str] = set()
        async with self._db.transaction(write=False) as connection:
            for start in range(0, len(task_ids), EXISTING_CHUNK):
                chunk = task_ids[start : start + EXISTING_CHUNK]
                rows = await connection.execute(select(tasks.c.id).where(tasks.c.id.in_(chunk)))
                found.update(row.id for row in rows)
        return found

    async def purge(self, task_ids: list[str]) -> int:
        """Delete these tasks (their outbox rows go with them; ledger rows keep the task id as
        plain text, so no balance or ledger sum changes)."""
        if not task_ids:
            return 0
        async with self._db.transaction() as connection:
            result = await connection.execute(delete(tasks).where(tasks.c.id.in_(task_ids)))
        return result.rowcount

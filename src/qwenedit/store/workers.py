"""Worker presence: each worker loop registers and beats, so readiness and time estimates
know how many workers are alive."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import delete, func, insert, or_, select, update

from qwenedit.store.database import Database
from qwenedit.store.tables import workers

FORGET_AFTER = timedelta(days=1)
"""Rows of workers silent this long (crashed, never removed) are deleted at the next register."""


class WorkerRepo:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def register(self, worker_id: str, engine: str) -> None:
        now = self._db.clock()
        forgotten = workers.c.last_beat_at < self._db.clock(-FORGET_AFTER.total_seconds())
        async with self._db.transaction() as connection:
            await connection.execute(
                delete(workers).where(or_(workers.c.id == worker_id, forgotten))
            )
            await connection.execute(
                insert(workers).values(
                    id=worker_id, engine=engine, started_at=now, last_beat_at=now
                )
            )

    async def beat(self, worker_id: str) -> None:
        async with self._db.transaction(durable=False) as connection:
            await connection.execute(
                update(workers)
                .where(workers.c.id == worker_id)
                .values(last_beat_at=self._db.clock())
            )

    async def remove(self, worker_id: str) -> None:
        async with self._db.transaction() as connection:
            await connection.execute(delete(workers).where(workers.c.id == worker_id))

    async def alive_count(self, within_seconds: float) -> int:
        since = self._db.clock(-within_seconds)
        async with self._db.transaction(write=False) as connection:
            count = await connection.scalar(
                select(func.count()).select_from(workers).where(workers.c.last_beat_at >= since)
            )
        return int(count or 0)

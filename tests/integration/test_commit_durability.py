"""Which writes wait for the disk at commit: all of them but those marked ``durable=False``."""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from qwenedit.store.database import Database
from qwenedit.store.tables import workers
from qwenedit.store.workers import WorkerRepo


async def waits_for_disk(connection: AsyncConnection) -> bool:
    if connection.dialect.name == "sqlite":
        level = (await connection.exec_driver_sql("PRAGMA synchronous")).scalar()
        return level == 2  # FULL
    return (await connection.exec_driver_sql("SHOW synchronous_commit")).scalar() == "on"


async def test_only_writes_marked_not_durable_skip_waiting_for_the_disk(db: Database) -> None:
    marks = [True, False, True, False, False, True]
    seen = []
    for durable in marks:
        async with db.transaction(durable=durable) as connection:
            seen.append(await waits_for_disk(connection))
    async with db.transaction() as connection:
        seen.append(await waits_for_disk(connection))
    assert seen == [*marks, True]


async def test_a_write_not_durable_is_committed_like_any_other(db: Database) -> None:
    repo = WorkerRepo(db)
    await repo.register("w1", "tiny")
    async with db.transaction(write=False) as connection:
        before = await connection.scalar(select(workers.c.last_beat_at))
    await repo.beat("w1")
    async with db.transaction(durable=False) as connection:
        await connection.execute(update(workers).values(engine="other"))
    async with db.transaction(write=False) as connection:
        row = (await connection.execute(select(workers.c.last_beat_at, workers.c.engine))).one()
    assert row.last_beat_at >= before
    assert row.engine == "other"

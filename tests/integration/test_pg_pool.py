"""Pooled PostgreSQL connections: a session the server ended is replaced before it is used, even
right after its last use (when no ping is spent on it)."""

from __future__ import annotations

import asyncio

import asyncpg  # type: ignore[import-untyped]
from sqlalchemy import text

from qwenedit.store.accounts import AccountRepo
from qwenedit.store.database import Database


async def test_sessions_the_server_ended_are_replaced_without_an_error(pg_url: str) -> None:
    db = Database.connect(pg_url)
    try:
        repo = AccountRepo(db)
        await repo.ensure("acme")

        async def backend_pid() -> int:
            async with db.transaction(write=False) as connection:
                await asyncio.sleep(0.05)  # held together: the pool opens three
                return int(await connection.scalar(text("SELECT pg_backend_pid()")))

        before = set(await asyncio.gather(*(backend_pid() for _ in range(3))))
        admin = await asyncpg.connect(pg_url.replace("+asyncpg", ""), timeout=5)
        try:
            ended = await admin.fetchval(
                "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE pid = ANY($1::int[])) AS terminated",
                list(before),
            )
        finally:
            await admin.close()
        assert ended == 3
        await asyncio.sleep(0.2)  # the server's goodbyes reach the pooled sockets

        after = set(await asyncio.gather(*(backend_pid() for _ in range(3))))
        assert not after & before
        assert await repo.get_by_name("acme") is not None
    finally:
        await db.close()

"""SQLite runs on the event loop's thread: a write lock held by another process is waited for
with the loop free, and a write that cannot get it in time fails instead of hanging."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import exc as sa_exc
from sqlalchemy import select, text

from qwenedit.domain.task import TaskParams, new_task_id
from qwenedit.store import database as database_module
from qwenedit.store.accounts import AccountRepo
from qwenedit.store.database import TASKS_CHANNEL, Database
from qwenedit.store.tables import accounts
from qwenedit.store.tasks import Limits, NewTask, TaskRepo


def hold_write_lock(path: Path, seconds: float, holding: threading.Event) -> threading.Thread:
    """Another connection (as another process would) takes the write lock for ``seconds``."""

    def run() -> None:
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        holding.set()
        threading.Event().wait(seconds)
        other.execute("ROLLBACK")
        other.close()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


async def test_a_write_waits_for_another_writer_with_the_loop_free(
    sqlite_db: Database, tmp_path: Path
) -> None:
    holding = threading.Event()
    holder = hold_write_lock(tmp_path / "qwenedit.db", 0.5, holding)
    await asyncio.to_thread(holding.wait)
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    ticker = asyncio.create_task(tick())
    account = await AccountRepo(sqlite_db).ensure("acme")  # a write: waits for the lock
    ticker.cancel()
    await asyncio.to_thread(holder.join)
    assert ticks >= 10, "the event loop stood still while the write waited"
    async with sqlite_db.transaction(write=False) as connection:
        names = (await connection.execute(select(accounts.c.name))).scalars().all()
    assert names == [account.name]


async def test_a_write_that_cannot_get_the_lock_in_time_fails(
    sqlite_db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(database_module, "SQLITE_WRITE_WAIT_SECONDS", 0.2)
    holding = threading.Event()
    holder = hold_write_lock(tmp_path / "qwenedit.db", 1.5, holding)
    await asyncio.to_thread(holding.wait)
    with pytest.raises(sa_exc.OperationalError, match="database is locked"):
        await AccountRepo(sqlite_db).ensure("acme")
    await asyncio.to_thread(holder.join)
    assert await AccountRepo(sqlite_db).get_by_name("acme") is None
    await AccountRepo(sqlite_db).ensure("acme")  # the connection is usable again
    assert await AccountRepo(sqlite_db).get_by_name("acme") is not None


async def test_a_reader_never_sees_a_write_that_is_not_committed(sqlite_db: Database) -> None:
    """Each transaction has a connection of its own, even with statements run on the loop."""
    writing, looked = asyncio.Event(), asyncio.Event()

    async def write() -> None:
        async with sqlite_db.transaction() as connection:
            await connection.execute(
                text(
                    "INSERT INTO accounts (name, user_group, balance_milli, created_at, "
                    "webhook_secret) VALUES ('acme', 'default', 0, '2026-01-01', 's')"
                )
            )
            writing.set()
            await looked.wait()

    async def read() -> list[str]:
        await writing.wait()
        async with sqlite_db.transaction(write=False) as connection:
            names = list((await connection.execute(select(accounts.c.name))).scalars())
        looked.set()
        return names

    _, seen = await asyncio.gather(write(), read())
    assert seen == []
    async with sqlite_db.transaction(write=False) as connection:
        assert list((await connection.execute(select(accounts.c.name))).scalars()) == ["acme"]


async def test_a_task_queued_by_another_process_wakes_the_waiters(
    sqlite_db: Database, tmp_path: Path
) -> None:
    """No notification crosses processes on SQLite: the node watches the file instead, and
    wakes its workers when the pending tasks changed there."""
    waiting = await sqlite_db.subscribe(TASKS_CHANNEL)
    await waiting.wait(0.2)  # the watch has read the file by now
    other = Database.connect(f"sqlite+aiosqlite:///{tmp_path / 'qwenedit.db'}")  # as another
    try:  # process would: its own wake-ups reach only its own waiters
        account = await AccountRepo(other).ensure("acme")
        await AccountRepo(other).grant(account.id, 5000, "top up")
        await TaskRepo(other).create(
            NewTask(
                id=new_task_id(int(time.time())),
                account_id=account.id,
                params=TaskParams(
                    prompt="p",
                    image_urls=("https://example.com/a.png",),
                    n=1,
                    negative_prompt=None,
                    size=None,
                    prompt_extend=False,
                    watermark=False,
                    seed=1,
                    callback_url=None,
                ),
                price_milli=1000,
                created_at=datetime.now(UTC),
            ),
            Limits(),
        )
    finally:
        await other.close()
    woken = asyncio.create_task(waiting.wait(600))
    await asyncio.wait_for(woken, 30)  # heard long before the 600 s fallback
    waiting.close()

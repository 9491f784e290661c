"""Migrations, schema checks and the database handle itself."""

from __future__ import annotations

import asyncio
import contextlib
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, inspect, select, text

from qwenedit.errors import ConfigError
from qwenedit.store.accounts import AccountRepo
from qwenedit.store.database import OUTBOX_CHANNEL, TASKS_CHANNEL, Database, Subscription
from qwenedit.store.migrate import alembic_config, ensure_schema, head_revision, upgrade
from qwenedit.store.sqlite_inline import BUSY_WAIT_MS
from qwenedit.store.tables import accounts, metadata
from support.postgres import terminate_backends


def _schema_diff(connection: Connection) -> list[object]:
    return list(compare_metadata(MigrationContext.configure(connection), metadata))


def _revision(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


async def test_upgrade_on_an_empty_database_creates_the_declared_schema(empty_db_url: str) -> None:
    await asyncio.to_thread(upgrade, empty_db_url)
    await asyncio.to_thread(upgrade, empty_db_url)  # idempotent
    db = Database.connect(empty_db_url)
    try:
        async with db.transaction(write=False) as connection:
            names = await connection.run_sync(lambda sync: set(inspect(sync).get_table_names()))
            assert names == {table.name for table in metadata.sorted_tables} | {"alembic_version"}
            assert await connection.run_sync(_revision) == head_revision()
            assert await connection.run_sync(_schema_diff) == []
        await ensure_schema(db, empty_db_url)  # at head: nothing to do, no error
    finally:
        await db.close()


async def test_the_pending_counts_migration_counts_the_tasks_already_queued(
    empty_db_url: str,
) -> None:
    db = Database.connect(empty_db_url)
    try:
        async with db.transaction() as connection:
            await connection.run_sync(lambda sync: command.upgrade(alembic_config(sync), "0005"))
        now = datetime.now(UTC)
        async with db.transaction() as connection:
            await connection.execute(
                text("INSERT INTO accounts (id, name, created_at) VALUES (1, 'a', :now)"),
                {"now": now},
            )
            for number, (status, n) in enumerate(
                [("pending", 1), ("pending", 3), ("processing", 2), ("completed", 4)]
            ):
                await connection.execute(
                    text(
                        "INSERT INTO tasks (id, account_id, user_group, status, params, "
                        "price_milli, reserved_milli, created_at) "
                        "VALUES (:id, 1, 'default', :status, '{}', 1000, :reserved, :now)"
                    ),
                    {"id": f"t{number}", "status": status, "reserved": 1000 * n, "now": now},
                )
            await connection.run_sync(lambda sync: command.upgrade(alembic_config(sync), "head"))
        async with db.transaction(write=False) as connection:
            counts = (
                await connection.execute(
                    select(accounts.c.pending_tasks, accounts.c.pending_images)
                )
            ).one()
        assert tuple(counts) == (2, 4)
    finally:
        await db.close()


async def test_downgrading_the_pending_counts_keeps_every_row(empty_db_url: str) -> None:
    """A rebuild of ``accounts`` would delete what refers to it (foreign keys are on)."""
    await asyncio.to_thread(upgrade, empty_db_url)
    db = Database.connect(empty_db_url)
    try:
        repo = AccountRepo(db)
        account = await repo.ensure("acme")
        await repo.create_key(account.id)
        async with db.transaction() as connection:
            await connection.run_sync(lambda sync: command.downgrade(alembic_config(sync), "0005"))
        async with db.transaction(write=False) as connection:
            keys = await connection.scalar(text("SELECT count(*) FROM api_keys"))
            columns = await connection.run_sync(
                lambda sync: {column["name"] for column in inspect(sync).get_columns("accounts")}
            )
        assert keys == 1 and "pending_tasks" not in columns
        async with db.transaction() as connection:
            await connection.run_sync(lambda sync: command.upgrade(alembic_config(sync), "head"))
            assert await connection.run_sync(_schema_diff) == []
    finally:
        await db.close()


@pytest.mark.postgres
async def test_ensure_schema_refuses_an_unmigrated_postgresql(empty_pg_url: str) -> None:
    db = Database.connect(empty_pg_url)
    try:
        with pytest.raises(ConfigError, match=r"not migrated: run `qwenedit db upgrade`"):
            await ensure_schema(db, empty_pg_url)
        async with db.transaction(write=False) as connection:
            assert await connection.run_sync(_revision) is None  # and it changed nothing
    finally:
        await db.close()


async def test_sqlite_migrates_itself_into_a_new_directory(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/fresh/dir/qwenedit.db"
    db = Database.connect(url)
    try:
        await ensure_schema(db, url)
        account = await AccountRepo(db).ensure("acme")
        assert account.balance_milli == 0
        async with db.transaction(write=False) as connection:
            mode = await connection.scalar(text("PRAGMA journal_mode"))
            keys = await connection.scalar(text("PRAGMA foreign_keys"))
            timeout = await connection.scalar(text("PRAGMA busy_timeout"))
        # SQLite's own busy handler holds the event loop briefly; longer waits happen on the loop
        assert (mode, keys, timeout) == ("wal", 1, BUSY_WAIT_MS)
    finally:
        await db.close()


async def test_timestamps_come_back_aware_utc(db: Database) -> None:
    await AccountRepo(db).ensure("acme")
    async with db.transaction(write=False) as connection:
        created = await connection.scalar(select(accounts.c.created_at))
    assert created is not None
    assert created.tzinfo is UTC


async def test_a_failed_transaction_leaves_nothing_behind(db: Database) -> None:
    with pytest.raises(RuntimeError):
        async with db.transaction() as connection:
            await connection.execute(
                accounts.insert().values(name="ghost", created_at=datetime.now(UTC))
            )
            raise RuntimeError("boom")
    assert await AccountRepo(db).get_by_name("ghost") is None


async def subscribed(db: Database, channel: str) -> Subscription:
    """A waiter on ``channel`` with the wake-up that (re)opening LISTEN gives consumed."""
    waiter = await db.subscribe(channel)
    await waiter.wait(0)
    return waiter


async def notify(db: Database, channel: str, *, commit: bool = True) -> None:
    """A write transaction that notifies ``channel``, committed or rolled back."""
    with contextlib.suppress(RuntimeError):
        async with db.transaction() as connection:
            await db.notify_on_commit(connection, channel)
            if not commit:
                raise RuntimeError("roll back")


async def test_a_commit_wakes_the_waiters_of_its_channel_only(db: Database) -> None:
    tasks_waiter = await subscribed(db, TASKS_CHANNEL)
    outbox_waiter = await subscribed(db, OUTBOX_CHANNEL)
    waiting = asyncio.create_task(tasks_waiter.wait(60))
    await asyncio.sleep(0.05)
    assert not waiting.done()
    await notify(db, TASKS_CHANNEL)
    await asyncio.wait_for(waiting, 10)
    started = time.monotonic()
    await outbox_waiter.wait(0.2)
    assert time.monotonic() - started >= 0.2  # nothing came on the other channel


async def test_a_notification_that_came_before_the_wait_is_kept(db: Database) -> None:
    waiter = await subscribed(db, OUTBOX_CHANNEL)
    await notify(db, OUTBOX_CHANNEL)
    await asyncio.sleep(0.1)  # the waiter is busy elsewhere when it arrives
    started = time.monotonic()
    await asyncio.wait_for(waiter.wait(60), 10)
    assert time.monotonic() - started < 5


async def test_a_rolled_back_transaction_wakes_nobody(db: Database) -> None:
    waiter = await subscribed(db, TASKS_CHANNEL)
    await notify(db, TASKS_CHANNEL, commit=False)
    started = time.monotonic()
    await waiter.wait(0.3)
    assert time.monotonic() - started >= 0.3


async def test_a_wait_returns_after_its_timeout_and_not_before(db: Database) -> None:
    waiter = await subscribed(db, TASKS_CHANNEL)
    started = time.monotonic()
    await asyncio.wait_for(waiter.wait(0.2), 10)
    assert 0.2 <= time.monotonic() - started < 5


@pytest.mark.postgres
async def test_another_node_is_woken_through_postgresql(pg_url: str) -> None:
    this_node, other_node = Database.connect(pg_url), Database.connect(pg_url)
    try:
        waiter = await subscribed(other_node, OUTBOX_CHANNEL)
        waiting = asyncio.create_task(waiter.wait(60))
        await asyncio.sleep(0.05)
        await notify(this_node, OUTBOX_CHANNEL)
        await asyncio.wait_for(waiting, 10)
    finally:
        await this_node.close()
        await other_node.close()


@pytest.mark.postgres
async def test_a_lost_listen_connection_wakes_its_waiters_who_then_listen_again(
    pg_url: str,
) -> None:
    this_node, other_node = Database.connect(pg_url), Database.connect(pg_url)
    try:
        waiter = await subscribed(this_node, TASKS_CHANNEL)
        waiting = asyncio.create_task(waiter.wait(60))
        await asyncio.sleep(0.05)
        assert terminate_backends(pg_url.rsplit("/", 1)[1]) > 0  # LISTEN's among them
        await asyncio.wait_for(waiting, 10)  # at once, not at the end of its 60 s
        await waiter.wait(0)  # listens again
        waiting = asyncio.create_task(waiter.wait(60))
        await asyncio.sleep(0.05)
        await notify(other_node, TASKS_CHANNEL)
        await asyncio.wait_for(waiting, 10)
    finally:
        await this_node.close()
        await other_node.close()


class StallingListener(asyncpg.Connection):  # type: ignore[misc]
    """A real connection whose ``add_listener`` never returns."""

    async def add_listener(self, channel: str, callback: object) -> None:
        await asyncio.Event().wait()


@pytest.mark.postgres
async def test_a_wait_cancelled_while_it_starts_listening_closes_the_connection(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    opened: list[asyncpg.Connection] = []
    real_connect = asyncpg.connect

    async def connect(dsn: str, **options: Any) -> asyncpg.Connection:
        connection = await real_connect(dsn, connection_class=StallingListener, **options)
        opened.append(connection)
        return connection

    monkeypatch.setattr(asyncpg, "connect", connect)
    db = Database.connect(pg_url)
    try:
        waiting = asyncio.create_task(db.subscribe(TASKS_CHANNEL))
        deadline = time.monotonic() + 10
        while not opened and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        assert opened
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
    finally:
        await db.close()
    assert opened[0].is_closed()

"""Migrations, schema checks and the database handle itself."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from pathlib import Path

import asyncpg  # type: ignore[import-untyped]
import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, inspect, select, text

from qwenedit.errors import ConfigError
from qwenedit.store.accounts import AccountRepo
from qwenedit.store.database import Database
from qwenedit.store.migrate import ensure_schema, head_revision, upgrade
from qwenedit.store.tables import accounts, metadata


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
        assert (mode, keys, timeout) == ("wal", 1, 30000)
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


async def test_notify_wakes_a_waiting_worker(db: Database) -> None:
    await db.ping()
    await db.wait_for_task(0)  # opens the LISTEN connection on PostgreSQL
    waiter = asyncio.create_task(db.wait_for_task(60))
    await asyncio.sleep(0.05)
    assert not waiter.done()
    await db.notify_new_task()
    await asyncio.wait_for(waiter, 10)


async def test_wait_for_task_returns_after_its_timeout(db: Database) -> None:
    await db.wait_for_task(0)  # opens the LISTEN connection on PostgreSQL
    timeout = 0.3
    started = time.monotonic()
    await asyncio.wait_for(db.wait_for_task(timeout), 10)
    assert time.monotonic() - started >= timeout


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

    async def connect(dsn: str) -> asyncpg.Connection:
        connection = await real_connect(dsn, connection_class=StallingListener)
        opened.append(connection)
        return connection

    monkeypatch.setattr(asyncpg, "connect", connect)
    db = Database.connect(pg_url)
    try:
        waiting = asyncio.create_task(db.wait_for_task(60))
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

"""One handle on the database: an async engine, transactions, and the new-task wake-up.

Dialect quirks live here. SQLite: WAL, a 30 s busy timeout, foreign keys on, and every write
transaction is ``BEGIN IMMEDIATE`` (it takes the write lock up front, so two writers queue instead
of failing when one of them upgrades a read lock). PostgreSQL: workers are woken with
``LISTEN/NOTIFY`` on a dedicated connection; SQLite wakes the workers of its own process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]
from sqlalchemy import Connection, Row, event, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry
from sqlalchemy.sql.schema import Table

from qwenedit.errors import ConfigError

log = logging.getLogger(__name__)

CHANNEL = "qwenedit_tasks"
AnyRow = Row[*tuple[Any, ...]]
_BEGIN = "qwenedit_begin"
"""Execution option naming the statement that opens a SQLite transaction."""


def _configure_sqlite(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
        dbapi_connection.isolation_level = None  # the driver emits no BEGIN; we do, below
        cursor = dbapi_connection.cursor()
        for pragma in ("journal_mode=WAL", "busy_timeout=30000", "foreign_keys=ON"):
            cursor.execute(f"PRAGMA {pragma}")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection: Connection) -> None:
        connection.exec_driver_sql(
            connection.get_execution_options().get(_BEGIN, "BEGIN IMMEDIATE")
        )


class Database:
    def __init__(self, engine: AsyncEngine, listen_dsn: str | None) -> None:
        self._engine = engine
        self.dialect: str = engine.dialect.name
        self._listen_dsn = listen_dsn
        self._listener: Any = None
        self._listen_lock = asyncio.Lock()
        self._wakeup = asyncio.Event()

    @classmethod
    def connect(cls, url: str) -> Database:
        """``url`` as ``Settings.resolved_database_url`` gives it (an async driver URL)."""
        parsed = make_url(url)
        backend = parsed.get_backend_name()
        if backend == "sqlite":
            if parsed.database and parsed.database != ":memory:":
                Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
            engine = create_async_engine(parsed)
            _configure_sqlite(engine)
            return cls(engine, listen_dsn=None)
        if backend == "postgresql":
            dsn = parsed.set(drivername="postgresql").render_as_string(hide_password=False)
            return cls(create_async_engine(parsed, pool_pre_ping=True), listen_dsn=dsn)
        raise ConfigError(f"Unsupported database {backend!r}: use sqlite or postgresql")

    @contextlib.asynccontextmanager
    async def transaction(self, *, write: bool = True) -> AsyncIterator[AsyncConnection]:
        """Commits on success, rolls back on error. ``write=False`` is for pure reads: on SQLite
        it opens a deferred transaction, a WAL snapshot that never waits for writers."""
        async with self._engine.connect() as connection:
            if not write:
                await connection.execution_options(**{_BEGIN: "BEGIN"})
            async with connection.begin():
                yield connection

    def insert(self, table: Table) -> postgresql.Insert | sqlite.Insert:
        """An INSERT that knows ``ON CONFLICT`` in this dialect."""
        if self.dialect == "postgresql":
            return postgresql.insert(table)
        return sqlite.insert(table)

    async def ping(self) -> None:
        async with self.transaction(write=False) as connection:
            await connection.execute(select(1))

    async def notify_new_task(self) -> None:
        """Wake the workers waiting in ``wait_for_task`` (every process, on PostgreSQL)."""
        if self.dialect == "postgresql":
            async with self.transaction() as connection:
                await connection.execute(select(func.pg_notify(CHANNEL, "")))
        else:
            self._wakeup.set()

    async def wait_for_task(self, timeout: float) -> None:  # noqa: ASYNC109 (a poll interval)
        """Return when a task may be waiting: on a notification or after ``timeout``."""
        if self._listen_dsn is not None:
            await self._listen()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wakeup.wait(), timeout)
        self._wakeup.clear()

    async def _listen(self) -> None:
        """(Re)open the LISTEN connection; if that fails, waiting degrades to polling."""
        async with self._listen_lock:
            if self._listener is not None and not self._listener.is_closed():
                return
            listener = None
            try:
                listener = await asyncpg.connect(self._listen_dsn)
                await listener.add_listener(CHANNEL, self._on_notify)
            except (OSError, asyncpg.PostgresError) as exc:
                log.warning("LISTEN %s failed, polling instead: %s", CHANNEL, type(exc).__name__)
                if listener is not None:
                    await listener.close()
                return
            except BaseException:
                if listener is not None:  # cancelled half-way: the connection must not leak
                    listener.terminate()
                raise
            self._listener = listener

    def _on_notify(self, *_args: object) -> None:
        self._wakeup.set()

    async def close(self) -> None:
        if self._listener is not None:
            await self._listener.close()
            self._listener = None
        await self._engine.dispose()

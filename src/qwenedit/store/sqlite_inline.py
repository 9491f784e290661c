"""SQLite driven on the event loop's own thread, for SQLAlchemy's async engine.

aiosqlite runs every call (cursor, execute, fetch, close, commit) on a thread of its own and
wakes the event loop when it is done: on a small VM each of those round trips costs 70-200 µs
of CPU, while the SQLite work behind it (an indexed read or write of a few rows) costs a few
microseconds. A create took ~40 of them. This module gives SQLAlchemy an object with
aiosqlite's interface whose coroutines do the work at once, on the calling thread
(``create_async_engine(..., async_creator=connect)``; the dialect stays ``sqlite+aiosqlite``).

What keeps the loop from blocking: the commit of a transaction that wrote (SQLite's fsync,
which a busy disk can stretch to many milliseconds) runs on a worker thread; SQLite's busy
handler waits at most ``BUSY_WAIT_MS``, so a lock held by another process never stalls the loop
for long; ``Database`` takes the write lock with ``BEGIN IMMEDIATE`` and retries a busy one on
the loop (``asyncio.sleep``), which is where all waiting for another process happens (a WAL
reader never waits for a writer). Statements
are the small indexed ones of a queue; the embedded default serves one machine, and
PostgreSQL (a real async driver) is for more.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncConnection

BUSY_WAIT_MS = 5
"""How long SQLite's own busy handler may hold the event loop before a call reports busy."""

_COMMITS = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-commit")
"""Where commits wait for their fsync: a thread of their own, so a commit (which holds the
write lock while it runs) never queues behind image decoding and file writes in the loop's
default executor. One is enough: a process writes one transaction at a time."""


class InlineCursor:
    """An aiosqlite-style cursor over a ``sqlite3.Cursor``: its coroutines never suspend."""

    def __init__(self, cursor: sqlite3.Cursor) -> None:
        self._cursor = cursor

    async def __aenter__(self) -> InlineCursor:
        return self

    async def __aexit__(
        self,
        _type: type[BaseException] | None,
        _value: BaseException | None,
        _traceback: TracebackType | None,
    ) -> None:
        self._cursor.close()

    @property
    def description(self) -> Any:
        return self._cursor.description

    @property
    def rowcount(self) -> int:
        return self._cursor.rowcount

    @property
    def lastrowid(self) -> int | None:
        return self._cursor.lastrowid

    @property
    def arraysize(self) -> int:
        return self._cursor.arraysize

    @arraysize.setter
    def arraysize(self, value: int) -> None:
        self._cursor.arraysize = value

    async def execute(self, sql: str, parameters: Sequence[Any] = ()) -> InlineCursor:
        self._cursor.execute(sql, parameters)
        return self

    async def executemany(self, sql: str, parameters: Iterable[Sequence[Any]]) -> InlineCursor:
        self._cursor.executemany(sql, parameters)
        return self

    async def fetchone(self) -> Any:
        return self._cursor.fetchone()

    async def fetchmany(self, size: int | None = None) -> list[Any]:
        return self._cursor.fetchmany(self._cursor.arraysize if size is None else size)

    async def fetchall(self) -> list[Any]:
        return self._cursor.fetchall()

    async def close(self) -> None:
        self._cursor.close()


class InlineConnection:
    """The parts of ``aiosqlite.Connection`` that SQLAlchemy's aiosqlite dialect uses."""

    def __init__(self, connection: sqlite3.Connection) -> None:
        self._conn: sqlite3.Connection | None = connection
        self._changes = connection.total_changes
        """Rows changed through this connection up to the end of its last transaction."""

    @property
    def _connection(self) -> sqlite3.Connection | None:
        """``None`` once closed (the dialect checks it before a commit or rollback)."""
        return self._conn

    def _open(self) -> sqlite3.Connection:
        if self._conn is None:
            raise sqlite3.ProgrammingError("Cannot operate on a closed database.")
        return self._conn

    @property
    def sqlite(self) -> sqlite3.Connection:
        return self._open()

    @property
    def isolation_level(self) -> str | None:
        return self._open().isolation_level

    def cursor(self) -> InlineCursor:
        return InlineCursor(self._open().cursor())

    async def execute(self, sql: str, parameters: Sequence[Any] = ()) -> InlineCursor:
        return await self.cursor().execute(sql, parameters)

    async def commit(self) -> None:
        """A transaction that changed nothing ends here; one that wrote waits for its fsync
        on a worker thread. That commit is never abandoned: a caller cancelled meanwhile still
        waits for it (then is cancelled), so the connection is never used by two threads and
        the transaction is never left half-ended."""
        connection = self._open()
        if connection.total_changes == self._changes:
            connection.commit()
            return
        committing = asyncio.get_running_loop().run_in_executor(_COMMITS, connection.commit)
        cancelled = False
        while not committing.done():
            try:
                await asyncio.shield(committing)
            except asyncio.CancelledError:
                cancelled = True
        self._changes = connection.total_changes
        if cancelled:  # whatever the commit's outcome, the caller asked to stop
            raise asyncio.CancelledError
        committing.result()

    async def rollback(self) -> None:
        connection = self._open()
        connection.rollback()
        self._changes = connection.total_changes

    async def create_function(self, *args: Any, **kwargs: Any) -> None:
        self._open().create_function(*args, **kwargs)

    async def close(self) -> None:
        self.stop()

    def stop(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def connect(path: Path | str) -> InlineConnection:
    """A connection in autocommit mode (the caller sends ``BEGIN``), usable from any thread
    (SQLAlchemy's pool may finalize a connection elsewhere; SQLite itself is serialized)."""
    connection = sqlite3.connect(
        path, timeout=BUSY_WAIT_MS / 1000, isolation_level=None, check_same_thread=False
    )
    return InlineConnection(connection)


def sqlite_of(connection: AsyncConnection) -> sqlite3.Connection:
    """The ``sqlite3`` connection under ``connection``, a SQLAlchemy connection of an engine
    made with ``connect``: while ``connection`` is in a transaction, statements run on it are
    part of that transaction (``store.direct``)."""
    pooled = connection.sync_connection
    if pooled is None:
        raise sqlite3.ProgrammingError("the connection is not open")
    inline = pooled.connection.driver_connection
    if not isinstance(inline, InlineConnection):
        raise TypeError(f"not a connection of this module: {type(inline).__name__}")
    return inline.sqlite

"""One handle on the database: an async engine, transactions, its clock and wake-ups.

Dialect quirks live here. SQLite: WAL, foreign keys on, driven on the event loop's thread
(``sqlite_inline``), and every write transaction is ``BEGIN IMMEDIATE`` (it takes the write lock
up front, so two writers queue instead of failing when one of them upgrades a read lock); the
write transactions of one process take turns on an in-process lock first, so they queue on the
event loop instead of in SQLite's busy handler, whose sleeps of up to 100 ms made the tail of a
write burst seconds long; a lock held by another process is waited for on the loop too
(``asyncio.sleep`` between tries, for up to ``SQLITE_WRITE_WAIT_SECONDS``). PostgreSQL:
waiters are woken with ``LISTEN/NOTIFY`` on a dedicated connection, on every node; SQLite wakes
the waiters of its own process. A notification is sent by the transaction that made the change,
at its commit, so a waiter never looks before the change is visible.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sqlite3
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]
from sqlalchemy import (
    ColumnElement,
    Connection,
    Interval,
    Row,
    bindparam,
    event,
    func,
    literal,
    select,
    type_coerce,
)
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncTransaction,
    create_async_engine,
)
from sqlalchemy.pool import ConnectionPoolEntry
from sqlalchemy.sql.schema import Table

from qwenedit.errors import ConfigError
from qwenedit.store import sqlite_inline
from qwenedit.store.file_changes import FileChanges
from qwenedit.store.tables import UtcDateTime

log = logging.getLogger(__name__)

TASKS_CHANNEL = "qwenedit_tasks"
"""A task may be claimable: created, released or requeued."""
OUTBOX_CHANNEL = "qwenedit_outbox"
"""A callback is due: a task ended or a redelivery was asked for."""
CHANNELS = (TASKS_CHANNEL, OUTBOX_CHANNEL)
AnyRow = Row[*tuple[Any, ...]]
LISTEN_CONNECT_TIMEOUT = 5.0
PRIVATE_DIR_MODE = 0o700
PRIVATE_FILE_MODE = 0o600
_BEGIN = "qwenedit_begin"
"""Execution option naming the statement that opens a SQLite transaction."""
_SYNCHRONOUS = "qwenedit_synchronous"
"""Execution option: SQLite's ``synchronous`` level for the write transaction about to open
(``FULL`` unless ``NORMAL`` is given, ``Database.transaction(durable=False)``)."""
PING_AFTER_IDLE_SECONDS = 2.0
"""A pooled PostgreSQL connection that rested longer than this is pinged (three round trips)
before it is handed out. One used more recently is only checked for a close the driver has
already seen (a server that ended the session or restarted sends that at once): under load that
saves the round trips on every transaction. A connection that broke silently meanwhile fails its
statement, which invalidates it and every pooled connection older than the failure
(SQLAlchemy's pool), so the next transaction gets a fresh one."""
SQLITE_WATCH_SECONDS = 1.0
"""How often at most a SQLite node looks whether another process wrote to its file (``PRAGMA
data_version``, which reads no table), and wakes its waiters if so. It looks when the kernel
says the file's log was written (``file_changes``), at once after a quiet spell, so a worker,
a CLI command or another node on the same file is heard at once and an idle node never wakes
for it; where the kernel cannot say, it looks this often."""
_PENDING_SIGNATURES = {
    TASKS_CHANNEL: "SELECT count(*), total(rowid) FROM tasks WHERE status = 'pending'",
    OUTBOX_CHANNEL: (
        "SELECT count(*), total(rowid), min(next_attempt_at) FROM outbox WHERE status = 'pending'"
    ),
}
"""What a waiter on each channel looks for, summed up: a claimable task, a callback due."""
SQLITE_WRITE_WAIT_SECONDS = 30.0
"""How long a write waits for another process's SQLite write lock before it fails."""
SQLITE_BUSY_PAUSES = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05)
"""Pauses between tries for a busy SQLite write lock; the last one repeats."""


def create_private_file(path: Path) -> None:
    """Make the SQLite file (it holds webhook secrets and key hashes) readable by its owner
    only, before SQLite creates it with the umask's mode: its folder 0700 when it is new, the
    file 0600 whether new or not. SQLite gives its ``-wal`` and ``-shm`` files the database
    file's mode."""
    path.parent.mkdir(mode=PRIVATE_DIR_MODE, parents=True, exist_ok=True)
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT, PRIVATE_FILE_MODE))
    os.chmod(path, PRIVATE_FILE_MODE)


def _sqlite_engine(url: URL, path: str) -> AsyncEngine:
    """An engine whose connections are ``sqlite_inline`` ones, in autocommit mode: the driver
    emits no ``BEGIN``; we do, below. The URL still names the file: it decides the pool (a
    connection per transaction for a file; one shared connection only for ``:memory:``)."""

    async def open_connection() -> sqlite_inline.InlineConnection:
        return sqlite_inline.connect(path)

    engine = create_async_engine(url, async_creator=open_connection)

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
        cursor = dbapi_connection.cursor()
        for pragma in ("journal_mode=WAL", "foreign_keys=ON", "synchronous=FULL"):
            cursor.execute(f"PRAGMA {pragma}")
        cursor.close()
        record.info[_SYNCHRONOUS] = "FULL"

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection: Connection) -> None:
        options = connection.get_execution_options()
        begin = options.get(_BEGIN, "BEGIN IMMEDIATE")
        if begin == "BEGIN IMMEDIATE":  # a write: how its commit reaches the disk
            level = options.get(_SYNCHRONOUS, "FULL")
            info = connection.connection.info
            if info.get(_SYNCHRONOUS) != level:
                connection.exec_driver_sql(f"PRAGMA synchronous={level}")
                info[_SYNCHRONOUS] = level
        connection.exec_driver_sql(begin)

    return engine


def _postgres_engine(url: URL, **server_settings: str) -> AsyncEngine:
    """An engine whose connections start with ``server_settings`` (PostgreSQL session
    settings: set once per connection, not once per transaction)."""
    engine = create_async_engine(url, connect_args={"server_settings": server_settings})

    @event.listens_for(engine.sync_engine, "checkin")
    def _on_checkin(_dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
        record.info["rested_from"] = time.monotonic()

    @event.listens_for(engine.sync_engine, "checkout")
    def _on_checkout(dbapi_connection: Any, record: ConnectionPoolEntry, _proxy: Any) -> None:
        if dbapi_connection.driver_connection.is_closed():
            raise sa_exc.DisconnectionError("the server closed a pooled connection")
        rested_from = record.info.get("rested_from")
        if rested_from is None or time.monotonic() - rested_from < PING_AFTER_IDLE_SECONDS:
            return
        try:
            dbapi_connection.ping()
        except Exception as exc:
            raise sa_exc.DisconnectionError(f"a pooled connection is gone: {exc}") from exc

    return engine


async def _started(connection: AsyncConnection) -> AsyncTransaction:
    transaction = connection.begin()
    await transaction.start(is_ctxmanager=True)
    return transaction


def _is_busy(error: sa_exc.OperationalError) -> bool:
    return "database is locked" in str(error.orig)


class Subscription:
    """One waiter on a channel. A notification that arrives while the waiter is busy is kept,
    so it is never missed between a look at the table and the next wait."""

    def __init__(self, db: Database, channel: str) -> None:
        self._db = db
        self.channel = channel
        self._event = asyncio.Event()

    def wake(self) -> None:
        self._event.set()

    async def wait(self, timeout: float) -> None:  # noqa: ASYNC109 (a poll interval)
        """Return on a notification (maybe one that came before the call) or after
        ``timeout``."""
        await self._db.ensure_listening()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._event.wait(), timeout)
        self._event.clear()

    def close(self) -> None:
        self._db.unsubscribe(self)


@dataclass
class _OnCommit:
    channels: set[str] = field(default_factory=set)
    """Channels whose waiters in this process are woken (SQLite; PostgreSQL notifies)."""
    calls: list[Callable[[], None]] = field(default_factory=list)


class Database:
    def __init__(
        self,
        engine: AsyncEngine,
        listen_dsn: str | None,
        watch_path: str | None = None,
        *,
        relaxed: AsyncEngine | None = None,
    ) -> None:
        self._engine = engine
        self._relaxed = relaxed or engine
        """Where writes that need not wait for the disk go (``durable=False``): on PostgreSQL
        a pool whose sessions have ``synchronous_commit`` off, which spares each such
        transaction a ``SET LOCAL`` round trip; on SQLite the same engine (``_on_begin``)."""
        self._watch_path = watch_path
        """The SQLite file whose commits by other processes wake this node's waiters."""
        self._watcher: asyncio.Task[None] | None = None
        self._reader = (
            engine.execution_options(isolation_level="AUTOCOMMIT")
            if engine.dialect.name == "postgresql"
            else engine
        )
        """PostgreSQL reads run without BEGIN/COMMIT: at READ COMMITTED a transaction gives
        each statement a fresh snapshot anyway, and two round trips fewer is a third of a
        small read's cost. (SQLite reads keep their transaction: it is their WAL snapshot.)"""
        self.dialect: str = engine.dialect.name
        self._listen_dsn = listen_dsn
        self._listener: Any = None
        self._listen_lock = asyncio.Lock()
        self._writer: asyncio.Lock | None = asyncio.Lock() if self.dialect == "sqlite" else None
        """SQLite has one writer at a time: the writes of this process wait their turn here."""
        self._on_commit: dict[int, _OnCommit] = {}
        """What to do when the open transaction on a connection (by ``id``) commits."""
        self._subscriptions: dict[str, set[Subscription]] = {channel: set() for channel in CHANNELS}

    @classmethod
    def connect(cls, url: str) -> Database:
        """``url`` as ``Settings.resolved_database_url`` gives it (an async driver URL)."""
        parsed = make_url(url)
        backend = parsed.get_backend_name()
        if backend == "sqlite":
            path = parsed.database or ":memory:"
            if path != ":memory:":
                create_private_file(Path(path))
            # resolved: SQLite keeps its log beside the file a link points to
            watched = None if path == ":memory:" else str(Path(path).resolve())
            return cls(_sqlite_engine(parsed, path), listen_dsn=None, watch_path=watched)
        if backend == "postgresql":
            dsn = parsed.set(drivername="postgresql").render_as_string(hide_password=False)
            return cls(
                _postgres_engine(parsed),
                listen_dsn=dsn,
                relaxed=_postgres_engine(parsed, synchronous_commit="off"),
            )
        raise ConfigError(f"Unsupported database {backend!r}: use sqlite or postgresql")

    @contextlib.asynccontextmanager
    async def transaction(
        self, *, write: bool = True, durable: bool = True
    ) -> AsyncIterator[AsyncConnection]:
        """Commits on success, rolls back on error. ``write=False`` is for pure reads: on SQLite
        it opens a deferred transaction, a WAL snapshot that never waits for writers.

        ``durable=False`` is for a write that may be lost to a crash of the machine (never to
        a crash of this process) because the state it leaves behind is one the queue recovers
        from anyway: a claim, a lease or progress write, a callback's claim or its outcome
        (the task is claimed again, its lease runs out, the callback is sent again: at least
        once). Its commit does not wait for the disk: SQLite's ``synchronous=NORMAL`` in WAL
        mode, PostgreSQL's ``synchronous_commit`` off. Either database loses such writes only
        as the tail of its log, so the next durable commit makes them durable with it. A
        write whose outcome someone is told about (a create, a cancel, a task's end, money) is
        durable."""
        async with contextlib.AsyncExitStack() as turn:
            if write and self._writer is not None:
                await turn.enter_async_context(self._writer)
            async with self._transaction(write, durable) as connection:
                yield connection

    @contextlib.asynccontextmanager
    async def _transaction(self, write: bool, durable: bool) -> AsyncIterator[AsyncConnection]:
        engine = (self._engine if durable else self._relaxed) if write else self._reader
        async with engine.connect() as connection:
            if not write:
                await connection.execution_options(**{_BEGIN: "BEGIN"})
            elif not durable and self.dialect == "sqlite":
                await connection.execution_options(**{_SYNCHRONOUS: "NORMAL"})
            committed = _OnCommit()
            self._on_commit[id(connection)] = committed
            try:
                async with contextlib.AsyncExitStack() as scope:
                    scope.push_async_exit(await self._begin(connection, write))
                    yield connection
            finally:
                del self._on_commit[id(connection)]
            for channel in committed.channels:
                self._wake(channel)
            for call in committed.calls:
                call()

    async def _begin(self, connection: AsyncConnection, write: bool) -> AsyncTransaction:
        """Open the transaction (its ``__aexit__`` commits or rolls back). A SQLite write whose
        lock another process holds is retried here, after a pause on the loop, until
        ``SQLITE_WRITE_WAIT_SECONDS`` have passed."""
        if self.dialect != "sqlite" or not write:
            return await _started(connection)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + SQLITE_WRITE_WAIT_SECONDS
        pauses = iter(SQLITE_BUSY_PAUSES)
        pause = SQLITE_BUSY_PAUSES[0]
        while True:
            try:
                return await _started(connection)
            except sa_exc.OperationalError as exc:
                if not _is_busy(exc) or loop.time() >= deadline:
                    raise
            pause = next(pauses, pause)
            await asyncio.sleep(pause)

    def clock(self, plus_seconds: float = 0.0) -> ColumnElement[datetime]:
        """The database's time (plus an offset) as an SQL expression. Leases and the reaper
        judge by it, so nodes whose clocks disagree still agree on whether a lease ran out.
        SQLite is a file on one host: its clock is that host's."""
        if self.dialect == "postgresql":
            now: ColumnElement[datetime] = func.now()
            if plus_seconds:
                now = now + timedelta(seconds=plus_seconds)
            return type_coerce(now, UtcDateTime())
        return literal(datetime.now(UTC) + timedelta(seconds=plus_seconds), UtcDateTime())

    def clock_param(self, name: str) -> ColumnElement[datetime]:
        """``clock()`` in a statement built once: the offset (PostgreSQL) or the time itself
        (SQLite) is the parameter ``name``, whose value ``clock_value`` gives."""
        if self.dialect == "postgresql":
            offset = bindparam(name, type_=Interval())
            return type_coerce(func.now() + offset, UtcDateTime())
        return bindparam(name, type_=UtcDateTime())

    def clock_value(self, plus_seconds: float = 0.0) -> timedelta | datetime:
        """The value of a ``clock_param`` for the database's time plus ``plus_seconds``."""
        if self.dialect == "postgresql":
            return timedelta(seconds=plus_seconds)
        return datetime.now(UTC) + timedelta(seconds=plus_seconds)

    def insert(self, table: Table) -> postgresql.Insert | sqlite.Insert:
        """An INSERT that knows ``ON CONFLICT`` in this dialect."""
        if self.dialect == "postgresql":
            return postgresql.insert(table)
        return sqlite.insert(table)

    async def ping(self) -> None:
        async with self.transaction(write=False) as connection:
            await connection.execute(select(1))

    async def notify_on_commit(self, connection: AsyncConnection, channel: str) -> None:
        """Wake the waiters on ``channel`` (on every node) when this transaction commits."""
        if self.dialect == "postgresql":
            await connection.execute(select(func.pg_notify(channel, "")))
        else:
            self._on_commit[id(connection)].channels.add(channel)

    def after_commit(self, connection: AsyncConnection, call: Callable[[], None]) -> None:
        """Call ``call`` once the open transaction on ``connection`` has committed (never if it
        rolls back, or if its commit fails)."""
        self._on_commit[id(connection)].calls.append(call)

    async def subscribe(self, channel: str) -> Subscription:
        subscription = Subscription(self, channel)
        self._subscriptions[channel].add(subscription)
        await self.ensure_listening()
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        self._subscriptions[subscription.channel].discard(subscription)

    def _wake(self, channel: str) -> None:
        for subscription in self._subscriptions.get(channel, ()):
            subscription.wake()

    async def ensure_listening(self) -> None:
        """(Re)open the LISTEN connection, or start watching the SQLite file; if that fails,
        waiting degrades to polling."""
        if self._watch_path is not None and self._watcher is None:
            self._watcher = asyncio.create_task(
                self._watch_other_processes(self._watch_path), name="sqlite-watch"
            )
        if self._listen_dsn is None:
            return
        async with self._listen_lock:
            if self._listener is not None and not self._listener.is_closed():
                return
            listener = None
            try:
                listener = await asyncpg.connect(self._listen_dsn, timeout=LISTEN_CONNECT_TIMEOUT)
                for channel in CHANNELS:
                    await listener.add_listener(channel, self._on_notify)
                listener.add_termination_listener(self._on_listener_lost)
            except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
                log.warning("LISTEN failed, polling instead: %s", type(exc).__name__)
                if listener is not None:
                    await listener.close()
                return
            except BaseException:
                if listener is not None:  # cancelled half-way: the connection must not leak
                    listener.terminate()
                raise
            self._listener = listener
            for channel in CHANNELS:  # a change may have come while nobody listened
                self._wake(channel)

    def _on_notify(self, _connection: object, _pid: int, channel: str, _payload: str) -> None:
        self._wake(channel)

    def _on_listener_lost(self, _connection: object) -> None:
        """The LISTEN connection ended (the server ended it, the network failed): every waiter
        looks now and listens again at its next wait, rather than hearing nothing until its
        fallback poll."""
        for channel in CHANNELS:
            self._wake(channel)

    async def _watch_other_processes(self, path: str) -> None:
        """Wake a channel's waiters when what they wait for changed in the file and this node
        may not know it: looked for when the file's ``data_version`` moved (some other
        connection committed), judged by a signature of the pending rows, so this node's own
        bookkeeping (worker heartbeats, say) wakes nobody."""
        watch = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        file = Path(path)
        changes = FileChanges.open(file.parent, (file.name, f"{file.name}-wal"))
        loop = asyncio.get_running_loop()
        try:
            version: object = None
            signatures: dict[str, object] = {}
            while True:
                looked = loop.time()
                try:
                    now = watch.execute("PRAGMA data_version").fetchone()[0]
                    if now != version:
                        version = now
                        for channel, query in _PENDING_SIGNATURES.items():
                            signature = watch.execute(query).fetchone()
                            if channel in signatures and signature != signatures[channel]:
                                self._wake(channel)
                            signatures[channel] = signature
                except sqlite3.Error as exc:
                    log.warning("cannot watch %s for other writers: %s", path, exc)
                if changes is not None:
                    await changes.wait()
                    if changes.ended:
                        log.warning("the watch of %s ended; looking every second", file.parent)
                        changes.close()
                        changes = None
                await asyncio.sleep(looked + SQLITE_WATCH_SECONDS - loop.time())
        finally:
            watch.close()
            if changes is not None:
                changes.close()

    async def close(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
            self._watcher = None
        if self._listener is not None:
            await self._listener.close()
            self._listener = None
        await self._engine.dispose()
        if self._relaxed is not self._engine:
            await self._relaxed.dispose()

"""Integration fixtures: a test that takes ``db_url`` runs on SQLite and on PostgreSQL.

SQLite gets a fresh file per test, a copy of one migrated once per session. PostgreSQL gets one
fresh database per session (``qwenedit_test_<random>``, migrated once, emptied before each test,
dropped at the end). When PostgreSQL is not reachable its tests are skipped, except in CI
(``CI=1``/``true``): then they fail. Setup talks to PostgreSQL from a helper thread with its own
event loop, so it never touches the loops pytest-asyncio runs the tests in.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import asyncpg  # type: ignore[import-untyped]
import pytest

from qwenedit.domain.task import TaskParams, TaskRecord, new_task_id
from qwenedit.store.accounts import AccountRepo
from qwenedit.store.database import Database
from qwenedit.store.migrate import ensure_schema, upgrade
from qwenedit.store.outbox import OutboxRepo
from qwenedit.store.queue import QueueRepo
from qwenedit.store.retention import RetentionRepo
from qwenedit.store.tables import metadata
from qwenedit.store.task_stats import TaskStats
from qwenedit.store.tasks import IdempotencyKey, Limits, NewTask, TaskRepo
from support.seaweed import seaweed  # noqa: F401 - the session's S3 server, for any test here

PG_HOST = "postgresql://postgres@127.0.0.1:5432"
T = TypeVar("T")


def in_thread(function: Callable[..., T], *args: Any) -> T:
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(function, *args).result()


def run_async(make: Callable[[], Coroutine[Any, Any, T]]) -> T:
    return in_thread(lambda: asyncio.run(make()))


def pg_execute(database: str, sql: str) -> None:
    async def main() -> None:
        connection = await asyncpg.connect(f"{PG_HOST}/{database}", timeout=5)
        try:
            await connection.execute(sql)
        finally:
            await connection.close()

    run_async(main)


@contextmanager
def fresh_pg_database() -> Iterator[str]:
    """An empty PostgreSQL database for the duration of the block; yields its async URL."""
    name = f"qwenedit_test_{secrets.token_hex(4)}"
    pg_execute("postgres", f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"
    finally:
        pg_execute("postgres", f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def postgres_reachable() -> None:
    try:
        pg_execute("postgres", "SELECT 1")
    except (OSError, asyncpg.PostgresError) as exc:
        message = f"PostgreSQL at 127.0.0.1:5432 is not reachable ({type(exc).__name__}: {exc})"
        if os.environ.get("CI", "").lower() in ("1", "true"):
            pytest.fail(f"{message}; CI requires it")
        pytest.skip(message)


@pytest.fixture(scope="session")
def pg_session_url(postgres_reachable: None) -> Iterator[str]:
    with fresh_pg_database() as url:
        in_thread(upgrade, url)
        yield url


DIALECTS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "qwenedit.db"
    in_thread(upgrade, f"sqlite+aiosqlite:///{path}")
    return path


@pytest.fixture(params=DIALECTS)
def db_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A migrated, empty database."""
    if request.param == "sqlite":
        path = tmp_path_factory.mktemp("db") / "qwenedit.db"
        shutil.copyfile(request.getfixturevalue("sqlite_template"), path)
        return f"sqlite+aiosqlite:///{path}"
    url: str = request.getfixturevalue("pg_url")
    return url


@pytest.fixture
def pg_url(pg_session_url: str) -> str:
    """The session's PostgreSQL database, emptied."""
    names = ", ".join(table.name for table in metadata.sorted_tables)
    pg_execute(pg_session_url.rsplit("/", 1)[1], f"TRUNCATE {names} RESTART IDENTITY")
    return pg_session_url


@pytest.fixture(params=DIALECTS)
def empty_db_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A database with no schema at all."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('empty') / 'sub' / 'qwenedit.db'}"
    url: str = request.getfixturevalue("empty_pg_url")
    return url


@pytest.fixture
def empty_pg_url(postgres_reachable: None) -> Iterator[str]:
    with fresh_pg_database() as url:
        yield url


@pytest.fixture
async def db(db_url: str) -> AsyncIterator[Database]:
    database = Database.connect(db_url)
    await ensure_schema(database, db_url)
    yield database
    await database.close()


@pytest.fixture
async def sqlite_db(tmp_path: Path) -> AsyncIterator[Database]:
    """A migrated SQLite database of its own, for what only SQLite does."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'qwenedit.db'}"
    db = Database.connect(url)
    await ensure_schema(db, url)
    yield db
    await db.close()


@pytest.fixture
def accounts(db: Database) -> AccountRepo:
    return AccountRepo(db)


@dataclass(frozen=True)
class Store:
    """The task repositories over one database, as the runtime wires them."""

    tasks: TaskRepo
    queue: QueueRepo
    stats: TaskStats
    retention: RetentionRepo
    outbox: OutboxRepo

    async def create(
        self, new: NewTask, limits: Limits = Limits(), idempotency: IdempotencyKey | None = None
    ) -> TaskRecord:
        return (await self.tasks.create(new, limits, idempotency)).task


def store_of(db: Database) -> Store:
    return Store(TaskRepo(db), QueueRepo(db), TaskStats(db), RetentionRepo(db), OutboxRepo(db))


@pytest.fixture
def store(db: Database) -> Store:
    return store_of(db)


@pytest.fixture
def new_task() -> Callable[..., NewTask]:
    """Makes tasks created one millisecond apart, in call order."""
    start = datetime.now(UTC)
    made: list[NewTask] = []

    def make(
        account_id: int, *, n: int = 1, price_milli: int = 1000, callback_url: str | None = None
    ) -> NewTask:
        created_at = start + timedelta(milliseconds=len(made))
        params = TaskParams(
            prompt="make it blue",
            image_urls=("https://example.com/a.png",),
            n=n,
            negative_prompt=None,
            size=(1024, 1024) if n == 1 else None,
            prompt_extend=True,
            watermark=False,
            seed=7,
            callback_url=callback_url,
        )
        task = NewTask(
            id=new_task_id(int(created_at.timestamp())),
            account_id=account_id,
            params=params,
            price_milli=price_milli,
            created_at=created_at,
        )
        made.append(task)
        return task

    return make

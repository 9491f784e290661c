"""The test PostgreSQL server at 127.0.0.1:5432, from outside the code under test: fresh
databases, and ending every connection to one (``pg_terminate_backend``), as a restart would."""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import Callable, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, TypeVar

import asyncpg  # type: ignore[import-untyped]
import pytest

PG_PORT = 5432
PG_HOST = f"postgresql://postgres@127.0.0.1:{PG_PORT}"
T = TypeVar("T")


def _run(make: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run on a helper thread with its own loop: callable from sync tests and async ones."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(lambda: asyncio.run(make())).result()


def _fetch(database: str, sql: str, *args: object) -> list[asyncpg.Record]:
    async def main() -> list[asyncpg.Record]:
        connection = await asyncpg.connect(f"{PG_HOST}/{database}", timeout=5)
        try:
            return list(await connection.fetch(sql, *args))
        finally:
            await connection.close()

    return _run(main)


def require_postgres() -> None:
    """Skip the test when the server is not there, except in CI (``CI=1``): then fail it."""
    try:
        _fetch("postgres", "SELECT 1")
    except (OSError, asyncpg.PostgresError) as exc:
        message = f"PostgreSQL at 127.0.0.1:{PG_PORT} is not reachable ({type(exc).__name__})"
        if os.environ.get("CI", "").lower() in ("1", "true"):
            pytest.fail(f"{message}; CI requires it")
        pytest.skip(message)


def terminate_backends(database: str) -> int:
    """End every connection to ``database``; how many there were."""
    rows = _fetch(
        "postgres",
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        "WHERE datname = $1 AND pid <> pg_backend_pid()",
        database,
    )
    return len(rows)


@contextmanager
def fresh_database() -> Iterator[str]:
    """An empty database for the block; yields its name."""
    name = f"qwenedit_test_{secrets.token_hex(4)}"
    _fetch("postgres", f'CREATE DATABASE "{name}"')
    try:
        yield name
    finally:
        _fetch("postgres", f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

"""The SQLite connection driven on the event loop: a commit that wrote runs on a worker thread
and is seen through even when its caller is cancelled meanwhile."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path

import pytest

from qwenedit.store.sqlite_inline import InlineConnection


class SlowCommit(sqlite3.Connection):
    """Signals when a commit starts and takes a while, like a slow disk's fsync."""

    started = threading.Event()
    threads: list[threading.Thread] = []

    def commit(self) -> None:
        SlowCommit.threads.append(threading.current_thread())
        SlowCommit.started.set()
        threading.Event().wait(0.3)
        super().commit()


def open_connection(path: Path, factory: type[sqlite3.Connection]) -> InlineConnection:
    raw = sqlite3.connect(path, isolation_level=None, check_same_thread=False, factory=factory)
    raw.execute("CREATE TABLE IF NOT EXISTS t (x INTEGER)")
    return InlineConnection(raw)


async def test_a_cancelled_commit_still_completes_before_the_caller_returns(
    tmp_path: Path,
) -> None:
    SlowCommit.started.clear()
    connection = open_connection(tmp_path / "db.sqlite", SlowCommit)

    async def write() -> None:
        await connection.execute("BEGIN IMMEDIATE")
        await connection.execute("INSERT INTO t VALUES (1)")
        await connection.commit()

    writer = asyncio.create_task(write())
    await asyncio.to_thread(SlowCommit.started.wait, 5)
    writer.cancel()
    with pytest.raises(asyncio.CancelledError):
        await writer
    raw = connection._connection
    assert raw is not None and not raw.in_transaction  # ended, not left half-way
    other = sqlite3.connect(tmp_path / "db.sqlite")
    assert other.execute("SELECT count(*) FROM t").fetchone() == (1,)
    other.close()
    await connection.close()


async def test_only_a_commit_that_wrote_leaves_the_loop(tmp_path: Path) -> None:
    SlowCommit.threads.clear()
    connection = open_connection(tmp_path / "db.sqlite", SlowCommit)
    await connection.execute("BEGIN")
    await connection.execute("SELECT count(*) FROM t")
    await connection.commit()
    await connection.execute("BEGIN IMMEDIATE")
    await connection.execute("INSERT INTO t VALUES (1)")
    await connection.commit()
    await connection.execute("BEGIN IMMEDIATE")
    await connection.execute("DELETE FROM t WHERE x = 2")  # changes no row
    await connection.commit()
    loop_thread = threading.current_thread()
    assert [thread is loop_thread for thread in SlowCommit.threads] == [True, False, True]
    await connection.close()

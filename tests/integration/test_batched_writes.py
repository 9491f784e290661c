"""Group commit (``store.batches``): writes that arrive together share a transaction, each
keeps its own outcome, and nothing is answered before its transaction has committed."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import TypeVar

import pytest
from asyncpg.exceptions import DeadlockDetectedError  # type: ignore[import-untyped]
from sqlalchemy import func, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from integration.conftest import store_of
from qwenedit.errors import DependencyUnavailable, QuotaExceeded
from qwenedit.store.accounts import AccountRepo
from qwenedit.store.batches import BatchedWrites
from qwenedit.store.database import Database
from qwenedit.store.tables import accounts as account_table
from qwenedit.store.tables import tasks as task_table
from qwenedit.store.tasks import Limits, NewTask

NewTaskFactory = Callable[..., NewTask]
T = TypeVar("T")


class Refused(Exception):
    pass


async def _names(db: Database) -> set[str]:
    async with db.transaction(write=False) as connection:
        return set((await connection.execute(select(account_table.c.name))).scalars())


async def _add_account(connection: AsyncConnection, name: str) -> None:
    await connection.execute(
        insert(account_table).values(name=name, created_at=func.now(), balance_milli=0)
    )


async def _started(writes: BatchedWrites[str, T], job: str) -> asyncio.Future[T]:
    """``job`` submitted and its batch begun: what is submitted next waits for the next one."""
    submitted = asyncio.ensure_future(writes.submit(job))
    await asyncio.sleep(0)
    return submitted


def _writer(db: Database) -> BatchedWrites[str, AsyncConnection]:
    """Adds an account per job and answers the connection (the transaction) it wrote on; a
    name starting with ``refuse`` is written, then refused."""

    async def write(connection: AsyncConnection, name: str) -> AsyncConnection:
        await _add_account(connection, name)
        if name.startswith("refuse"):
            raise Refused(name)
        return connection

    return BatchedWrites(db, write)


async def test_writes_that_arrive_together_share_one_transaction(db: Database) -> None:
    writes = _writer(db)
    first = asyncio.ensure_future(writes.submit("a0"))
    await asyncio.sleep(0)  # a0's batch has started; the others queue behind it
    rest = await asyncio.gather(*(writes.submit(f"a{i}") for i in range(1, 6)))
    assert all(connection is rest[0] for connection in rest)
    assert await first is not rest[0]
    assert await _names(db) == {f"a{i}" for i in range(6)}


async def test_a_write_that_raises_undoes_only_itself(db: Database) -> None:
    writes = _writer(db)
    first = await _started(writes, "a")
    outcomes = await asyncio.gather(
        *(writes.submit(name) for name in ("b", "refuse-c", "d")), return_exceptions=True
    )
    await first
    assert isinstance(outcomes[1], Refused)
    assert outcomes[0] is outcomes[2]  # b and d shared the transaction that c's refusal left
    assert await _names(db) == {"a", "b", "d"}


async def test_a_statement_the_database_rejects_fails_that_write_alone(db: Database) -> None:
    writes = _writer(db)
    first = await _started(writes, "a")
    outcomes = await asyncio.gather(
        *(writes.submit(name) for name in ("b", "a", "c")), return_exceptions=True
    )
    await first
    assert isinstance(outcomes[1], Exception)  # the account name is unique
    assert outcomes[0] is outcomes[2]
    assert await _names(db) == {"a", "b", "c"}


async def test_a_write_cancelled_before_its_turn_is_not_written(db: Database) -> None:
    writes = _writer(db)
    first = await _started(writes, "a")
    waiting = asyncio.ensure_future(writes.submit("b"))
    await asyncio.sleep(0)
    waiting.cancel()
    await first
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert await _names(db) == {"a"}


async def test_a_write_cancelled_in_its_batch_is_still_seen_through(db: Database) -> None:
    """Cancelled once its batch started, the caller waits for the commit, then is cancelled:
    it never returns while its write may still commit."""
    writes = _writer(db)
    started = asyncio.ensure_future(writes.submit("a"))
    await asyncio.sleep(0)
    started.cancel()
    with pytest.raises(asyncio.CancelledError):
        await started
    assert await _names(db) == {"a"}


async def test_creates_in_one_batch_refuse_one_account_and_serve_the_other(
    db: Database, accounts: AccountRepo, new_task: NewTaskFactory
) -> None:
    store = store_of(db)
    rich = await accounts.grant((await accounts.ensure("rich")).id, 10_000, "test")
    poor = await accounts.ensure("poor")
    first = asyncio.ensure_future(store.create(new_task(rich.id)))
    await asyncio.sleep(0)
    made = await asyncio.gather(
        store.create(new_task(rich.id)),
        store.create(new_task(poor.id)),
        store.create(new_task(rich.id)),
        return_exceptions=True,
    )
    await first
    assert isinstance(made[1], QuotaExceeded)
    async with db.transaction(write=False) as connection:
        owners = list((await connection.execute(select(task_table.c.account_id))).scalars())
        balances = dict(
            (
                await connection.execute(select(account_table.c.id, account_table.c.balance_milli))
            ).all()
        )
    assert sorted(owners) == [rich.id] * 3
    assert balances == {rich.id: 7_000, poor.id: 0}


async def test_queue_positions_read_once_per_batch_match_those_read_one_by_one(
    db: Database, accounts: AccountRepo, new_task: NewTaskFactory
) -> None:
    store = store_of(db)
    a = await accounts.grant((await accounts.ensure("a")).id, 50_000, "test")
    b = await accounts.grant((await accounts.ensure("b")).id, 50_000, "test")
    first = asyncio.ensure_future(store.tasks.create(new_task(a.id, n=2), Limits()))
    await asyncio.sleep(0)
    owners = [a.id, b.id, a.id, a.id, b.id]
    batch = await asyncio.gather(
        *(
            store.tasks.create(new_task(owner, n=1 + i % 3), Limits())
            for i, owner in enumerate(owners)
        )
    )
    made = [await first, *batch]
    read = [await store.stats.queue_ahead(created.task) for created in made]
    assert [created.ahead for created in made] == read
    assert [ahead.tasks for ahead in read] == [0, 2, 1, 4, 5, 3]  # a, a, b, a, a, b in turns


async def test_a_batch_writes_in_lock_order_whatever_the_arrival(db: Database) -> None:
    """On PostgreSQL two nodes' batches then lock rows in the same order: no deadlock."""
    order: list[int] = []

    async def write(connection: AsyncConnection, key: int) -> int:
        order.append(key)
        return key

    writes: BatchedWrites[int, int] = BatchedWrites(db, write, lock_order=lambda key: key)
    first = asyncio.ensure_future(writes.submit(100))
    await asyncio.sleep(0)
    assert await asyncio.gather(*(writes.submit(key) for key in (3, 1, 2))) == [3, 1, 2]
    await first
    assert order == [100, 1, 2, 3]


async def test_a_batch_chosen_as_a_deadlock_victim_is_written_again(db: Database) -> None:
    tries: list[str] = []

    async def write(connection: AsyncConnection, name: str) -> str:
        tries.append(name)
        await _add_account(connection, name)
        if name == "b" and tries.count(name) <= 2:  # the victim twice over
            raise RuntimeError("statement failed") from DeadlockDetectedError("deadlock detected")
        return name

    writes = BatchedWrites(db, write)
    first = await _started(writes, "a")
    assert list(await asyncio.gather(writes.submit("b"), writes.submit("c"))) == ["b", "c"]
    await first
    assert tries == ["a", "b", "b", "b", "c"]  # b's batch (b, c) undone twice, then written
    assert await _names(db) == {"a", "b", "c"}


async def test_writes_still_queued_when_the_writer_stops_are_told_so(db: Database) -> None:
    writes = _writer(db)
    started = asyncio.ensure_future(writes.submit("a"))
    await asyncio.sleep(0)
    queued = asyncio.ensure_future(writes.submit("b"))
    await asyncio.sleep(0)
    drainer = next(task for task in asyncio.all_tasks() if task.get_name() == "batched-writes")
    drainer.cancel()
    with pytest.raises(DependencyUnavailable, match="stopping"):
        await queued
    with contextlib.suppress(asyncio.CancelledError):
        await started

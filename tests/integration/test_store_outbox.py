"""The outbox: claims are exclusive and counted, the schedule is 1/2/4 s, then failed."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from integration.callback_tasks import cancelled_with_callback, complete, running_with_callback
from integration.conftest import Store
from qwenedit.domain.task import ErrorCode
from qwenedit.store.accounts import AccountRepo
from qwenedit.store.database import Database
from qwenedit.store.outbox import AttemptOutcome, Delivery, OutboxRepo
from qwenedit.store.tasks import NewTask

FAILED_503 = AttemptOutcome(status_code=503, error=None, duration_ms=5)


def seconds(value: float) -> timedelta:
    return timedelta(seconds=value)


async def finished_with_callback(
    accounts: AccountRepo, store: Store, new_task: Callable[..., NewTask]
) -> tuple[str, int]:
    task = await cancelled_with_callback(accounts, store, new_task)
    return task.id, task.account_id


async def test_claims_are_exclusive_and_follow_the_schedule(
    db: Database, accounts: AccountRepo, store: Store, new_task: Callable[..., NewTask]
) -> None:
    task_id, owner = await finished_with_callback(accounts, store, new_task)
    repo = OutboxRepo(db)
    now = datetime.now(UTC)
    claims = await asyncio.gather(*(repo.claim(15.0, now=now) for _ in range(4)))
    [delivery] = [claim for claim in claims if claim is not None]
    assert (delivery.task_id, delivery.attempt, delivery.url) == (
        task_id,
        1,
        "https://hooks.example.com/x",
    )
    assert len(delivery.signing_secrets) == 1
    assert delivery.signing_secrets[0].startswith("whsec_")
    assert await repo.claim(15.0, now=now + seconds(14.9)) is None  # leased

    delays = []
    for attempt in range(1, 5):
        failed_at = now + seconds(0.25)
        status = await repo.record(delivery, FAILED_503, now=failed_at)
        history = await repo.history(task_id, owner)
        if attempt < 4:
            assert status == "pending"
            due = history[0]["next_attempt_at"]
            delays.append((due - failed_at).total_seconds())
            assert await repo.claim(15.0, now=due - seconds(0.001)) is None  # not due yet
            claimed = await repo.claim(15.0, now=due)
            assert claimed is not None and claimed.attempt == attempt + 1
            delivery, now = claimed, due
        else:
            assert status == "failed"
    assert delays == [1.0, 2.0, 4.0]
    assert await repo.claim(15.0, now=now + seconds(3600)) is None  # no 5th attempt
    [record] = await repo.history(task_id, owner)
    assert record["status"] == "failed"
    assert [attempt["status_code"] for attempt in record["attempts"]] == [503] * 4


async def test_success_ends_it_and_stale_records_change_nothing(
    db: Database, accounts: AccountRepo, store: Store, new_task: Callable[..., NewTask]
) -> None:
    task_id, owner = await finished_with_callback(accounts, store, new_task)
    repo = OutboxRepo(db)
    now = datetime.now(UTC)
    first = await repo.claim(0.0, now=now)  # a lease that runs out at once: its dispatcher "died"
    assert first is not None
    second = await repo.claim(15.0, now=now + seconds(0.01))
    assert second is not None and second.attempt == 2
    ok = AttemptOutcome(status_code=200, error=None, duration_ms=1)
    await repo.record(first, ok, now=now + seconds(0.02))
    [record] = await repo.history(task_id, owner)
    assert record["status"] == "pending"  # the stale attempt was logged but decided nothing
    assert await repo.record(second, ok, now=now + seconds(0.03)) == "delivered"
    [record] = await repo.history(task_id, owner)
    assert record["status"] == "delivered" and record["delivered_at"] is not None
    assert len(record["attempts"]) == 2


async def test_redeliver_queues_the_same_task_again(
    db: Database, accounts: AccountRepo, store: Store, new_task: Callable[..., NewTask]
) -> None:
    task_id, owner = await finished_with_callback(accounts, store, new_task)
    repo = OutboxRepo(db)
    first = await repo.claim(15.0, now=datetime.now(UTC))
    assert first is not None
    await repo.record(first, AttemptOutcome(200, None, 3), now=datetime.now(UTC))
    assert await repo.redeliver(task_id, owner + 1, max_redeliveries=5) is None  # another account
    assert await repo.redeliver(task_id, owner, max_redeliveries=5) is not None
    again = await repo.claim(15.0, now=datetime.now(UTC))
    assert again is not None
    assert (again.task, again.url, again.attempt) == (first.task, first.url, 1)
    assert again.id != first.id


class KeptHandoff:
    """A dispatcher that keeps what is handed to it."""

    lease_seconds = 15.0

    def __init__(self) -> None:
        self.sent: list[Delivery] = []

    def send(self, delivery: Delivery) -> None:
        self.sent.append(delivery)


@pytest.mark.parametrize("ending", ["complete", "fail"])
async def test_a_handed_off_callback_is_claimed_by_the_commit_that_ends_the_task(
    db: Database,
    accounts: AccountRepo,
    store: Store,
    new_task: Callable[..., NewTask],
    ending: str,
) -> None:
    task = await running_with_callback(accounts, store, new_task)
    handoff = KeptHandoff()
    before = datetime.now(UTC)
    if ending == "complete":
        ended = await complete(store, task, handoff=handoff)
    else:
        ended = await store.tasks.fail(
            task.id, "w1", 1, ErrorCode.SERVICE_ERROR, "broke", handoff=handoff
        )
    assert ended is not None
    [delivery] = handoff.sent
    assert (delivery.task, delivery.url, delivery.attempt) == (
        ended,
        "https://hooks.example.com/x",
        1,
    )
    assert len(delivery.signing_secrets) == 1
    assert delivery.signing_secrets[0].startswith("whsec_")
    [row] = await store.outbox.pending(task.id)
    assert (row["id"], row["attempts"]) == (delivery.id, 1)
    assert row["next_attempt_at"] >= before + seconds(15)

    repo = OutboxRepo(db)
    assert await repo.claim(15.0, now=before + seconds(14.9)) is None  # leased to the handoff
    # the process that had it died before recording: once the lease runs out, any dispatcher
    # claims it, and the lost attempt's late record decides nothing
    again = await repo.claim(15.0, now=datetime.now(UTC) + seconds(15.1))
    assert again is not None and (again.id, again.attempt) == (delivery.id, 2)
    ok = AttemptOutcome(status_code=200, error=None, duration_ms=1)
    assert await repo.record(delivery, ok, now=datetime.now(UTC) + seconds(16)) == "delivered"
    [record] = await repo.history(task.id, task.account_id)
    assert record["status"] == "pending"
    assert await repo.record(again, ok, now=datetime.now(UTC) + seconds(17)) == "delivered"
    [record] = await repo.history(task.id, task.account_id)
    assert record["status"] == "delivered"


async def test_nothing_is_handed_off_by_a_fenced_out_attempt(
    db: Database, accounts: AccountRepo, store: Store, new_task: Callable[..., NewTask]
) -> None:
    task = await running_with_callback(accounts, store, new_task)
    handoff = KeptHandoff()
    stale = await complete(store, task, worker="w2", handoff=handoff)
    assert stale is None
    assert handoff.sent == []
    assert await store.outbox.pending(task.id) == []


async def test_after_commit_runs_only_once_the_transaction_committed(db: Database) -> None:
    calls: list[str] = []

    class Undone(Exception):
        pass

    with pytest.raises(Undone):
        async with db.transaction() as connection:
            db.after_commit(connection, lambda: calls.append("rolled back"))
            raise Undone
    async with db.transaction() as connection:
        db.after_commit(connection, lambda: calls.append("committed"))
        assert calls == []
    assert calls == ["committed"]

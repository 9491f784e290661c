"""The queue: reserve, claim, fence, settle, reap, cancel (DESIGN §1, §3, §5, §8)."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, tzinfo

import pytest
from sqlalchemy import delete, select

from integration.conftest import Store, store_of
from qwenedit.domain.task import ErrorCode, TaskRecord, TaskStatus, new_task_id
from qwenedit.errors import (
    ActiveTaskLimitReached,
    CreateTooLate,
    IdempotencyConflict,
    QueueFull,
    QuotaExceeded,
    TaskAlreadyFinished,
    TaskNotFound,
)
from qwenedit.store.accounts import Account, AccountRepo
from qwenedit.store.database import Database
from qwenedit.store.queue import Reaped
from qwenedit.store.tables import accounts as account_table
from qwenedit.store.tables import tasks as task_table
from qwenedit.store.task_stats import QueueAhead
from qwenedit.store.tasks import CREATE_DEADLINE_SECONDS, IdempotencyKey, Limits, NewTask

NewTaskFactory = Callable[..., NewTask]
EXPIRED = -1.0
"""A lease that has already run out, so the reaper sees it at once."""


async def funded(accounts: AccountRepo, name: str = "acme", credits: int = 10) -> Account:
    account = await accounts.ensure(name)
    return await accounts.grant(account.id, credits * 1000, "test")


async def balance(accounts: AccountRepo, account: Account) -> int:
    """The balance, checked against the ledger."""
    current = await accounts.get_by_name(account.name)
    assert current is not None
    assert current.balance_milli == await accounts.ledger_sum(account.id)
    return current.balance_milli


async def claimed(store: Store, worker: str = "w1", lease: float = 60.0) -> TaskRecord:
    task = await store.queue.claim(worker, lease)
    assert task is not None
    return task


async def test_create_reserves_and_complete_charges_what_was_produced(
    accounts: AccountRepo, store: Store, new_task: NewTaskFactory
) -> None:
    acme = await funded(accounts, credits=5)
    new = new_task(acme.id, n=3, callback_url="https://hooks.example.com/done")
    created = await store.create(new)
    assert (created.status, created.attempt, created.progress) == (TaskStatus.PENDING, 0, 0)
    assert (created.reserved_milli, created.used_milli, created.user_group) == (
        3000,
        None,
        "default",
    )
    assert created.params == new.params
    assert created.created_at == new.created_at
    assert await balance(accounts, acme) == 2000

    task = await claimed(store)
    assert (task.id, task.status, task.attempt, task.worker_id) == (new.id, "processing", 1, "w1")
    assert task.lease_expires_at is not None and task.started_at is not None
    assert task.lease_expires_at > task.started_at
    done = await store.tasks.complete(
        task.id,
        "w1",
        1,
        result_keys=[f"{task.id}/1/0.png", f"{task.id}/1/1.png"],
        actual_prompt="a blue thing",
        engine_seconds=1.5,
    )
    assert done is not None
    assert (done.status, done.progress, done.used_milli) == (TaskStatus.COMPLETED, 100, 2000)
    assert done.result_keys == (f"{task.id}/1/0.png", f"{task.id}/1/1.png")
    assert (done.actual_prompt, done.engine_seconds) == ("a blue thing", 1.5)
    assert done.finished_at is not None and done.finished_at.tzinfo is UTC
    assert await balance(accounts, acme) == 3000  # 5 - 3 reserved + 1 refunded
    [callback] = await store.outbox.pending(task.id)
    assert callback["url"] == "https://hooks.example.com/done"
    assert (callback["task_id"], callback["status"]) == (task.id, "pending")  # body made at send
    assert await store.tasks.get(task.id, acme.id, retention_seconds=3600) == done
    assert await store.stats.recent_image_seconds() is not None


async def test_all_produced_means_no_refund_row(
    accounts: AccountRepo, store: Store, new_task: NewTaskFactory
) -> None:
    acme = await funded(accounts, credits=2)
    created = await store.create(new_task(acme.id, n=2))
    task = await claimed(store)
    done = await store.tasks.complete(
        task.id,
        "w1",
        1,
        result_keys=["a", "b"],
        actual_prompt=None,
        engine_seconds=0.1,
    )
    assert done is not None and done.used_milli == 2000
    assert await balance(accounts, acme) == 0
    assert await store.outbox.pending(created.id) == []  # no callback_url, no outbox row


async def test_fail_refunds_in_full(
    accounts: AccountRepo, store: Store, new_task: NewTaskFactory
) -> None:
    acme = await funded(accounts, credits=3)
    await store.create(new_task(acme.id, n=2, callback_url="https://h.example.com/"))
    task = await claimed(store)
    failed = await store.tasks.fail(
        task.id, "w1", 1, ErrorCode.IMAGE_PROCESSING_ERROR, "Image 1: not an image"
    )
    assert failed is not None
    assert (failed.status, failed.used_milli) == (TaskStatus.FAILED, 0)
    assert (failed.error_code, failed.error_message) == (
        "image_processing_error",
        "Image 1: not an image",
    )
    assert await balance(accounts, acme) == 3000
    [callback] = await store.outbox.pending(task.id)
    assert callback["task_id"] == task.id
    assert (
        await store.tasks.fail(task.id, "w1", 1, ErrorCode.SERVICE_ERROR, "again") is None
    )  # resolved once
    assert await balance(accounts, acme) == 3000


async def test_concurrent_creates_never_overdraw(
    accounts: AccountRepo, store: Store, new_task: NewTaskFactory
) -> None:
    acme = await funded(accounts, credits=2)
    news = [new_task(acme.id) for _ in range(3)]
    results = await asyncio.gather(*(store.create(new) for new in news), return_exceptions=True)
    accepted = [result for result in results if isinstance(result, TaskRecord)]
    refused = [result for result in results if isinstance(result, QuotaExceeded)]
    assert (len(accepted), len(refused)) == (2, 1), results
    assert (refused[0].needed_milli, refused[0].balance_milli) == (1000, 0)
    assert await balance(accounts, acme) == 0
    assert (await store.stats.counts_by_status())["pending"] == 2


async def test_concurrent_claimers_never_share_a_task(
    accounts: AccountRepo, store: Store, new_task: NewTaskFactory
) -> None:
    owners = [await funded(accounts, name, credits=10) for name in ("a", "b", "c")]
    for index in range(20):
        await store.create(new_task(owners[index % 3].id))

    async def claimer(worker: str) -> list[str]:
        got: list[str] = []
        while (task := await store.queue.claim(worker, 60)) is not None:
            assert task.worker_id == worker
            got.append(task.id)
        return got

    batches = await asyncio.gather(*(claimer(f"w{index}") for index in range(4)))
    claimed_ids = [task_id for batch in batches for task_id in batch]
    assert len(claimed_ids) == len(set(claimed_ids)) == 20
    assert await store.stats.counts_by_status() == {
        "pending": 0,
        "processing": 20,
        "completed": 0,
        "failed": 0,
    }


@pytest.mark.postgres
async def test_postgresql_claim_skips_a_locked_task_instead_of_waiting(
    pg_url: str, new_task: NewTaskFactory
) -> None:
    db = Database.connect(pg_url)
    try:
        accounts, store = AccountRepo(db), store_of(db)
        acme = await funded(accounts)
        first = await store.create(new_task(acme.id))
        second = await store.create(new_task(acme.id))
        async with db.transaction() as connection:  # another claimer holds the oldest row
            await connection.execute(
                select(task_table.c.id).where(task_table.c.id == first.id).with_for_update()
            )
            got = await asyncio.wait_for(store.queue.claim("w2", 60), 10)
        assert got is not None and got.id == second.id
    finally:
        await db.close()


async def test_claims_are_fair_across_accounts(
    accounts: AccountRepo, store: Store, new_task: NewTaskFactory
) -> None:
    a = await funded(accounts, "a")
    b = await funded(accounts, "b")
    a_tasks = [(await store.create(new_task(a.id))).id for _ in range(5)]
    b_task = (await store.create(new_task(b.id))).id
    order = [(await claimed(store)).id for _ in range(6)]
    assert order == [a_tasks[0], b_task, *a_tasks[1:]]
    assert await store.queue.claim("w1", 60) is None


async def test_fenced_out_writes_change_nothing(
    accounts: AccountRepo, store: Store, new_task: NewTaskFactory
) -> None:
    acme = await funded(accounts, credits=2)
    await store.create(new_task(acme.id, n=2, callback_url="https://h.example.com/"))
    task = await claimed(store)
    before = await store.tasks.get(task.id, acme.id, retention_seconds=3600)
    for worker, attempt in (("w2", 1), ("w1", 2), ("w1", 0)):
        assert not await store.queue.heartbeat(task.id, worker, attempt, 600)
        assert not await store.queue.report_progress(task.id, worker, attempt, 50)
        assert not await store.queue.release(task.id, worker, attempt)
        assert (
            await store.tasks.fail(task.id, worker, attempt, ErrorCode.SERVICE_ERROR, "x") is None
        )
        done = await store.tasks.complete(
            task.id,
            worker,
            attempt,
            result_keys=["x"],
            actual_prompt=None,
            engine_seconds=1.0,
        )
        assert done is None
    assert await store.tasks.get(task.id, acme.id, retention_seconds=3600) == before
    assert await balance(accounts, acme) == 0
    assert await store.outbox.pending(task.id) == []
    assert await store.queue.heartbeat(task.id, "w1", 1, 600)  # the holder still can


async def test_progress_never_decreases(
    accounts: AccountRepo, store: Store, new_task: NewTaskFactory
) -> None:
    acme = await funded(accounts)
    await store.create(new_task(acme.id))
    task = await claimed(store)
    seen = []
    for value in (10, 40, 20, 40, 70, 5):
        assert await store.queue.report_progress(task.id, "w1", 1, value)
        current = await store.tasks.get(task.id, acme.id, retention_seconds=3600)
        assert current is not None
        seen.append(current.progress)
    assert seen == [10, 40, 40, 40, 70, 70]


async def test_heartbeat_extends_the_lease(
    accounts: AccountRepo, store: Store, new_task: NewTaskFactory
) -> None:
    acme = await funded(accounts)
    await store.create(new_task(acme.id))
    task = await claimed(store, lease=EXPIRED)
    assert await store.queue.heartbeat(task.id, "w1", 1, 600)
    assert await store.queue.reap(max_attempts=3) == Reaped([], [])
    current = await store.tasks.get(task.id, acme.id, retention_seconds=3600)
    assert current is not None and current.lease_expires_at is not None
    assert current.lease_expires_at > datetime.now(UTC) + timedelta(seconds=500)


async def test_reap_requeues_then_fails_past_the_attempt_limit(
    accounts: AccountRepo, store: Store, new_task: NewTaskFactory
) -> None:
    acme = await funded(accounts, credits=2)
    created = await store.create(new_task(acme.id, n=2, callback_url="https://h.example.com/"))
    first = await claimed(store, "w1", lease=EXPIRED)
    assert await store.queue.report_progress(first.id, "w1", 1, 30)

    assert await store.queue.reap(max_attempts=2) == Reaped([created.id], [])
    requeued = await store.tasks.get(created.id, acme.id, retention_seconds=3600)
    assert requeued is not None
    assert (requeued.status, requeued.attempt, requeued.progress) == (TaskStatus.PENDING, 1, 30)
    assert (requeued.worker_id, requeued.lease_expires_at) == (None, None)
    assert not await store.queue.heartbeat(first.id, "w1", 1, 60)  # the lost worker is fenced out

    second = await claimed(store, "w2", lease=EXPIRED)
    assert (second.id, second.attempt, second.started_at) == (created.id, 2, first.started_at)
    reaped = await store.queue.reap(max_attempts=2)
    assert reaped.requeued == []
    [ended] = reaped.failed
    assert (ended.status, ended.error_code, ended.used_milli) == ("failed", "service_error", 0)
    assert ended.error_message == "The task failed after 2 attempts"
    assert await balance(accounts, acme) == 2000
    assert len(await store.outbox.pending(created.id)) == 1
    assert await store.queue.reap(max_attempts=2) == Reaped([], [])


async def test_seconds_until_expiry_is_the_earliest_running_lease(
    accounts: AccountRepo, store: Store, new_task: NewTaskFactory
) -> None:
    acme = await funded(accounts)
    assert await store.queue.seconds_until_expiry() is None  # nothing is running
    for _ in range(3):
        await store.create(new_task(acme.id))
    await claimed(store, "w1", lease=600)
    await claimed(store, "w2", lease=60)
    soonest = await store.queue.seconds_until_expiry()
    assert soonest is not None and 50 < soonest <= 60
    await claimed(store, "w3", lease=EXPIRED)
    assert await store.queue.seconds_until_expiry() == 0


async def test_release_hands_the_task_back_without_counting(
    accounts: AccountRepo, store: Store, new_task: NewTaskFactory
) -> None:
    acme = await funded(accounts)
    await store.create(new_task(acme.id))
    task = await claimed(store)
    assert await store.queue.release(task.id, "w1", 1)
    again = await claimed(store, "w2")
    assert (again.id, again.attempt, again.worker_id) == (task.id, 1, "w2")


async def test_cancel_pending_and_processing(
    accounts: AccountRepo, store: Store, new_task: NewTaskFactory
) -> None:
    acme = await funded(accounts, credits=5)
    other = await funded(accounts, "other")
    first = await store.create(new_task(acme.id, n=2))
    second = await store.create(new_task(acme.id, n=3, callback_url="https://h.example.com/"))
    assert await balance(accounts, acme) == 0

    running = await claimed(store)
    assert running.id == first.id
    with pytest.raises(TaskNotFound):
        await store.tasks.cancel(first.id, other.id)
    for task in (second, running):  # pending, then processing
        cancelled = await store.tasks.cancel(task.id, acme.id)
        assert (cancelled.status, cancelled.error_code) == ("failed", "request_cancelled")
        assert cancelled.used_milli == 0
    assert await balance(accounts, acme) == 5000
    assert len(await store.outbox.pending(second.id)) == 1

    done = await store.tasks.complete(
        running.id,
        "w1",
        1,
        result_keys=["x"],
        actual_prompt=None,
        engine_seconds=1.0,
    )
    assert done is None  # the worker finishing late changes nothing
    assert not await store.queue.report_progress(running.id, "w1", 1, 90)
    assert await balance(accounts, acme) == 5000
    with pytest.raises(TaskAlreadyFinished):
        await store.tasks.cancel(running.id, acme.id)
    with pytest.raises(TaskNotFound):
        await store.tasks.cancel("task-unified-1-zzzzzzzz", acme.id)


async def test_a_task_is_invisible_to_other_accounts_and_after_retention(
    accounts: AccountRepo, store: Store, new_task: NewTaskFactory
) -> None:
    a = await funded(accounts, "a")
    b = await funded(accounts, "b")
    created = await store.create(new_task(a.id))
    with pytest.raises(TaskNotFound):
        await store.tasks.get(created.id, b.id, retention_seconds=3600)
    assert await store.tasks.get(created.id, a.id, retention_seconds=3600) == created
    assert await store.tasks.get(created.id, a.id, retention_seconds=0) == created  # still running
    await store.tasks.cancel(created.id, a.id)
    with pytest.raises(TaskNotFound):
        await store.tasks.get(created.id, a.id, retention_seconds=0)


async def test_limits_refuse_without_moving_money(
    accounts: AccountRepo, store: Store, new_task: NewTaskFactory
) -> None:
    a = await funded(accounts, "a")
    b = await funded(accounts, "b")
    await store.create(new_task(a.id), Limits(2, None))
    await store.create(new_task(a.id), Limits(2, None))
    with pytest.raises(ActiveTaskLimitReached) as limited:
        await store.create(new_task(a.id), Limits(2, None))
    assert limited.value.limit == 2
    with pytest.raises(QueueFull) as full:
        await store.create(new_task(b.id), Limits(2, 2))
    assert full.value.limit == 2
    assert await balance(accounts, a) == 8000
    assert await balance(accounts, b) == 10000
    running = await claimed(store)
    await store.tasks.fail(running.id, "w1", 1, ErrorCode.SERVICE_ERROR, "x")
    await store.create(new_task(a.id), Limits(2, 2))


async def test_queue_positions_predict_the_fair_claim_order(
    accounts: AccountRepo, store: Store, new_task: NewTaskFactory
) -> None:
    heavy, light, late = [await funded(accounts, name) for name in ("heavy", "light", "late")]
    made = [await store.create(new_task(heavy.id, n=2)) for _ in range(3)]
    made.append(await store.create(new_task(light.id)))
    await claimed(store)  # heavy's first: heavy is now served last
    made.append(await store.create(new_task(late.id)))
    made.append(await store.create(new_task(heavy.id)))
    pending = made[1:]
    ahead = {task.id: await store.stats.queue_ahead(task) for task in pending}
    order = [(await claimed(store, f"w{i}")).id for i in range(len(pending))]
    assert [ahead[task_id].tasks for task_id in order] == list(range(len(pending)))
    assert ahead[made[3].id] == QueueAhead(tasks=0, images=0)  # light: never served, oldest
    assert ahead[made[4].id] == QueueAhead(tasks=1, images=1)  # late: after light only
    assert ahead[made[2].id] == QueueAhead(tasks=3, images=4)  # light, late, heavy's 2nd


async def test_queue_ahead_counts_older_pending_tasks_and_their_images(
    accounts: AccountRepo, store: Store, new_task: NewTaskFactory
) -> None:
    acme = await funded(accounts)
    made = [await store.create(new_task(acme.id, n=n)) for n in (1, 2, 3)]
    ahead = [await store.stats.queue_ahead(task) for task in made]
    assert [(a.tasks, a.images) for a in ahead] == [(0, 0), (1, 1), (2, 3)]
    await claimed(store)
    assert await store.stats.queue_ahead(made[2]) == QueueAhead(tasks=1, images=2)
    assert await store.stats.recent_image_seconds() is None


async def test_result_expiry_and_purge_keep_the_ledger(
    accounts: AccountRepo, store: Store, new_task: NewTaskFactory
) -> None:
    acme = await funded(accounts, credits=3)
    await store.create(new_task(acme.id, n=2, callback_url="https://h.example.com/"))
    pending = await store.create(new_task(acme.id))
    task = await claimed(store)
    done = await store.tasks.complete(
        task.id,
        "w1",
        1,
        result_keys=["k0"],
        actual_prompt=None,
        engine_seconds=1.0,
    )
    assert done is not None and done.finished_at is not None
    now = datetime.now(UTC)
    assert await store.retention.expired_results(now, 3600) == []
    later = now + timedelta(hours=2)
    assert [record.id for record in await store.retention.expired_results(later, 3600)] == [task.id]
    await store.retention.clear_results(task.id)
    assert await store.retention.expired_results(later, 3600) == []
    cleared = await store.tasks.get(task.id, acme.id, retention_seconds=3600)
    assert cleared is not None and cleared.result_keys == ()

    assert await store.retention.past_retention(now, 3600) == []
    assert await store.retention.past_retention(later, 3600) == [task.id]  # not the pending one
    assert await store.retention.purge([task.id]) == 1
    with pytest.raises(TaskNotFound):
        await store.tasks.get(task.id, acme.id, retention_seconds=10**9)
    assert await store.tasks.get(pending.id, acme.id, retention_seconds=3600) == pending
    assert await store.outbox.pending(task.id) == []
    assert await balance(accounts, acme) == 1000


def _key(key: str = "retry-1", request_hash: str = "a" * 64) -> IdempotencyKey:
    return IdempotencyKey(key=key, request_hash=request_hash, window_seconds=3600)


async def test_idempotent_create_returns_the_first_task_and_reserves_once(
    accounts: AccountRepo, store: Store, new_task: NewTaskFactory
) -> None:
    acme = await funded(accounts, credits=5)
    first = await store.create(new_task(acme.id, n=2), idempotency=_key())
    again = await store.create(new_task(acme.id, n=2), idempotency=_key())
    assert again == first
    assert await balance(accounts, acme) == 3000
    with pytest.raises(IdempotencyConflict):
        await store.create(new_task(acme.id, n=2), idempotency=_key(request_hash="b" * 64))
    other = await store.create(new_task(acme.id), idempotency=_key("retry-2"))
    assert other.id != first.id
    bob = await funded(accounts, "bob", credits=1)
    bobs = await store.create(new_task(bob.id), idempotency=_key())
    assert bobs.id != first.id  # keys are per account
    assert await balance(accounts, acme) == 2000


async def test_concurrent_idempotent_creates_make_one_task(
    accounts: AccountRepo, store: Store, new_task: NewTaskFactory
) -> None:
    acme = await funded(accounts, credits=5)
    made = await asyncio.gather(
        *(store.create(new_task(acme.id), idempotency=_key()) for _ in range(4))
    )
    assert len({task.id for task in made}) == 1
    assert await balance(accounts, acme) == 4000


async def test_an_idempotency_key_past_its_window_makes_a_new_task(
    accounts: AccountRepo, store: Store, new_task: NewTaskFactory
) -> None:
    acme = await funded(accounts, credits=5)
    old = dataclasses.replace(new_task(acme.id), created_at=datetime.now(UTC) - timedelta(hours=2))
    first = await store.create(old, idempotency=_key())
    later = await store.create(new_task(acme.id), idempotency=_key())
    assert later.id != first.id
    assert await balance(accounts, acme) == 3000


class _ClockAhead(datetime):
    """``datetime`` of a process whose clock runs ten minutes ahead."""

    @classmethod
    def now(cls, tz: tzinfo | None = None) -> _ClockAhead:
        real = datetime.now(tz) + timedelta(minutes=10)
        return cls.fromtimestamp(real.timestamp(), tz)


@pytest.mark.postgres
async def test_leases_are_judged_by_the_database_clock(
    pg_url: str, new_task: NewTaskFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reaper whose own clock runs ahead requeues nothing: the lease is still running by
    the database's clock, which every node shares."""
    db = Database.connect(pg_url)
    try:
        accounts, store = AccountRepo(db), store_of(db)
        acme = await funded(accounts)
        await store.create(new_task(acme.id))
        task = await claimed(store, lease=60)
        for module in ("qwenedit.store.queue", "qwenedit.store.database"):
            monkeypatch.setattr(f"{module}.datetime", _ClockAhead)
        assert await store.queue.reap(max_attempts=3) == Reaped([], [])
        assert await store.queue.heartbeat(task.id, "w1", 1, 60)
        current = await store.tasks.get(task.id, acme.id, retention_seconds=3600)
        assert current.lease_expires_at is not None
        assert current.lease_expires_at < datetime.now(UTC) + timedelta(seconds=61)
    finally:
        await db.close()


async def _pending_counts(db: Database) -> dict[int, tuple[int, int]]:
    """Each account's kept counts beside the ones counted from the tasks, which must agree."""
    async with db.transaction(write=False) as connection:
        kept = {
            row.id: (int(row.pending_tasks), int(row.pending_images))
            for row in await connection.execute(select(account_table))
        }
        rows = await connection.execute(
            select(
                task_table.c.account_id, task_table.c.reserved_milli, task_table.c.price_milli
            ).where(task_table.c.status == TaskStatus.PENDING.value)
        )
        counted = dict.fromkeys(kept, (0, 0))
        for row in rows:
            tasks_, images = counted[row.account_id]
            counted[row.account_id] = (tasks_ + 1, images + row.reserved_milli // row.price_milli)
    assert kept == counted
    return kept


async def test_pending_counts_follow_every_change_of_a_task(
    db: Database, accounts: AccountRepo, store: Store, new_task: NewTaskFactory
) -> None:
    a, b = await funded(accounts, "a", 50), await funded(accounts, "b", 50)
    made = [await store.create(new_task(a.id, n=n)) for n in (1, 2, 3, 4)]
    made.append(await store.create(new_task(b.id, n=2)))
    assert (await _pending_counts(db))[a.id] == (4, 10)
    first = await claimed(store, "w1")  # a's oldest, n=1
    assert (await _pending_counts(db))[a.id] == (3, 9)
    assert await store.queue.release(first.id, "w1", first.attempt)
    assert (await _pending_counts(db))[a.id] == (4, 10)
    await store.tasks.cancel(made[1].id, a.id)  # pending, n=2
    assert (await _pending_counts(db))[a.id] == (3, 8)
    running = await claimed(store, "w2")  # b has never been served: b's task
    assert running.account_id == b.id and (await _pending_counts(db))[b.id] == (0, 0)
    await store.tasks.cancel(running.id, b.id)  # processing: the counts do not move
    assert (await _pending_counts(db))[b.id] == (0, 0)
    expiring = [await claimed(store, f"x{i}", lease=0.001) for i in range(2)]
    await asyncio.sleep(0.05)
    reaped = await store.queue.reap(max_attempts=2)
    assert sorted(reaped.requeued) == sorted(task.id for task in expiring)
    assert (await _pending_counts(db))[a.id] == (3, 8)
    done = await claimed(store, "w3")
    await store.tasks.complete(
        done.id, "w3", done.attempt, result_keys=["k"], actual_prompt=None, engine_seconds=0.1
    )
    assert (await _pending_counts(db))[a.id] == (2, 7)
    async with db.transaction() as connection:  # any other way a row leaves is counted too
        await connection.execute(delete(task_table).where(task_table.c.id == made[3].id))
    assert (await _pending_counts(db))[a.id] == (1, 3)


async def test_the_fence_is_read_without_a_write(
    accounts: AccountRepo, store: Store, new_task: NewTaskFactory
) -> None:
    acme = await funded(accounts)
    await store.create(new_task(acme.id))
    running = await claimed(store, "w1")
    assert await store.queue.holds(running.id, "w1", running.attempt)
    assert not await store.queue.holds(running.id, "w2", running.attempt)
    assert not await store.queue.holds(running.id, "w1", running.attempt + 1)
    await store.tasks.cancel(running.id, acme.id)
    assert not await store.queue.holds(running.id, "w1", running.attempt)


async def test_a_create_that_reaches_its_commit_too_late_is_refused(
    accounts: AccountRepo, store: Store, new_task: NewTaskFactory
) -> None:
    """A create commits within ``CREATE_DEADLINE_SECONDS`` of making its id, or not at all: the
    sweep of orphaned inputs counts on it. Nothing is reserved."""
    acme = await funded(accounts, credits=5)
    new = new_task(acme.id)
    stalled = dataclasses.replace(
        new, id=new_task_id(int(time.time() - CREATE_DEADLINE_SECONDS - 1))
    )
    with pytest.raises(CreateTooLate):
        await store.create(stalled)
    assert await balance(accounts, acme) == 5000
    assert (await store.create(new)).status is TaskStatus.PENDING

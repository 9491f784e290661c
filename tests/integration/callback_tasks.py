"""Tasks with a callback, in the states the outbox and dispatcher tests start from."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from integration.conftest import Store
from qwenedit.delivery.dispatcher import Dispatcher, Wakeups
from qwenedit.domain.task import TaskRecord
from qwenedit.resilience import Outages, Retry
from qwenedit.store.accounts import AccountRepo
from qwenedit.store.outbox import Handoff, OutboxRepo
from qwenedit.store.tasks import NewTask

HOOK = "https://hooks.example.com/x"
WORKER = "w1"


async def running_with_callback(
    accounts: AccountRepo, store: Store, new_task: Callable[..., NewTask]
) -> TaskRecord:
    """A funded account's task with a callback, claimed by ``WORKER`` (attempt 1)."""
    account = await accounts.ensure("acme")
    await accounts.grant(account.id, 5000, "test")
    await store.create(new_task(account.id, callback_url=HOOK))
    task = await store.queue.claim(WORKER, 60.0)
    assert task is not None
    return task


async def cancelled_with_callback(
    accounts: AccountRepo, store: Store, new_task: Callable[..., NewTask]
) -> TaskRecord:
    """A task with a callback, cancelled while pending: its callback is queued, due now."""
    account = await accounts.ensure("acme")
    await accounts.grant(account.id, 5000, "test")
    created = await store.create(new_task(account.id, callback_url=HOOK))
    return await store.tasks.cancel(created.id, account.id)


async def complete(
    store: Store, task: TaskRecord, *, worker: str = WORKER, handoff: Handoff | None = None
) -> TaskRecord | None:
    """``worker`` completes ``task`` (attempt 1) with one image."""
    return await store.tasks.complete(
        task.id,
        worker,
        1,
        result_keys=["k"],
        actual_prompt=None,
        engine_seconds=0.1,
        handoff=handoff,
    )


async def settled_delivery(
    outbox: OutboxRepo, task: TaskRecord, *, timeout: float = 10
) -> dict[str, Any]:
    """The task's only delivery once it is no longer pending (``timeout`` seconds at most)."""
    deadline = time.monotonic() + timeout
    while True:
        [delivery] = await outbox.history(task.id, task.account_id)
        if delivery["status"] != "pending":
            return delivery
        assert time.monotonic() < deadline, f"still pending: {delivery}"
        await asyncio.sleep(0.02)


@asynccontextmanager
async def dispatching(
    dispatcher: Dispatcher, wakeups: Wakeups | None = None
) -> AsyncIterator[asyncio.Event]:
    """``dispatcher`` running until the block ends or the stop it yields is set; on leaving,
    it has stopped."""
    stop = asyncio.Event()
    running = asyncio.create_task(
        dispatcher.run(stop, Retry("test dispatcher", Outages()), wakeups)
    )
    await asyncio.sleep(0.05)  # its first claim finds nothing due
    try:
        yield stop
    finally:
        stop.set()
        await running

"""The callback dispatcher records every attempt, whatever fails in it, so the schedule runs
out instead of retrying one row for ever (issue 10)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import update

from integration.callback_tasks import (
    cancelled_with_callback,
    complete,
    dispatching,
    running_with_callback,
    settled_delivery,
)
from integration.conftest import Store
from qwenedit.delivery.dispatcher import (
    MAX_IN_FLIGHT,
    UNEXPECTED_ERROR,
    CallbackSender,
    Dispatcher,
)
from qwenedit.domain.task import TaskRecord
from qwenedit.domain.webhooks import MAX_ATTEMPTS
from qwenedit.metrics import Metrics
from qwenedit.resilience import Outages, Retry
from qwenedit.store.accounts import AccountRepo
from qwenedit.store.database import Database
from qwenedit.store.outbox import OutboxRepo
from qwenedit.store.tables import outbox as outbox_table
from qwenedit.store.tasks import NewTask
from support.app import make_settings, running_app
from support.engine import SteppingEngine
from support.http_server import scripted_server
from support.images import data_uri, png_bytes


class BrokenSender:
    def __init__(self) -> None:
        self.calls = 0

    async def post(self, url: str, body: bytes, headers: dict[str, str], *, deadline: float) -> int:
        self.calls += 1
        raise RuntimeError("a bug, not a refusal")


def render(task: TaskRecord) -> bytes:
    return b"{}"


def hourly(outbox: OutboxRepo, sender: CallbackSender) -> Dispatcher:
    """A dispatcher that polls once an hour and hears no wakeups: what it sends soon, it was
    handed or scheduled itself."""
    return Dispatcher(outbox, sender, render, Metrics(), poll_seconds=3600)


def broken_render(task: TaskRecord) -> bytes:
    raise KeyError("missing field")


@pytest.mark.parametrize("broken", ["sender", "body"])
async def test_any_exception_is_a_recorded_failed_attempt(
    db: Database,
    accounts: AccountRepo,
    store: Store,
    new_task: Callable[..., NewTask],
    broken: str,
) -> None:
    created = await cancelled_with_callback(accounts, store, new_task)
    outbox = OutboxRepo(db)
    sender = BrokenSender()
    dispatcher = Dispatcher(
        outbox,
        sender,
        broken_render if broken == "body" else render,
        Metrics(),
        poll_seconds=0.05,
    )
    stop = asyncio.Event()
    running = asyncio.create_task(dispatcher.run(stop, Retry("test dispatcher", Outages())))
    deadline = time.monotonic() + 20
    try:
        while True:
            [delivery] = await outbox.history(created.id, created.account_id)
            if delivery["status"] != "pending":
                break
            assert time.monotonic() < deadline, f"attempts were not recorded: {delivery}"
            async with db.transaction() as connection:  # skip the 1-2-4 s waits
                await connection.execute(
                    update(outbox_table)
                    .where(outbox_table.c.attempts == len(delivery["attempts"]))
                    .values(next_attempt_at=datetime.now(UTC))
                )
            await asyncio.sleep(0.05)
    finally:
        stop.set()
        with contextlib.suppress(asyncio.CancelledError):
            await running
    assert delivery["status"] == "failed"
    assert len(delivery["attempts"]) == MAX_ATTEMPTS
    assert all(a["error"] == UNEXPECTED_ERROR for a in delivery["attempts"])
    assert all(a["status_code"] is None for a in delivery["attempts"])
    assert sender.calls == (MAX_ATTEMPTS if broken == "sender" else 0)


class OkSender:
    def __init__(self) -> None:
        self.posted: list[str] = []

    async def post(self, url: str, body: bytes, headers: dict[str, str], *, deadline: float) -> int:
        self.posted.append(headers["webhook-id"])
        return 200


async def test_a_callback_handed_off_at_commit_is_sent_without_a_claim(
    db: Database, accounts: AccountRepo, store: Store, new_task: Callable[..., NewTask]
) -> None:
    task = await running_with_callback(accounts, store, new_task)
    outbox = OutboxRepo(db)
    sender = OkSender()
    dispatcher = hourly(outbox, sender)  # only the handoff can send it soon
    async with dispatcher.handoff() as handoff:
        assert handoff is None  # not running yet: the outbox's claim sends it
    async with dispatching(dispatcher):
        async with dispatcher.handoff() as handoff:
            assert handoff is not None
            await complete(store, task, handoff=handoff)
        delivery = await settled_delivery(outbox, task)
    assert delivery["status"] == "delivered"
    assert len(delivery["attempts"]) == 1
    assert sender.posted == [f"msg_{delivery['id']}"]


async def test_handoff_slots_are_bounded_and_freed_when_unused(db: Database) -> None:
    dispatcher = hourly(OutboxRepo(db), OkSender())
    async with dispatching(dispatcher):
        async with contextlib.AsyncExitStack() as taken:
            slots = [await taken.enter_async_context(dispatcher.handoff()) for _ in range(40)]
            assert all(slot is not None for slot in slots[:MAX_IN_FLIGHT])
            assert all(slot is None for slot in slots[MAX_IN_FLIGHT:])  # the rest are claimed
        async with dispatcher.handoff() as again:
            assert again is not None  # none was sent through: all were freed


class FailsOnce:
    """Answers 503 to the first attempt, 200 to the next ones."""

    def __init__(self) -> None:
        self.posted: list[float] = []

    async def post(self, url: str, body: bytes, headers: dict[str, str], *, deadline: float) -> int:
        self.posted.append(time.monotonic())
        return 503 if len(self.posted) == 1 else 200


async def test_a_retry_is_sent_when_due_without_waiting_for_the_poll(
    db: Database, accounts: AccountRepo, store: Store, new_task: Callable[..., NewTask]
) -> None:
    """Nothing notifies a dispatcher of the retry it scheduled itself (PostgreSQL hears no
    commit of its own; this one has no wakeups at all): it looks again when the retry is due,
    not at its hourly poll nor when the attempt's lease would have run out."""
    created = await cancelled_with_callback(accounts, store, new_task)
    outbox = OutboxRepo(db)
    sender = FailsOnce()
    dispatcher = hourly(outbox, sender)
    async with dispatching(dispatcher):
        # within 10 s: the lease of the failed attempt runs for 15 s
        delivery = await settled_delivery(outbox, created, timeout=10)
    assert delivery["status"] == "delivered"
    assert [attempt["status_code"] for attempt in delivery["attempts"]] == [503, 200]
    assert sender.posted[1] - sender.posted[0] >= 1.0  # the schedule's first delay


async def test_a_stopped_dispatcher_leaves_a_late_handoff_to_the_outbox(
    db: Database, accounts: AccountRepo, store: Store, new_task: Callable[..., NewTask]
) -> None:
    task = await running_with_callback(accounts, store, new_task)
    outbox = OutboxRepo(db)
    sender = OkSender()
    dispatcher = hourly(outbox, sender)
    stop = asyncio.Event()
    running = asyncio.create_task(dispatcher.run(stop, Retry("test dispatcher", Outages())))
    await asyncio.sleep(0.05)
    async with dispatcher.handoff() as handoff:
        assert handoff is not None
        stop.set()
        await running  # stopped, and done waiting for its sends, while the worker holds a slot
        await complete(store, task, handoff=handoff)
    await asyncio.sleep(0.1)
    assert sender.posted == []  # nothing sent by a dispatcher that stopped
    [row] = await outbox.pending(task.id)
    assert row["attempts"] == 1  # claimed: any dispatcher sends it once the lease runs out
    again = await outbox.claim(15.0, now=datetime.now(UTC) + timedelta(seconds=15.1))
    assert again is not None and again.id == row["id"]


async def test_callbacks_of_tasks_ending_during_shutdown_are_sent(
    db_url: str, tmp_path: Path
) -> None:
    """The dispatcher stops after the workers: a task that finishes within the shutdown grace
    has its callback sent before the node stops."""
    engine = SteppingEngine(steps=4, hold_at=2)
    settings = make_settings(db_url, tmp_path, allow_insecure_callbacks=True)
    with scripted_server() as receiver:
        async with running_app(settings, engine) as app:
            key = await app.new_key("acme", credits=5)
            body = {
                "model": "qwen-image-edit-plus",
                "prompt": "make it blue",
                "image_urls": [data_uri(png_bytes(400, 400))],
                "callback_url": receiver.url("hook"),
            }
            created = (await app.create(key, body)).json()
            assert await asyncio.to_thread(engine.holding.wait, 30), created
            # the engine finishes shortly after the node is asked to stop (grace: 2 s)
            asyncio.get_running_loop().call_later(0.3, engine.release.set)
        [request] = receiver.requests_for("hook")
    sent = json.loads(request.body)
    assert (sent["id"], sent["status"]) == (created["id"], "completed")


class Nudges:
    """Wakeups the test gives by hand."""

    def __init__(self) -> None:
        self.event = asyncio.Event()

    async def wait(self, timeout: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.event.wait(), timeout)
        self.event.clear()


async def test_a_dispatcher_told_to_stop_while_its_slots_are_full_claims_nothing_more(
    db: Database, accounts: AccountRepo, store: Store, new_task: Callable[..., NewTask]
) -> None:
    outbox = OutboxRepo(db)
    sender = OkSender()
    dispatcher = hourly(outbox, sender)
    nudges = Nudges()
    async with dispatching(dispatcher, nudges) as stop, contextlib.AsyncExitStack() as taken:
        for _ in range(MAX_IN_FLIGHT):
            assert await taken.enter_async_context(dispatcher.handoff()) is not None
        nudges.event.set()  # it looks again, and waits for a slot
        await asyncio.sleep(0.05)
        created = await cancelled_with_callback(accounts, store, new_task)  # due now
        stop.set()
        # a slot came free after the stop; leaving the block waits for the dispatcher to end
    [row] = await outbox.pending(created.id)
    assert row["attempts"] == 0  # not claimed: left for the next dispatcher
    assert sender.posted == []

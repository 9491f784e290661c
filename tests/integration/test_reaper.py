"""The reaper looks when the earliest running lease runs out, not on a fixed poll: a lost task
is requeued once its lease has run out, whether the reaper saw it running or it was claimed
while the reaper slept."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from qwenedit.domain.task import TaskStatus
from support.app import RunningApp, make_settings, running_app
from support.images import data_uri, png_bytes

EDIT = {"prompt": "make it blue", "image_urls": [data_uri(png_bytes(400, 400))]}


async def pending_task(app: RunningApp) -> str:
    key = await app.new_key("acme")
    task = (await app.create(key, EDIT)).json()
    assert task["status"] == "pending", task
    return str(task["id"])


async def claim_and_vanish(app: RunningApp, task_id: str, lease_seconds: float) -> None:
    claimed = await app.runtime.queue.claim("vanished-worker", lease_seconds)
    assert claimed is not None and claimed.id == task_id


async def requeued(app: RunningApp, task_id: str, timeout: float = 30) -> None:
    """Wait until the task is pending again, its second attempt to come (the API shows such a
    task as processing)."""
    account = await app.runtime.accounts.get_by_name("acme")
    assert account is not None
    deadline = time.monotonic() + timeout
    while True:
        task = await app.runtime.tasks.get(task_id, account.id, retention_seconds=3600)
        if task.status is TaskStatus.PENDING and task.attempt == 1:
            return
        assert time.monotonic() < deadline, f"never requeued: {task}"
        await asyncio.sleep(0.05)


async def test_a_lease_seen_running_is_reaped_when_it_runs_out(db_url: str, tmp_path: Path) -> None:
    """The node's own lease is long: only the running lease's end can wake the reaper."""
    settings = make_settings(
        db_url, tmp_path, lease_seconds=600, reaper_seconds=0.1, retention_sweep_seconds=600
    )
    async with running_app(settings, housekeeping=False) as app:
        task_id = await pending_task(app)
        await claim_and_vanish(app, task_id, lease_seconds=1.5)
    async with running_app(settings) as app:  # the reaper's first pass sees it running
        await requeued(app, task_id)


async def test_a_lease_taken_while_the_reaper_slept_is_reaped(db_url: str, tmp_path: Path) -> None:
    settings = make_settings(
        db_url, tmp_path, lease_seconds=1.5, reaper_seconds=0.1, retention_sweep_seconds=600
    )
    async with running_app(settings) as app:  # nothing runs: the reaper sleeps a lease
        task_id = await pending_task(app)
        await claim_and_vanish(app, task_id, settings.lease_seconds)
        await requeued(app, task_id)

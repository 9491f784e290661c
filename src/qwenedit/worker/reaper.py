"""The reaper: requeues tasks whose worker vanished, ends those past the attempt limit, and
deletes results, uploads and tasks that outlived their retention."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from datetime import UTC, datetime

from qwenedit.domain.task import ErrorCode
from qwenedit.errors import DependencyUnavailable
from qwenedit.logs import task_fields
from qwenedit.resilience import Retry, describe, is_transient
from qwenedit.runtime import Runtime
from qwenedit.setting_groups import QueueSettings

log = logging.getLogger(__name__)


async def reap_once(runtime: Runtime) -> float | None:
    """Requeue or end the tasks whose lease ran out; how long until the earliest lease still
    running runs out (``None``: no task is running)."""
    settings = runtime.settings
    reaped = await runtime.queue.reap(max_attempts=settings.max_attempts)
    for task_id in reaped.requeued:
        runtime.metrics.inc("qwenedit_tasks_requeued_total")
        log.warning(
            "task %s requeued: its worker's lease expired",
            task_id,
            extra={"task_id": task_id, "status": "pending"},
        )
    for task in reaped.failed:
        runtime.metrics.inc("qwenedit_tasks_finished_total", outcome=ErrorCode.SERVICE_ERROR)
        log.warning(
            "task %s failed: lease expired on its last attempt (%d)",
            task.id,
            task.attempt,
            extra=task_fields(task, status="failed", code=task.error_code),
        )
    return await runtime.queue.seconds_until_expiry()


def next_lease_pass(expiry_in: float | None, settings: QueueSettings) -> float:
    """Seconds until the next lease pass: when the earliest running lease runs out or, with
    none running, a whole lease from now (a lease taken after this pass cannot run out
    sooner); never sooner than ``reaper_seconds``. An idle node looks once a lease instead of
    every few seconds, and a lost task is still requeued when its lease runs out.

    A node whose ``LEASE_SECONDS`` is shorter than this one's has its leases reaped by its own
    reaper; if that node is gone, by this one up to the difference late."""
    due = settings.lease_seconds if expiry_in is None else min(expiry_in, settings.lease_seconds)
    return max(due, settings.reaper_seconds)


ORPHAN_AGE_SECONDS = 3600
"""Inputs stored for a task id at least this old with no task are orphans: the create that
stored them was cancelled or its process died before its commit. A create commits within
``CREATE_DEADLINE_SECONDS`` of making its id or not at all; the rest of the hour covers an API
node whose clock is behind the database's."""
ORPHAN_LOOKBACK_SECONDS = 3 * 3600
"""How far back a sweep looks for orphans at least (more when sweeps are rarer): on S3 a
listing of the ids of two hours; a directory is listed whole."""


async def sweep_once(runtime: Runtime) -> None:
    """Delete results, uploads and tasks that outlived their retention, then orphaned inputs
    (a failure of that last pass that is no outage is logged, never fatal: it is cleanup)."""
    settings = runtime.settings
    now = datetime.now(UTC)
    for task in await runtime.retention.expired_results(now, settings.result_ttl):
        deleted = await runtime.blobs.delete_prefix(f"{task.id}/")
        await runtime.retention.clear_results(task.id)
        log.info("task %s: %d result file(s) expired and were deleted", task.id, deleted)
    await runtime.uploads.delete_expired()
    expired = await runtime.retention.past_retention(now, settings.task_retention)
    for task_id in expired:
        await runtime.blobs.delete_prefix(f"{task_id}/")
        await runtime.inputs.discard(task_id)
    purged = await runtime.retention.purge(expired)
    if purged:
        log.info("%d task(s) past retention were deleted with their files", purged)
    try:
        await discard_orphaned_inputs(runtime, await runtime.retention.now())
    except Exception as exc:
        if is_transient(exc):
            raise
        log.warning("orphaned inputs were not swept: %s", describe(exc))


async def discard_orphaned_inputs(runtime: Runtime, now: datetime) -> None:
    """Delete the stored inputs of task ids that never became tasks (``ORPHAN_AGE_SECONDS``)."""
    second = int(now.timestamp())
    lookback = max(
        ORPHAN_LOOKBACK_SECONDS, ORPHAN_AGE_SECONDS + 2 * runtime.settings.retention_sweep_seconds
    )
    stored = await runtime.inputs.stored_for(int(second - lookback), second - ORPHAN_AGE_SECONDS)
    if not stored:
        return
    tasks = await runtime.retention.existing(stored)
    orphans = [task_id for task_id in stored if task_id not in tasks]
    for task_id in orphans:
        await runtime.inputs.discard(task_id)
    if orphans:
        log.info("deleted the stored inputs of %d task id(s) never created", len(orphans))


async def run_reaper(runtime: Runtime, stop: asyncio.Event, passes: Retry) -> None:
    """A lease pass when ``next_lease_pass`` says and a retention sweep every
    ``retention_sweep_seconds``; one that meets an outage is retried whole (every step of it
    can run twice)."""
    settings = runtime.settings
    swept_at = -math.inf
    while not stop.is_set():
        now = time.monotonic()
        sweep = now - swept_at >= settings.retention_sweep_seconds
        try:
            expiry_in = await passes.run(lambda: reap_once(runtime), stop=stop)
            if sweep:
                await passes.run(lambda: sweep_once(runtime), stop=stop)
                swept_at = now
        except DependencyUnavailable:
            return
        next_sweep = swept_at + settings.retention_sweep_seconds - time.monotonic()
        wait = min(next_lease_pass(expiry_in, settings), next_sweep)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=max(0.0, wait))

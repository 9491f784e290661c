"""One worker loop: claim a task, run its stages, finalize it under the fence (DESIGN §3)."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Awaitable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass

from qwenedit.delivery.dispatcher import Dispatcher
from qwenedit.domain.task import ErrorCode, TaskRecord, TaskStatus
from qwenedit.engines.base import Engine
from qwenedit.errors import (
    DependencyUnavailable,
    TaskCancelled,
    TaskFailure,
    WorkerStopping,
)
from qwenedit.extend.base import PromptExtender
from qwenedit.logs import task_fields
from qwenedit.resilience import Outages, Retry, describe, is_transient
from qwenedit.runtime import Runtime
from qwenedit.setting_groups import QueueSettings
from qwenedit.store.database import TASKS_CHANNEL
from qwenedit.store.outbox import Handoff
from qwenedit.worker.in_hand import TasksInHand, ThroughEngine
from qwenedit.worker.run_state import TaskRun
from qwenedit.worker.stages import StoredResult, TaskStages

log = logging.getLogger(__name__)

WATCH_TICK_SECONDS = 0.5
"""How often the loop side of a running task writes progress and checks for cancellation."""
RELEASE_PATIENCE_SECONDS = 10.0
"""How long a stopping worker keeps trying to hand its task back through an outage; it fits in
the margin the supervisor gives after the grace period."""
DEREGISTER_TIMEOUT_SECONDS = 5.0


@dataclass
class _Lease:
    """What the watch of a running task last stored: its progress and its lease heartbeat."""

    written: int
    beat_at: float

    def due(self, progress: int, now: float, heartbeat_seconds: float) -> bool:
        return progress > self.written or now - self.beat_at >= heartbeat_seconds


class Worker:
    def __init__(
        self,
        runtime: Runtime,
        engine: Engine,
        worker_id: str,
        extender: PromptExtender | None = None,
        *,
        outages: Outages,
        callbacks: Dispatcher | None = None,
    ) -> None:
        self._outages = outages
        self._callbacks = callbacks
        """The dispatcher of this process, if it runs one: it sends the callbacks of the tasks
        this worker ends as soon as they commit."""
        self._rt = runtime
        self._queue: QueueSettings = runtime.settings
        self._engine = engine
        self._stages = TaskStages(runtime, engine, extender, outages=outages)
        self.worker_id = worker_id

    def _retry(self, what: str) -> Retry:
        return Retry(f"{self.worker_id} {what}", self._outages)

    async def run(self, stop: asyncio.Event) -> None:
        """Claim and run tasks until ``stop`` is set; a task in hand is finished (or released
        after the grace period) before returning. Database outages are waited out."""
        try:
            await self._retry("register").run(
                lambda: self._rt.workers.register(self.worker_id, self._engine.name), stop=stop
            )
        except DependencyUnavailable:
            return
        beat = asyncio.create_task(self._beat(stop), name=f"{self.worker_id}-beat")
        new_tasks = await self._rt.db.subscribe(TASKS_CHANNEL)
        log.info("worker %s ready (engine %s)", self.worker_id, self._engine.name)
        claims = self._retry("claim")
        in_hand = TasksInHand()
        try:
            while not stop.is_set():
                in_hand.check()
                if in_hand.full():
                    await in_hand.until_room()
                    continue
                try:
                    task = await claims.run(
                        lambda: self._rt.queue.claim(self.worker_id, self._queue.lease_seconds),
                        stop=stop,
                    )
                except DependencyUnavailable:
                    break
                if task is None:
                    await _wait_any(stop, new_tasks.wait(self._queue.poll_seconds))
                    continue
                in_hand.hold(functools.partial(self.process, task, stop), name=f"{task.id}-process")
            await in_hand.finish()
        except BaseException:
            in_hand.cancel()
            raise
        finally:
            new_tasks.close()
            beat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await beat
            await self._deregister()
            log.info("worker %s stopped", self.worker_id)

    async def _deregister(self) -> None:
        """One bounded try: a row left behind stops counting as alive once its beats age."""
        try:
            async with asyncio.timeout(DEREGISTER_TIMEOUT_SECONDS):
                await self._rt.workers.remove(self.worker_id)
        except Exception as exc:
            if not is_transient(exc):
                raise
            log.warning("worker %s could not deregister: %s", self.worker_id, describe(exc))

    async def _beat(self, stop: asyncio.Event) -> None:
        beats = self._retry("heartbeat")
        while not stop.is_set():
            try:
                await beats.run(lambda: self._rt.workers.beat(self.worker_id), stop=stop)
            except DependencyUnavailable:
                return
            await _wait_any(stop, asyncio.sleep(self._queue.heartbeat_seconds))

    async def process(
        self, task: TaskRecord, stop: asyncio.Event, through_engine: ThroughEngine
    ) -> None:
        log.info(
            "task %s claimed (attempt %d)",
            task.id,
            task.attempt,
            extra=task_fields(task, status="processing"),
        )
        run = TaskRun()
        watch = asyncio.create_task(self._watch(task, run, stop), name=f"{task.id}-watch")
        try:
            result = await self._stages.run(task, run, through_engine)
            run.check()
            await self._complete(task, result, run)
        except WorkerStopping:
            await self._release(task)
        except TaskFailure as failure:
            await self._fail(task, run, failure)
        except Exception:
            log.exception(
                "task %s: unexpected error in the worker", task.id, extra=task_fields(task)
            )
            await self._fail(task, run, TaskFailure(ErrorCode.SERVICE_ERROR, "The worker failed"))
        finally:
            watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watch

    async def _release(self, task: TaskRecord) -> None:
        """Hand the task back without counting the attempt. If the database stays away, the
        lease runs out instead and the reaper requeues the task (the attempt counted)."""
        try:
            released = await self._retry(f"release {task.id}").run(
                lambda: self._rt.queue.release(task.id, self.worker_id, task.attempt),
                patience=RELEASE_PATIENCE_SECONDS,
            )
        except DependencyUnavailable as exc:
            log.warning(
                "task %s: could not hand it back (%s); the reaper requeues it when its lease "
                "expires",
                task.id,
                exc,
                extra=task_fields(task),
            )
            return
        log.info(
            "task %s released by its stopping worker: %s",
            task.id,
            released,
            extra=task_fields(task, status="pending"),
        )

    async def _complete(self, task: TaskRecord, result: StoredResult, run: TaskRun) -> None:
        """Commit under the fence, retrying through an outage: committed while this attempt
        still holds the task (even past its lease, if nobody took it), discarded otherwise."""
        commit = self._retry(f"finalize {task.id}")
        async with self._handoff(task) as handoff:
            final = await commit.run(
                lambda: self._rt.tasks.complete(
                    task.id,
                    self.worker_id,
                    task.attempt,
                    result_keys=result.keys,
                    actual_prompt=result.actual_prompt,
                    engine_seconds=result.engine_seconds,
                    handoff=handoff,
                )
            )
        if final is None:
            final = await commit.run(lambda: self._completed_by_this_attempt(task))
        if final is None:
            log.warning(
                "task %s: attempt %d lost its lease; result discarded",
                task.id,
                task.attempt,
                extra=task_fields(task),
            )
            await self._rt.blobs.delete_prefix(f"{task.id}/{task.attempt}/")
            return
        self._rt.metrics.inc("qwenedit_tasks_finished_total", outcome="completed")
        self._rt.metrics.inc("qwenedit_engine_seconds_total", result.engine_seconds)
        log.info(
            "task %s completed: %d image(s), engine %.2fs, total %.2fs",
            task.id,
            len(result.keys),
            result.engine_seconds,
            time.monotonic() - run.started,
            extra=task_fields(final, status="completed"),
        )

    def _handoff(self, task: TaskRecord) -> AbstractAsyncContextManager[Handoff | None]:
        """Where the callback of ``task``, once ended, goes: a slot of this process's
        dispatcher, or ``None`` for the outbox's claim."""
        if self._callbacks is None or task.params.callback_url is None:
            return contextlib.nullcontext()
        return self._callbacks.handoff()

    async def _completed_by_this_attempt(self, task: TaskRecord) -> TaskRecord | None:
        """The task, if this very attempt completed it: a commit whose answer was lost to an
        outage took effect, and its retry was then fenced out by the commit itself."""
        stored = await self._rt.tasks.get(
            task.id, task.account_id, retention_seconds=self._rt.settings.task_retention
        )
        mine = stored.worker_id == self.worker_id and stored.attempt == task.attempt
        return stored if mine and stored.status is TaskStatus.COMPLETED else None

    async def _fail(self, task: TaskRecord, run: TaskRun, failure: TaskFailure) -> None:
        if run.fenced_out:
            log.info(
                "task %s: attempt %d stopped (%s)",
                task.id,
                task.attempt,
                failure.code,
                extra=task_fields(task, code=failure.code),
            )
            return
        async with self._handoff(task) as handoff:
            final = await self._retry(f"finalize {task.id}").run(
                lambda: self._rt.tasks.fail(
                    task.id,
                    self.worker_id,
                    task.attempt,
                    failure.code,
                    failure.message,
                    handoff=handoff,
                )
            )
        if final is None:
            log.info(
                "task %s: attempt %d was fenced out before failing",
                task.id,
                task.attempt,
                extra=task_fields(task),
            )
            return
        self._rt.metrics.inc("qwenedit_tasks_finished_total", outcome=failure.code)
        log.info(
            "task %s failed: %s",
            task.id,
            failure.code,
            extra=task_fields(final, status="failed", code=failure.code),
        )

    async def _watch(self, task: TaskRecord, run: TaskRun, stop: asyncio.Event) -> None:
        """Writes progress, keeps the lease alive, and turns a lost lease, a cancellation, the
        task timeout or a shutdown past its grace into an abort the engine sees at its next step.
        A write that fails in an outage is retried later; the engine runs on meanwhile.
        """
        settings = self._queue
        lease = _Lease(written=task.progress, beat_at=time.monotonic())
        writes = self._retry(f"lease {task.id}")
        retry_at = 0.0
        stop_seen: float | None = None
        try:
            while True:
                await asyncio.sleep(WATCH_TICK_SECONDS)
                now = time.monotonic()
                current = run.progress
                if now >= retry_at and lease.due(current, now, settings.heartbeat_seconds):
                    try:
                        alive = await self._write_lease(task, lease, current, now)
                    except Exception as exc:
                        retry_at = now + writes.failed(exc)
                    else:
                        writes.succeeded()
                        if not alive:
                            _fence_out(task, run)
                            return
                if now - run.started > settings.task_timeout:
                    run.abort(
                        TaskFailure(
                            ErrorCode.GENERATION_TIMEOUT,
                            f"The task did not finish within {settings.task_timeout:g} s",
                        )
                    )
                if stop.is_set():
                    stop_seen = stop_seen or now
                    if now - stop_seen > settings.shutdown_grace:
                        run.abort(WorkerStopping())
        finally:
            writes.abandon()

    async def _write_lease(
        self, task: TaskRecord, lease: _Lease, progress: int, now: float
    ) -> bool:
        """Store risen progress and beat the lease when due; ``False`` when this attempt no
        longer holds the task."""
        alive = True
        if progress > lease.written:
            alive = await self._rt.queue.report_progress(
                task.id, self.worker_id, task.attempt, progress
            )
            lease.written = progress
        if alive and now - lease.beat_at >= self._queue.heartbeat_seconds:
            alive = await self._rt.queue.heartbeat(
                task.id, self.worker_id, task.attempt, self._queue.lease_seconds
            )
            lease.beat_at = now
        return alive


def _fence_out(task: TaskRecord, run: TaskRun) -> None:
    run.fenced_out = True
    run.abort(TaskCancelled("The task was cancelled or reassigned"))
    log.info(
        "task %s: attempt %d no longer holds the task",
        task.id,
        task.attempt,
        extra=task_fields(task),
    )


async def _wait_any(stop: asyncio.Event, other: Awaitable[object]) -> None:
    """Wait until ``stop`` is set or ``other`` finishes, whichever comes first."""
    waiters = {asyncio.ensure_future(stop.wait()), asyncio.ensure_future(other)}
    _done, pending = await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    for waiter in pending:
        waiter.cancel()
    await asyncio.gather(*pending, return_exceptions=True)

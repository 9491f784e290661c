"""The composition root: one process of qwenedit, as ``serve``, ``worker`` and the tests run it.

It opens the runtime (waiting a bounded time for the database and the blob store), then starts
and supervises the background loops the process was asked for (worker loops, reaper, callback
dispatcher). The loops wait out outages of the database and the blob store themselves
(``qwenedit.resilience``); a loop that dies anyway met what waiting cannot fix (a bug, an engine
that does not load), and the process stops rather than limping on (procrastinate's rule): the
failure is logged and ``on_fatal`` is called."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any

from qwenedit.blobs.base import BlobStore
from qwenedit.config import Settings
from qwenedit.delivery.dispatcher import Dispatcher
from qwenedit.engines.base import Engine
from qwenedit.engines.extender_choice import load_prompt_extender
from qwenedit.errors import ConfigError
from qwenedit.gil import hand_back_quickly
from qwenedit.heap import freeze_long_lived
from qwenedit.media.resolver import Resolver
from qwenedit.resilience import Outages, Retry, describe, is_database_error, is_transient
from qwenedit.runtime import Runtime, open_runtime
from qwenedit.store.database import OUTBOX_CHANNEL
from qwenedit.worker.reaper import run_reaper
from qwenedit.worker.runner import Worker

log = logging.getLogger(__name__)

EngineLoader = Callable[[Settings], Engine]
SHUTDOWN_MARGIN_SECONDS = 15.0
"""How long past the grace period shutdown waits for the loops before cancelling them."""
STORAGE_PROBE_KEY = "qwenedit-start-probe"


@dataclass(frozen=True)
class NodeOptions:
    public_url: str
    """The base of the links this node hands out (results, uploads)."""
    workers: int = 0
    """Worker loops in this process; 0 serves the API only (``--no-worker``)."""
    load_engine: EngineLoader | None = None
    resolver: Resolver | None = None
    """Name resolution for outbound URLs; the system's when ``None``."""
    housekeeping: bool = True
    """Run the reaper and the callback dispatcher: the loops every node may run."""
    owns_process: bool = False
    """The program is nothing but the node (``serve``, ``worker``), not one that embeds it, so
    the node makes two process-wide choices: what exists once it has started, and once each
    engine has loaded, is kept out of later garbage collections (``heap.freeze_long_lived``),
    and a thread hands the GIL back to the event loop's helper threads sooner
    (``gil.hand_back_quickly``)."""


class Supervisor:
    """The background loops of one process, started and stopped together."""

    def __init__(
        self, runtime: Runtime, on_fatal: Callable[[], None], *, freeze_heap: bool = False
    ) -> None:
        self._rt = runtime
        self._on_fatal = on_fatal
        self._freeze_heap = freeze_heap
        self.stop = asyncio.Event()
        self.outages = Outages()
        self._tasks: list[asyncio.Task[None]] = []
        self._workers: list[asyncio.Task[None]] = []
        self._callbacks_stop = asyncio.Event()
        """The dispatcher stops after the workers, so the callbacks they hand it on their way
        out are still sent."""
        self._dispatcher: Dispatcher | None = None
        """This process's callback dispatcher, if it runs one: its workers hand it the
        callbacks of the tasks they end."""

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        task = asyncio.create_task(coro, name=name)
        task.add_done_callback(self._check)
        self._tasks.append(task)
        return task

    def _check(self, task: asyncio.Task[None]) -> None:
        if task.cancelled() or task.exception() is None:
            return
        log.critical("%s died; stopping", task.get_name(), exc_info=task.exception())
        self._on_fatal()

    def start_housekeeping(self) -> None:
        self._spawn(run_reaper(self._rt, self.stop, Retry("reaper", self.outages)), "reaper")
        self._dispatcher = Dispatcher(
            self._rt.outbox,
            self._rt.client,
            self._rt.presenter.callback_body,
            self._rt.metrics,
            poll_seconds=self._rt.settings.callback_poll_seconds,
        )
        self._spawn(self._dispatch(self._dispatcher), "callback-dispatcher")

    async def _dispatch(self, dispatcher: Dispatcher) -> None:
        wakeups = await self._rt.db.subscribe(OUTBOX_CHANNEL)
        try:
            await dispatcher.run(
                self._callbacks_stop, Retry("callback dispatcher", self.outages), wakeups
            )
        finally:
            wakeups.close()

    def start_workers(self, count: int, load_engine: EngineLoader) -> None:
        """Each worker loads its own engine (one pipeline each) off the event loop, then runs."""
        prefix = f"{os.uname().nodename}-{os.getpid()}"
        for index in range(count):
            worker = self._spawn(self._worker(f"{prefix}-w{index}", load_engine), f"worker-{index}")
            self._workers.append(worker)

    async def _worker(self, worker_id: str, load_engine: EngineLoader) -> None:
        log.info("worker %s: loading the %s engine", worker_id, self._rt.settings.engine)
        engine = await asyncio.to_thread(load_engine, self._rt.settings)
        extender = load_prompt_extender(self._rt.settings, engine)
        log.info("worker %s: prompt extension %s", worker_id, extender.name if extender else "off")
        if self._freeze_heap:
            freeze_long_lived(f"worker {worker_id} loaded its engine")
        self._rt.engines.loaded += 1
        self._rt.prompts.use(engine)
        try:
            worker = Worker(
                self._rt,
                engine,
                worker_id,
                extender,
                outages=self.outages,
                callbacks=self._dispatcher,
            )
            await worker.run(self.stop)
        finally:
            self._rt.engines.loaded -= 1
            if extender is not None:
                extender.close()
            await asyncio.to_thread(engine.close)

    async def shutdown(self) -> None:
        """Ask every loop to stop; workers finish or release their task within the grace, then
        the dispatcher sends what it holds (up to one callback deadline) and stops."""
        self.stop.set()
        grace = self._rt.settings.shutdown_grace
        if self._workers:
            await asyncio.wait(self._workers, timeout=grace + SHUTDOWN_MARGIN_SECONDS)
        self._callbacks_stop.set()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=SHUTDOWN_MARGIN_SECONDS)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


@dataclass(frozen=True)
class Node:
    runtime: Runtime
    supervisor: Supervisor


@asynccontextmanager
async def run_node(
    settings: Settings, options: NodeOptions, *, on_fatal: Callable[[], None]
) -> AsyncIterator[Node]:
    """Open the runtime and run the loops ``options`` ask for until the block ends."""
    runtime = await start_runtime(settings, options.public_url, options.resolver)
    supervisor = Supervisor(runtime, on_fatal, freeze_heap=options.owns_process)
    if options.housekeeping:
        supervisor.start_housekeeping()
    if options.workers and options.load_engine is not None:
        supervisor.start_workers(options.workers, options.load_engine)
    if options.owns_process:
        hand_back_quickly()
        freeze_long_lived("the node started")
    try:
        yield Node(runtime=runtime, supervisor=supervisor)
    finally:
        await supervisor.shutdown()
        await runtime.close()


async def start_runtime(
    settings: Settings, public_url: str, resolver: Resolver | None = None
) -> Runtime:
    """``open_runtime``, then a write to the blob store, both retried through an outage for up
    to ``start_timeout`` seconds. ``ConfigError`` (bad settings, schema not migrated, storage
    refusing) or ``DependencyUnavailable`` (still unreachable) says what is wrong in one line."""
    retry = Retry("start-up", Outages())
    patience = settings.start_timeout
    try:
        runtime = await retry.run(
            lambda: open_runtime(settings, public_url=public_url, resolver=resolver),
            patience=patience,
        )
    except Exception as exc:
        if is_database_error(exc):
            raise ConfigError(f"cannot use the database: {describe(exc)}") from exc
        raise
    try:
        await retry.run(lambda: _probe_storage(runtime.blobs), patience=patience)
    except BaseException:
        await runtime.close()
        raise
    return runtime


async def check_start(settings: Settings) -> None:
    """What ``serve`` checks before it binds its port: what ``start_runtime`` checks."""
    runtime = await start_runtime(settings, public_url="http://127.0.0.1")
    await runtime.close()


async def _probe_storage(blobs: BlobStore) -> None:
    """The store's own check (a missing bucket, refused credentials: ``ConfigError`` naming
    them), then a write and a delete."""
    await blobs.check()
    try:
        await blobs.put(STORAGE_PROBE_KEY, b"ok")
        await blobs.delete_prefix(STORAGE_PROBE_KEY)
    except Exception as exc:
        if is_transient(exc):
            raise
        raise ConfigError(f"the blob store is not usable: {describe(exc)}") from exc


def node_runtime(
    settings: Settings, options: NodeOptions, *, on_fatal: Callable[[], None]
) -> Callable[[], AbstractAsyncContextManager[Runtime]]:
    """The node as the HTTP app's lifespan sees it: the runtime its routes are served from."""

    @asynccontextmanager
    async def opened() -> AsyncIterator[Runtime]:
        async with run_node(settings, options, on_fatal=on_fatal) as node:
            yield node.runtime

    return opened

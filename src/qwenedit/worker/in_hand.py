"""The tasks one worker holds (DESIGN §3): the one in the engine, one claimed ahead of it, and
those whose outputs are still being encoded and stored. Under a backlog the engine then never
waits for I/O on either side: the next task's inputs are fetched and decoded while the engine
runs, and a slow store of the previous outputs does not stop the next claim. Only one task at a
time waits for the engine, so a busy worker never sits on tasks an idle one could run."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

BEFORE_ENGINE = 2
"""Tasks held that are not yet through the engine: the running one and one claimed ahead."""
AT_MOST = 4
"""Tasks held in all, those being stored included: bounds the outputs held in memory."""

ThroughEngine = Callable[[], None]
"""Called by a task once the engine is done with it (it may be called again, harmlessly)."""


class TasksInHand:
    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[None]] = set()
        self._before_engine = 0
        self._moved = asyncio.Event()
        """Set when a task went through the engine or ended: there may be room again."""
        self._failure: BaseException | None = None
        """What the first task that raised raised (a bug in the worker), whenever it ended."""

    def __len__(self) -> int:
        return len(self._tasks)

    def full(self) -> bool:
        return len(self._tasks) >= AT_MOST or self._before_engine >= BEFORE_ENGINE

    def check(self) -> None:
        """Raise what a task that ended raised, if one did."""
        if self._failure is not None:
            raise self._failure

    def hold(self, work: Callable[[ThroughEngine], Coroutine[Any, Any, None]], name: str) -> None:
        """Run ``work`` in a task of its own; it calls what it is given when the engine is done
        with it (a task that ends before the engine counts as through it too)."""
        self._before_engine += 1
        passed = False

        def through_engine() -> None:
            nonlocal passed
            if not passed:
                passed = True
                self._before_engine -= 1
                self._moved.set()

        def ended(task: asyncio.Task[None]) -> None:
            self._tasks.discard(task)
            through_engine()
            if not task.cancelled() and self._failure is None:
                self._failure = task.exception()

        task = asyncio.create_task(work(through_engine), name=name)
        self._tasks.add(task)
        task.add_done_callback(ended)

    async def until_room(self) -> None:
        """Wait until there is room for another task; raise what an ended task raised (a bug
        in the worker)."""
        while self.full():
            self._moved.clear()
            moved = asyncio.ensure_future(self._moved.wait())
            try:
                await asyncio.wait({*self._tasks, moved}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                moved.cancel()
            self.check()
        self.check()

    async def finish(self) -> None:
        """Wait for every task held to end (finished, or released after the grace period);
        raise what one of them raised."""
        while self._tasks:
            await asyncio.wait(set(self._tasks), return_when=asyncio.FIRST_COMPLETED)
        self.check()

    def cancel(self) -> None:
        for task in self._tasks:
            task.cancel()

"""How fast the fleet works, as task estimates need it: the measured seconds per image and the
number of live workers, read at most once a second. Every create and read shows an estimate;
without the memo each one cost two more queries, for figures that move slowly anyway."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

from qwenedit.store.task_stats import TaskStats
from qwenedit.store.workers import WorkerRepo

PACE_TTL_SECONDS = 1.0


@dataclass(frozen=True)
class Pace:
    image_seconds: float | None
    """Measured seconds per image; ``None`` before any task was measured."""
    live_workers: int


class FleetPace:
    def __init__(
        self,
        stats: TaskStats,
        workers: WorkerRepo,
        *,
        alive_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._stats = stats
        self._workers = workers
        self._alive_seconds = alive_seconds
        self._clock = clock
        self._pace: Pace | None = None
        self._read_at = 0.0
        self._reading: asyncio.Future[Pace] | None = None

    async def current(self) -> Pace:
        """The memo, or a fresh read once it is a second old: one read for all who ask
        meanwhile (each create asks, and a burst of them would otherwise read once each)."""
        if self._pace is not None and self._clock() - self._read_at < PACE_TTL_SECONDS:
            return self._pace
        if self._reading is None:
            self._reading = asyncio.ensure_future(self._read())
            self._reading.add_done_callback(_seen)
        return await asyncio.shield(self._reading)

    async def _read(self) -> Pace:
        try:
            now = self._clock()
            per_image = await self._stats.recent_image_seconds()
            workers = await self._workers.alive_count(self._alive_seconds)
            self._pace, self._read_at = Pace(per_image, workers), now
            return self._pace
        finally:
            self._reading = None


def _seen(read: asyncio.Future[Pace]) -> None:
    """Retrieve a failed read's error: every asker may have been cancelled meanwhile, and each
    one that was not has it raised anyway."""
    if not read.cancelled():
        read.exception()

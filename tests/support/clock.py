"""A clock that stands still until the test moves it, and counts how often it was read, so a
test can wait until its reader has looked at the time again instead of sleeping."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timedelta


class ManualClock:
    def __init__(self, start: datetime) -> None:
        self.now = start
        self.reads = 0

    def __call__(self) -> datetime:
        self.reads += 1
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)

    async def read_again(self, times: int = 2, timeout: float = 10) -> None:
        """Return once the clock has been read ``times`` more times."""
        target = self.reads + times
        deadline = time.monotonic() + timeout
        while self.reads < target:
            if time.monotonic() > deadline:
                raise AssertionError(f"the clock was read {self.reads} of {target} times")
            await asyncio.sleep(0.005)

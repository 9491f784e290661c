"""The fleet's pace is read at most once a second, once for everyone who asks meanwhile."""

from __future__ import annotations

import asyncio

import pytest

from qwenedit.services.pace import PACE_TTL_SECONDS, FleetPace


class CountingReads:
    def __init__(self) -> None:
        self.reads = 0
        self.fail = False
        self.release = asyncio.Event()

    async def recent_image_seconds(self) -> float | None:
        self.reads += 1
        await self.release.wait()
        if self.fail:
            raise ConnectionError("the database is away")
        return 2.5

    async def alive_count(self, within_seconds: float) -> int:
        return 3


async def test_one_read_serves_everyone_who_asked_meanwhile() -> None:
    now = [100.0]
    source = CountingReads()
    pace = FleetPace(source, source, alive_seconds=30, clock=lambda: now[0])  # type: ignore[arg-type]
    waiting = [asyncio.ensure_future(pace.current()) for _ in range(10)]
    await asyncio.sleep(0)
    source.release.set()
    results = await asyncio.gather(*waiting)
    assert source.reads == 1
    assert {(r.image_seconds, r.live_workers) for r in results} == {(2.5, 3)}
    now[0] += PACE_TTL_SECONDS / 2
    await pace.current()
    assert source.reads == 1
    now[0] += PACE_TTL_SECONDS
    await pace.current()
    assert source.reads == 2


async def test_a_failed_read_fails_its_askers_and_the_next_ask_reads_again() -> None:
    source = CountingReads()
    pace = FleetPace(source, source, alive_seconds=30)  # type: ignore[arg-type]
    source.fail = True
    source.release.set()
    asking = [asyncio.ensure_future(pace.current()) for _ in range(3)]
    for outcome in await asyncio.gather(*asking, return_exceptions=True):
        assert isinstance(outcome, ConnectionError)
    source.fail = False
    assert (await pace.current()).live_workers == 3
    assert source.reads == 2


async def test_an_asker_cancelled_does_not_cancel_the_read_for_the_others() -> None:
    source = CountingReads()
    pace = FleetPace(source, source, alive_seconds=30)  # type: ignore[arg-type]
    first = asyncio.ensure_future(pace.current())
    second = asyncio.ensure_future(pace.current())
    await asyncio.sleep(0)
    first.cancel()
    source.release.set()
    assert (await second).image_seconds == 2.5
    with pytest.raises(asyncio.CancelledError):
        await first

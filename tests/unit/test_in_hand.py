"""What a worker holds: one task ahead of the engine, up to four in all, and the bugs of the
tasks it held surface in its loop."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from qwenedit.worker.in_hand import AT_MOST, BEFORE_ENGINE, TasksInHand, ThroughEngine


class Held:
    """A task the test moves: through the engine, then to its end (or to an error)."""

    def __init__(self, hand: TasksInHand, name: str) -> None:
        self.through = asyncio.Event()
        self.end = asyncio.Event()
        self.error: BaseException | None = None
        hand.hold(self._work, name=name)

    async def _work(self, through_engine: ThroughEngine) -> None:
        await self.through.wait()
        through_engine()
        await self.end.wait()
        if self.error is not None:
            raise self.error


async def settle() -> None:
    for _ in range(3):
        await asyncio.sleep(0)


async def test_only_tasks_before_the_engine_count_against_the_one_ahead() -> None:
    hand = TasksInHand()
    first, second = Held(hand, "first"), Held(hand, "second")
    assert BEFORE_ENGINE == 2 and hand.full()
    first.through.set()  # its outputs are being stored: room for one more ahead
    await asyncio.wait_for(hand.until_room(), 1)
    assert not hand.full()
    third = Held(hand, "third")
    assert hand.full()
    second.through.set()
    third.through.set()
    await settle()
    fourth = Held(hand, "fourth")
    assert len(hand) == AT_MOST == 4 and hand.full()  # all four are storing: full by count
    for held in (first, second, third, fourth):
        held.through.set()
        held.end.set()
    await asyncio.wait_for(hand.finish(), 1)
    assert len(hand) == 0 and not hand.full()


@pytest.mark.parametrize("how", ["fails", "cancelled"])
async def test_a_task_that_ends_before_the_engine_frees_its_place(how: str) -> None:
    hand = TasksInHand()
    first, second = Held(hand, "first"), Held(hand, "second")
    assert hand.full()
    if how == "fails":
        first.error = RuntimeError("a bug")
        first.end.set()
        first.through.set()
        with contextlib.suppress(RuntimeError):  # raised here, or at the loop's next check
            await asyncio.wait_for(hand.until_room(), 1)
        await settle()
        with pytest.raises(RuntimeError, match="a bug"):
            hand.check()
    else:
        hand.cancel()
        await settle()
    assert not hand.full()
    second.through.set()
    second.end.set()
    await settle()


async def test_a_bug_in_a_task_ended_while_the_loop_was_busy_is_raised_later() -> None:
    hand = TasksInHand()
    held = Held(hand, "only")
    held.error = RuntimeError("lost otherwise")
    held.through.set()
    held.end.set()
    await settle()  # ended while nobody waited on it
    with pytest.raises(RuntimeError, match="lost otherwise"):
        hand.check()
    with pytest.raises(RuntimeError, match="lost otherwise"):
        await hand.finish()

"""Server-Sent Events of one task: the task object each time its status, progress or queue
position changes, ending after the terminal one.

A stream reads the task from the database every ``event_poll_seconds``, so it sees changes
made through any API node or worker. While the database cannot be reached, or does not answer
within a keepalive's interval, the stream stays open (keepalives go on) and looks again at the
next poll. An event's id names the state it shows
(``<status>.<progress>.<queue position>``): a client that reconnects with ``Last-Event-ID``
is not sent that state again, only what comes after it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from typing import Final

from qwenedit.domain.wire import TaskObject
from qwenedit.errors import RateLimited, TaskNotFound
from qwenedit.resilience import is_transient
from qwenedit.services.edits import EditService
from qwenedit.setting_groups import StreamSettings
from qwenedit.store.accounts import Caller

KEEPALIVE_SECONDS: Final = 15.0
"""A comment line this often keeps proxies from closing a quiet stream."""
RETRY_MILLISECONDS: Final = 1000
"""What the stream asks a browser's ``EventSource`` to wait before reconnecting."""


def event_id(task: TaskObject) -> str:
    position = task.task_info.queue_position
    return f"{task.status.value}.{task.progress}.{'-' if position is None else position}"


def frame(task: TaskObject) -> str:
    """One ``task`` event; the JSON is one line, so one ``data:`` field carries it."""
    return f"id: {event_id(task)}\nevent: task\ndata: {task.model_dump_json()}\n\n"


class TaskEvents:
    def __init__(self, *, streams: StreamSettings, edits: EditService) -> None:
        self._poll = streams.event_poll_seconds
        self._max_streams = streams.max_streams_per_account
        self._edits = edits
        self._open: dict[int, int] = {}
        """Streams open on this node, by account id."""

    def open_count(self, account: Caller) -> int:
        return self._open.get(account.id, 0)

    async def open(
        self, account: Caller, task_id: str, last_event_id: str | None
    ) -> AsyncGenerator[str, None]:
        """The stream's frames. Checks the task (400, 404) and the account's stream limit
        (429) before anything is sent, so those are ordinary error answers. The stream counts
        itself once it starts (a generator never started never runs its ``finally``), so opens
        racing within one instant may pass the limit together."""
        first = await self._edits.get(account, task_id)
        if self.open_count(account) >= self._max_streams:
            raise RateLimited(
                f"At most {self._max_streams} event streams per account at a time",
                retry_after=1,
            )
        return self._frames(account, task_id, first, last_event_id)

    async def _frames(
        self, account: Caller, task_id: str, task: TaskObject, last_seen: str | None
    ) -> AsyncGenerator[str, None]:
        """A poll that the database does not answer is not cancelled (a query cancelled mid-way
        can wait on the server as long again): the stream sends its keepalives while it waits
        for that same poll."""
        loop = asyncio.get_running_loop()
        self._open[account.id] = self.open_count(account) + 1
        poll: asyncio.Task[TaskObject] | None = None
        try:
            yield f"retry: {RETRY_MILLISECONDS}\n\n"
            quiet_since = loop.time()
            while True:
                if event_id(task) != last_seen:
                    last_seen = event_id(task)
                    quiet_since = loop.time()
                    yield frame(task)
                if task.status.is_terminal:
                    return
                if loop.time() - quiet_since >= KEEPALIVE_SECONDS:
                    quiet_since = loop.time()
                    yield ": keepalive\n\n"
                if poll is None:
                    await asyncio.sleep(self._poll)
                    poll = asyncio.create_task(self._edits.get(account, task_id))
                keepalive_due = quiet_since + KEEPALIVE_SECONDS - loop.time()
                await asyncio.wait({poll}, timeout=max(0.0, keepalive_due))
                if not poll.done():
                    continue
                answered, poll = poll, None
                try:
                    task = answered.result()
                except TaskNotFound:
                    return
                except Exception as exc:
                    if not is_transient(exc):
                        raise
        finally:
            if poll is not None:
                poll.add_done_callback(_seen)
                poll.cancel()
            self._open[account.id] = self.open_count(account) - 1
            if not self._open[account.id]:
                del self._open[account.id]


def _seen(poll: asyncio.Task[TaskObject]) -> None:
    """The outcome of a poll the stream left behind, taken so that none is reported unseen."""
    if not poll.cancelled():
        poll.exception()

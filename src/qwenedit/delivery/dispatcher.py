"""The callback dispatcher (DESIGN §4.4): claims due outbox rows and POSTs them.

Each claimed attempt is sent in its own asyncio task, up to ``MAX_IN_FLIGHT`` at once, so a
receiver that hangs (up to the 10 s deadline) or answers slowly never holds up the others.

A task that ends in this process has its callback sent from here as soon as the commit that
ended it returns: the worker takes a free slot (``handoff``) before it commits, the commit
queues the outbox row already claimed by that slot, and the slot sends it. The outbox stays
the record: if this process dies before the attempt is recorded, the claim's lease runs out
and any dispatcher sends it again.

``clock`` tells the dispatcher when it is: which attempts are due and when a failed one ended,
so the 1/2/4 s schedule counts from it. The ``webhook-timestamp`` stays wall time, since
receivers check it against their own clocks."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Protocol

from qwenedit import __version__
from qwenedit.domain.task import TaskRecord
from qwenedit.domain.webhooks import signature_header, webhook_id
from qwenedit.errors import DependencyUnavailable, OutboundRefused
from qwenedit.metrics import Metrics
from qwenedit.resilience import Retry, is_transient
from qwenedit.store.outbox import PENDING, AttemptOutcome, Delivery, Handoff, OutboxRepo

log = logging.getLogger(__name__)

CALLBACK_TIMEOUT = 10.0
"""Total deadline of one attempt, connect to last byte (the interface's 10 s)."""
LEASE_MARGIN = 5.0
MAX_IN_FLIGHT = 32
USER_AGENT = f"qwenedit/{__version__} (callbacks)"
UNEXPECTED_ERROR = "the delivery failed"
"""What the owner sees for an attempt that failed in our code; the log has the details."""

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


class CallbackSender(Protocol):
    async def post(self, url: str, body: bytes, headers: dict[str, str], *, deadline: float) -> int:
        """POST and return the status code within ``deadline`` seconds in all;
        ``OutboundRefused`` for a refused target, a timeout or a connection error. Never
        follows redirects."""
        ...


class Wakeups(Protocol):
    async def wait(self, timeout: float) -> None:  # noqa: ASYNC109 (a poll interval)
        """Return when a callback may have been queued, or after ``timeout``."""
        ...


BodyRenderer = Callable[[TaskRecord], bytes]
"""The callback body of a finished task: the task object as ``GET /v1/tasks/{id}`` shows it."""


def callback_headers(delivery: Delivery, body: bytes, now: int) -> dict[str, str]:
    message_id = webhook_id(delivery.id)
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "webhook-id": message_id,
        "webhook-timestamp": str(now),
    }
    if delivery.signing_secrets:
        headers["webhook-signature"] = signature_header(
            list(delivery.signing_secrets), message_id, now, body
        )
    return headers


class Dispatcher:
    def __init__(
        self,
        outbox: OutboxRepo,
        sender: CallbackSender,
        render_body: BodyRenderer,
        metrics: Metrics,
        *,
        poll_seconds: float,
        clock: Clock = utc_now,
    ) -> None:
        self._outbox = outbox
        self._sender = sender
        self._render_body = render_body
        self._metrics = metrics
        self._poll_seconds = poll_seconds
        self._clock = clock
        self._slots = asyncio.Semaphore(MAX_IN_FLIGHT)
        self._sending: set[asyncio.Task[None]] = set()
        self._running = False
        """Slots are handed out (``handoff``) only while the dispatcher runs."""
        self._sends_accepted = False
        """A slot taken before the dispatcher stopped may still send until its last sends
        have been waited for."""
        self._rescheduled = asyncio.Event()
        """Set when an attempt failed and its retry was scheduled: ``_idle`` looks again when
        it falls due (on PostgreSQL nothing else would tell this dispatcher)."""

    @contextlib.asynccontextmanager
    async def handoff(self) -> AsyncIterator[Handoff | None]:
        """A slot for the callback of a task about to end in this process, or ``None`` when
        every slot is busy or the dispatcher is not running (the callback is then queued for a
        claim). Freed on leaving the block unless a delivery was sent through it."""
        if not self._running or self._slots.locked():
            yield None
            return
        await self._slots.acquire()  # free, so this does not wait
        slot = _Slot(self)
        try:
            yield slot
        finally:
            if not slot.sent:
                self._slots.release()

    def _start(self, delivery: Delivery) -> None:
        """Send ``delivery`` in a task of its own, in a slot already taken for it."""
        task = asyncio.create_task(self._send(delivery), name=f"callback-{delivery.id}")
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def run(self, stop: asyncio.Event, claims: Retry, wakeups: Wakeups | None = None) -> None:
        """Claim and send until ``stop`` is set; ``claims`` waits out database outages, and
        ``wakeups`` say when a callback may have been queued (else it polls)."""
        self._running = self._sends_accepted = True
        try:
            while not stop.is_set():
                await self._slots.acquire()
                if stop.is_set():  # told to stop while every slot was busy
                    self._slots.release()
                    break
                try:
                    delivery = await claims.run(
                        lambda: self._outbox.claim(_Slot.lease_seconds, now=self._clock()),
                        stop=stop,
                    )
                except DependencyUnavailable:
                    self._slots.release()
                    break
                if delivery is None:
                    self._slots.release()
                    await self._idle(stop, wakeups)
                    continue
                self._start(delivery)
        finally:
            self._running = False
            await self._drain()
            self._sends_accepted = False

    async def _drain(self) -> None:
        """Wait for the sends under way, those handed over meanwhile included, up to one
        callback deadline."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + CALLBACK_TIMEOUT + 1
        while self._sending and loop.time() < deadline:
            await asyncio.wait(set(self._sending), timeout=deadline - loop.time())

    async def _idle(self, stop: asyncio.Event, wakeups: Wakeups | None) -> None:
        """Wait for a new callback (a notification at the commit that queued it), the next
        retry that falls due, or the slow fallback poll, whichever comes first."""
        self._rescheduled.clear()
        try:
            due_in = await self._outbox.seconds_until_due(now=self._clock())
        except Exception as error:
            if not is_transient(error):
                raise
            due_in = None  # the claim that follows meets the outage and waits it out
        timeout = self._poll_seconds if due_in is None else min(due_in, self._poll_seconds)
        waiters: set[asyncio.Future[object]] = {
            asyncio.ensure_future(stop.wait()),
            asyncio.ensure_future(self._rescheduled.wait()),
        }
        if wakeups is not None:
            waiters.add(asyncio.ensure_future(wakeups.wait(timeout)))
        _done, pending = await asyncio.wait(waiters, timeout=timeout, return_when="FIRST_COMPLETED")
        for waiter in pending:
            waiter.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    async def _send(self, delivery: Delivery) -> None:
        try:
            outcome = await self._attempt(delivery)
            status = await self._outbox.record(delivery, outcome, now=self._clock())
            if status == PENDING:
                self._rescheduled.set()
            self._metrics.inc("qwenedit_callback_attempts_total", outcome=_label(outcome))
            log.info(
                "task %s callback attempt %d: %s in %d ms -> %s",
                delivery.task_id,
                delivery.attempt,
                outcome.status_code or outcome.error,
                outcome.duration_ms,
                status,
                extra={"task_id": delivery.task_id, "attempt": delivery.attempt},
            )
        except Exception:
            log.exception(
                "task %s: callback attempt %d failed to record", delivery.task_id, delivery.attempt
            )
        finally:
            self._slots.release()

    async def _attempt(self, delivery: Delivery) -> AttemptOutcome:
        """Whatever goes wrong is a failed attempt on the schedule: an attempt left unrecorded
        would be claimed again each time its lease runs out, for ever."""
        started = time.monotonic()
        status: int | None = None
        try:
            body = self._render_body(delivery.task)
            headers = callback_headers(delivery, body, int(time.time()))
            status = await self._sender.post(delivery.url, body, headers, deadline=CALLBACK_TIMEOUT)
            error = None
        except OutboundRefused as exc:
            error = str(exc)
        except Exception:
            log.exception(
                "task %s: callback attempt %d failed unexpectedly",
                delivery.task_id,
                delivery.attempt,
                extra={"task_id": delivery.task_id, "attempt": delivery.attempt},
            )
            error = UNEXPECTED_ERROR
        return AttemptOutcome(
            status_code=status, error=error, duration_ms=round((time.monotonic() - started) * 1000)
        )


class _Slot:
    """One taken slot of a dispatcher, as the store sees it (``Handoff``)."""

    lease_seconds = CALLBACK_TIMEOUT + LEASE_MARGIN

    def __init__(self, dispatcher: Dispatcher) -> None:
        self._dispatcher = dispatcher
        self.sent = False

    def send(self, delivery: Delivery) -> None:
        """Called once, when the transaction that queued ``delivery`` has committed. A
        dispatcher that has stopped and waited for its last sends sends nothing more: the row
        stays claimed until its lease runs out, and then any dispatcher claims it (the attempt
        it was claimed for counts as made)."""
        if not self._dispatcher._sends_accepted:
            log.info(
                "task %s: callback left to the outbox (the dispatcher has stopped)",
                delivery.task_id,
                extra={"task_id": delivery.task_id},
            )
            return
        self.sent = True
        self._dispatcher._start(delivery)


def _label(outcome: AttemptOutcome) -> str:
    if outcome.status_code is None:
        return "error"
    return f"{outcome.status_code // 100}xx"

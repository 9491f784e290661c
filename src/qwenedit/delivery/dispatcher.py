"""The callback dispatcher (DESIGN §4.4): claims due outbox rows and POSTs them.

Each claimed attempt is sent in its own asyncio task, up to ``MAX_IN_FLIGHT`` at once, so a
receiver that hangs (up to the 10 s deadline) or answers slowly never holds up the others."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Protocol

from qwenedit import __version__
from qwenedit.domain.task import TaskRecord
from qwenedit.domain.webhooks import signature_header, webhook_id
from qwenedit.errors import OutboundRefused
from qwenedit.metrics import Metrics
from qwenedit.store.outbox import AttemptOutcome, Delivery, OutboxRepo

log = logging.getLogger(__name__)

CALLBACK_TIMEOUT = 10.0
"""Total deadline of one attempt, connect to last byte (the interface's 10 s)."""
LEASE_MARGIN = 5.0
MAX_IN_FLIGHT = 32
USER_AGENT = f"qwenedit/{__version__} (callbacks)"
UNEXPECTED_ERROR = "the delivery failed"
"""What the owner sees for an attempt that failed in our code; the log has the details."""


class CallbackSender(Protocol):
    async def post(self, url: str, body: bytes, headers: dict[str, str], *, deadline: float) -> int:
        """POST and return the status code within ``deadline`` seconds in all;
        ``OutboundRefused`` for a refused target, a timeout or a connection error. Never
        follows redirects."""
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
    ) -> None:
        self._outbox = outbox
        self._sender = sender
        self._render_body = render_body
        self._metrics = metrics
        self._poll_seconds = poll_seconds
        self._slots = asyncio.Semaphore(MAX_IN_FLIGHT)
        self._sending: set[asyncio.Task[None]] = set()

    async def run(self, stop: asyncio.Event) -> None:
        try:
            while not stop.is_set():
                await self._slots.acquire()
                delivery = await self._outbox.claim(CALLBACK_TIMEOUT + LEASE_MARGIN)
                if delivery is None:
                    self._slots.release()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), self._poll_seconds)
                    continue
                task = asyncio.create_task(self._send(delivery), name=f"callback-{delivery.id}")
                self._sending.add(task)
                task.add_done_callback(self._sending.discard)
        finally:
            if self._sending:
                await asyncio.wait(self._sending, timeout=CALLBACK_TIMEOUT + 1)

    async def _send(self, delivery: Delivery) -> None:
        try:
            outcome = await self._attempt(delivery)
            status = await self._outbox.record(delivery, outcome)
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


def _label(outcome: AttemptOutcome) -> str:
    if outcome.status_code is None:
        return "error"
    return f"{outcome.status_code // 100}xx"

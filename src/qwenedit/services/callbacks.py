"""The owner's view of a task's callback deliveries, and asking for one more."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from qwenedit.domain.task import is_task_id
from qwenedit.domain.webhooks import MAX_REDELIVERIES
from qwenedit.domain.wire import CallbackAttempt, CallbackDelivery, CallbackHistory
from qwenedit.errors import Conflict, InvalidRequest
from qwenedit.setting_groups import RetentionSettings
from qwenedit.store.accounts import Caller
from qwenedit.store.outbox import OutboxRepo
from qwenedit.store.tasks import TaskRepo


def _seconds(moment: datetime) -> float:
    """Unix seconds like every other time on the wire, here to the millisecond."""
    return round(moment.timestamp(), 3)


def _seconds_or_none(moment: datetime | None) -> float | None:
    return None if moment is None else _seconds(moment)


def _delivery(row: dict[str, Any]) -> CallbackDelivery:
    return CallbackDelivery(
        id=row["id"],
        url=row["url"],
        status=row["status"],
        created_at=_seconds(row["created_at"]),
        delivered_at=_seconds_or_none(row["delivered_at"]),
        next_attempt_at=_seconds_or_none(row["next_attempt_at"]),
        attempts=[
            CallbackAttempt(
                attempted_at=_seconds(attempt["attempted_at"]),
                status_code=attempt["status_code"],
                error=attempt["error"],
                duration_ms=attempt["duration_ms"],
            )
            for attempt in row["attempts"]
        ],
    )


class CallbackService:
    def __init__(
        self, *, retention: RetentionSettings, tasks: TaskRepo, outbox: OutboxRepo
    ) -> None:
        self._retention = retention
        self._tasks = tasks
        self._outbox = outbox

    async def _check_owner(self, account: Caller, task_id: str) -> None:
        if not is_task_id(task_id):
            raise InvalidRequest("Malformed task id", param="task_id")
        await self._tasks.get(task_id, account.id, retention_seconds=self._retention.task_retention)

    async def history(self, account: Caller, task_id: str) -> CallbackHistory:
        await self._check_owner(account, task_id)
        deliveries = await self._outbox.history(task_id, account.id)
        return CallbackHistory(task_id=task_id, data=[_delivery(row) for row in deliveries])

    async def redeliver(self, account: Caller, task_id: str) -> CallbackHistory:
        await self._check_owner(account, task_id)
        queued = await self._outbox.redeliver(
            task_id, account.id, max_redeliveries=MAX_REDELIVERIES
        )
        if queued is None:
            raise Conflict(
                "This task has no callback to send again: it has no callback_url or has not "
                "finished yet",
                param="task_id",
            )
        return await self.history(account, task_id)

"""The owner's view of a task's callback deliveries, and asking for one more."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from qwenedit.config import Settings
from qwenedit.domain.task import is_task_id
from qwenedit.errors import Conflict, InvalidRequest
from qwenedit.store.accounts import Account
from qwenedit.store.outbox import OutboxRepo
from qwenedit.store.tasks import TaskRepo


def _wire(value: Any) -> Any:
    """Timestamps as Unix seconds, like every other time on the wire."""
    if isinstance(value, datetime):
        return round(value.timestamp(), 3)
    if isinstance(value, list):
        return [_wire(item) for item in value]
    if isinstance(value, dict):
        return {key: _wire(item) for key, item in value.items()}
    return value


class CallbackService:
    def __init__(self, *, settings: Settings, tasks: TaskRepo, outbox: OutboxRepo) -> None:
        self._settings = settings
        self._tasks = tasks
        self._outbox = outbox

    async def _check_owner(self, account: Account, task_id: str) -> None:
        if not is_task_id(task_id):
            raise InvalidRequest("Malformed task id", param="task_id")
        await self._tasks.get(task_id, account.id, retention_seconds=self._settings.task_retention)

    async def history(self, account: Account, task_id: str) -> dict[str, Any]:
        await self._check_owner(account, task_id)
        deliveries = await self._outbox.history(task_id, account.id)
        return {"object": "list", "task_id": task_id, "data": _wire(deliveries)}

    async def redeliver(self, account: Account, task_id: str) -> dict[str, Any]:
        await self._check_owner(account, task_id)
        if await self._outbox.redeliver(task_id, account.id) is None:
            raise Conflict(
                "This task has no callback to send again: it has no callback_url or has not "
                "finished yet",
                param="task_id",
            )
        return await self.history(account, task_id)

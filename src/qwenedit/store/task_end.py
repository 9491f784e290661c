"""Ending a task: the terminal state, the settlement of its hold and its callback, in the
caller's transaction. A hold is resolved once: only the statement that moves the task to a
terminal state (and so matches it) settles it."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, update
from sqlalchemy.ext.asyncio import AsyncConnection

from qwenedit.domain.task import TaskRecord
from qwenedit.store.accounts import move_credits
from qwenedit.store.database import OUTBOX_CHANNEL, Database
from qwenedit.store.outbox import queue_callback
from qwenedit.store.tables import tasks
from qwenedit.store.task_rows import task_record


async def end_task(
    db: Database,
    connection: AsyncConnection,
    where: ColumnElement[bool],
    values: dict[str, Any],
    now: datetime,
) -> TaskRecord | None:
    """Move the task matching ``where`` to its terminal state, then settle it; ``None`` when no
    task matched (fenced out, or already ended)."""
    row = (
        await connection.execute(update(tasks).where(where).values(**values).returning(*tasks.c))
    ).first()
    if row is None:
        return None
    record = task_record(row)
    await settle(db, connection, record, now)
    return record


async def settle(
    db: Database, connection: AsyncConnection, task: TaskRecord, now: datetime
) -> None:
    """Refund what was not used and queue the callback (its body is rendered when sent); the
    dispatchers are woken at commit."""
    refund = task.reserved_milli - (task.used_milli or 0)
    if refund > 0:
        await move_credits(connection, task.account_id, refund, "refund", now, task_id=task.id)
    if task.params.callback_url is not None:
        await queue_callback(connection, task.id, task.account_id, task.params.callback_url, now)
        await db.notify_on_commit(connection, OUTBOX_CHANNEL)

"""Ending a task: the terminal state, the settlement of its hold and its callback, in the
caller's transaction. A hold is resolved once: only the statement that moves the task to a
terminal state (and so matches it) settles it."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Update, update
from sqlalchemy.ext.asyncio import AsyncConnection

from qwenedit.domain.task import TaskRecord
from qwenedit.store.accounts import move_credits
from qwenedit.store.database import OUTBOX_CHANNEL, Database
from qwenedit.store.outbox import Handoff, queue_callback, queue_claimed
from qwenedit.store.tables import tasks
from qwenedit.store.task_rows import task_record


async def end_task(
    db: Database,
    connection: AsyncConnection,
    ending: Update,
    parameters: dict[str, Any],
    now: datetime,
    handoff: Handoff | None = None,
) -> TaskRecord | None:
    """Run ``ending``, an UPDATE that moves one task to its terminal state and returns its row,
    then settle the task; ``None`` when no task matched (fenced out, or already ended)."""
    row = (await connection.execute(ending, parameters)).first()
    if row is None:
        return None
    record = task_record(row)
    await settle(db, connection, record, now, handoff)
    return record


def ending(where: ColumnElement[bool], values: dict[str, Any]) -> Update:
    """An ``end_task`` statement: the task matching ``where`` takes ``values``."""
    return update(tasks).where(where).values(**values).returning(*tasks.c)


async def settle(
    db: Database,
    connection: AsyncConnection,
    task: TaskRecord,
    now: datetime,
    handoff: Handoff | None = None,
) -> None:
    """Refund what was not used and queue the callback (its body is rendered when sent). With
    a ``handoff``, the callback is claimed for it and handed over at commit; otherwise the
    dispatchers are woken at commit to claim it."""
    refund = task.reserved_milli - (task.used_milli or 0)
    if refund > 0:
        await move_credits(connection, task.account_id, refund, "refund", now, task_id=task.id)
    url = task.params.callback_url
    if url is None:
        return
    if handoff is None:
        await queue_callback(connection, task.id, task.account_id, url, now)
        await db.notify_on_commit(connection, OUTBOX_CHANNEL)
        return
    delivery = await queue_claimed(connection, task, url, now, handoff.lease_seconds)
    db.after_commit(connection, lambda: handoff.send(delivery))

"""How a task is stored: row <-> ``TaskRecord``, the status values and the worker fence.

Every change a worker makes is fenced: ``WHERE id AND worker_id AND attempt AND status =
'processing'``, so a worker that lost its lease (reaped, cancelled, released) changes nothing.
"""

from __future__ import annotations

import dataclasses
import json
from datetime import datetime
from typing import Any

from sqlalchemy import BindParameter, ColumnElement, and_, bindparam

from qwenedit.domain.task import TaskParams, TaskRecord, TaskStatus
from qwenedit.store.database import AnyRow
from qwenedit.store.tables import tasks

PENDING, PROCESSING = TaskStatus.PENDING.value, TaskStatus.PROCESSING.value
COMPLETED, FAILED = TaskStatus.COMPLETED.value, TaskStatus.FAILED.value
TERMINAL = (COMPLETED, FAILED)
ACTIVE = (PENDING, PROCESSING)
NO_RESULTS = "[]"


_PARAM_NAMES = tuple(field.name for field in dataclasses.fields(TaskParams))


def params_json(params: TaskParams) -> str:
    """The stored form of ``params`` (``asdict`` would deep-copy every field first)."""
    return json.dumps({name: getattr(params, name) for name in _PARAM_NAMES})


def _params(text: str) -> TaskParams:
    data = json.loads(text)
    size = data["size"]
    return TaskParams(
        **{**data, "image_urls": tuple(data["image_urls"]), "size": tuple(size) if size else None}
    )


def task_record(row: AnyRow) -> TaskRecord:
    return TaskRecord(
        id=row.id,
        account_id=row.account_id,
        user_group=row.user_group,
        params=_params(row.params),
        status=TaskStatus(row.status),
        progress=row.progress,
        attempt=row.attempt,
        created_at=row.created_at,
        reserved_milli=row.reserved_milli,
        used_milli=row.used_milli,
        worker_id=row.worker_id,
        lease_expires_at=row.lease_expires_at,
        started_at=row.started_at,
        finished_at=row.finished_at,
        error_code=row.error_code,
        error_message=row.error_message,
        result_keys=tuple(json.loads(row.result_keys)),
        actual_prompt=row.actual_prompt,
        engine_seconds=None if row.engine_seconds is None else float(row.engine_seconds),
    )


FENCE = and_(
    tasks.c.id == bindparam("fenced_id", type_=tasks.c.id.type),
    tasks.c.worker_id == bindparam("fenced_worker", type_=tasks.c.worker_id.type),
    tasks.c.attempt == bindparam("fenced_attempt", type_=tasks.c.attempt.type),
    tasks.c.status == PROCESSING,
)
"""The fence, its values given at execution (``fenced``), so the worker's statements can be
built once: SQLAlchemy then finds their compiled form without building and walking them again
(the names differ from the columns', which an UPDATE reserves for its SET)."""


def fenced(task_id: str, worker_id: str, attempt: int) -> dict[str, Any]:
    """The parameters of ``FENCE``."""
    return {"fenced_id": task_id, "fenced_worker": worker_id, "fenced_attempt": attempt}


def ended(status: str, now: datetime | BindParameter[datetime], **values: Any) -> dict[str, Any]:
    """Column values of a task reaching a terminal status."""
    return {"status": status, "finished_at": now, "lease_expires_at": None, **values}


def failed(
    now: datetime | BindParameter[datetime], code: str | BindParameter[str], message: Any
) -> dict[str, Any]:
    return ended(FAILED, now, error_code=code, error_message=message, used_milli=0)


def purgeable(cutoff: datetime) -> ColumnElement[bool]:
    """Finished tasks created before ``cutoff``: gone for their owner, deleted by the reaper."""
    return and_(tasks.c.status.in_(TERMINAL), tasks.c.created_at < cutoff)

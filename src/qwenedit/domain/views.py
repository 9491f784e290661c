"""The wire shape of a task (DESIGN §4.1/§4.2), built from a stored record."""

from __future__ import annotations

from datetime import datetime

from qwenedit.domain.money import milli_to_wire
from qwenedit.domain.task import ErrorCode, TaskRecord, TaskStatus
from qwenedit.domain.wire import TaskError, TaskInfo, TaskObject, Usage


def wire_status(task: TaskRecord) -> TaskStatus:
    """A task requeued after a lost lease stays ``processing`` on the wire (DESIGN §8)."""
    if task.status is TaskStatus.PENDING and task.attempt > 0:
        return TaskStatus.PROCESSING
    return task.status


def _error(task: TaskRecord) -> TaskError:
    """A code outside DESIGN §4.2's list is shown as ``unknown_error``, never a broken body."""
    try:
        code = ErrorCode(task.error_code or ErrorCode.UNKNOWN_ERROR)
    except ValueError:
        code = ErrorCode.UNKNOWN_ERROR
    return TaskError(code=code, message=task.error_message or "")


def _timestamp(moment: datetime | None) -> int | None:
    return None if moment is None else int(moment.timestamp())


def task_view(
    task: TaskRecord,
    *,
    result_urls: list[str],
    estimated_time: int,
    results_expire_at: datetime | None = None,
    queue_position: int | None = None,
) -> TaskObject:
    terminal = task.status.is_terminal
    completed = task.status is TaskStatus.COMPLETED
    return TaskObject(
        created=task.created,
        id=task.id,
        progress=100 if completed else min(task.progress, 99),
        status=wire_status(task),
        task_info=TaskInfo(
            can_cancel=not terminal,
            estimated_time=0 if terminal else max(1, estimated_time),
            queue_position=queue_position if wire_status(task) is TaskStatus.PENDING else None,
        ),
        usage=Usage(
            credits_reserved=milli_to_wire(task.reserved_milli),
            user_group=task.user_group,
            credits_used=milli_to_wire(task.used_milli or 0) if terminal else None,
        ),
        seed=task.params.seed,
        results=result_urls if completed else None,
        results_expire_at=_timestamp(results_expire_at) if completed else None,
        error=_error(task) if task.status is TaskStatus.FAILED else None,
        actual_prompt=task.actual_prompt,
        completed_at=_timestamp(task.finished_at) if terminal else None,
    )

"""The wire shape of a task (DESIGN §4.1/§4.2), built from a stored record."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from qwenedit.domain.money import milli_to_wire
from qwenedit.domain.task import MODEL_NAME, TaskRecord, TaskStatus


def wire_status(task: TaskRecord) -> str:
    """A task requeued after a lost lease stays ``processing`` on the wire (DESIGN §8)."""
    if task.status is TaskStatus.PENDING and task.attempt > 0:
        return TaskStatus.PROCESSING.value
    return task.status.value


def task_view(
    task: TaskRecord,
    *,
    result_urls: list[str],
    estimated_time: int,
    results_expire_at: datetime | None = None,
) -> dict[str, Any]:
    terminal = task.status.is_terminal
    usage: dict[str, Any] = {
        "billing_rule": "per_call",
        "credits_reserved": milli_to_wire(task.reserved_milli),
        "user_group": task.user_group,
    }
    if terminal:
        usage["credits_used"] = milli_to_wire(task.used_milli or 0)
    view: dict[str, Any] = {
        "created": task.created,
        "id": task.id,
        "model": MODEL_NAME,
        "object": "image.generation.task",
        "progress": 100 if task.status is TaskStatus.COMPLETED else min(task.progress, 99),
        "status": wire_status(task),
        "task_info": {
            "can_cancel": not terminal,
            "estimated_time": 0 if terminal else max(1, estimated_time),
        },
        "type": "image",
        "usage": usage,
        "seed": task.params.seed,
    }
    if task.status is TaskStatus.COMPLETED:
        view["results"] = result_urls
        if results_expire_at is not None:
            view["results_expire_at"] = int(results_expire_at.timestamp())
    if task.status is TaskStatus.FAILED:
        view["error"] = {
            "code": task.error_code or "unknown_error",
            "message": task.error_message or "",
        }
    if task.actual_prompt is not None:
        view["actual_prompt"] = task.actual_prompt
    if terminal and task.finished_at is not None:
        view["completed_at"] = int(task.finished_at.timestamp())
    return view

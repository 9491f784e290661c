"""The task object built from a stored record, as the wire carries it (JSON text)."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from qwenedit.domain.task import TaskParams, TaskRecord, TaskStatus
from qwenedit.domain.views import task_view

CREATED = datetime(2025, 9, 6, 12, 0, tzinfo=UTC)


@pytest.fixture
def record() -> TaskRecord:
    params = TaskParams(
        prompt="make it blue",
        image_urls=("https://example.com/a.png",),
        n=2,
        negative_prompt=None,
        size=None,
        prompt_extend=False,
        watermark=False,
        seed=7,
        callback_url=None,
    )
    return TaskRecord(
        id="task-unified-1757160000-abcdefgh",
        account_id=1,
        user_group="default",
        params=params,
        status=TaskStatus.PENDING,
        progress=0,
        attempt=0,
        created_at=CREATED,
        reserved_milli=2500,
    )


def wire(task: TaskRecord, **extra: Any) -> dict[str, Any]:
    view = task_view(task, result_urls=extra.pop("result_urls", []), estimated_time=5, **extra)
    body: dict[str, Any] = json.loads(view.model_dump_json())
    return body


def test_a_pending_task_leaves_out_what_it_does_not_have(record: TaskRecord) -> None:
    body = wire(record)
    assert body == {
        "created": 1757160000,
        "id": record.id,
        "model": "qwen-image-edit-plus",
        "object": "image.generation.task",
        "progress": 0,
        "status": "pending",
        "task_info": {"can_cancel": True, "estimated_time": 5},
        "type": "image",
        "usage": {"billing_rule": "per_call", "credits_reserved": 2.5, "user_group": "default"},
        "seed": 7,
    }


def test_a_completed_task_has_results_times_and_whole_credits(record: TaskRecord) -> None:
    finished = CREATED + timedelta(seconds=30)
    done = replace(
        record, status=TaskStatus.COMPLETED, progress=90, used_milli=2000, finished_at=finished
    )
    expires = finished + timedelta(hours=24)
    body = wire(done, result_urls=["https://r/0.png"], results_expire_at=expires)
    assert body["progress"] == 100
    assert body["results"] == ["https://r/0.png"]
    assert body["results_expire_at"] == int(expires.timestamp())
    assert body["completed_at"] == int(finished.timestamp())
    assert body["task_info"] == {"can_cancel": False, "estimated_time": 0}
    assert type(body["usage"]["credits_used"]) is int
    assert "error" not in body


def test_a_requeued_task_stays_processing(record: TaskRecord) -> None:
    assert wire(replace(record, attempt=1))["status"] == "processing"


@pytest.mark.parametrize(
    ("stored", "shown"),
    [
        ("request_cancelled", "request_cancelled"),
        ("no_such_code", "unknown_error"),
        (None, "unknown_error"),
    ],
)
def test_a_failed_task_shows_a_listed_error_code(
    record: TaskRecord, stored: str | None, shown: str
) -> None:
    failed = replace(
        record, status=TaskStatus.FAILED, used_milli=0, error_code=stored, error_message="why"
    )
    body = wire(failed)
    assert body["error"] == {"code": shown, "message": "why"}
    assert "results" not in body
    assert body["usage"]["credits_used"] == 0

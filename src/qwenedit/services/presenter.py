"""Turns stored tasks into wire objects with expiring result links."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from qwenedit.blobs.links import ResultLinks
from qwenedit.domain.task import TaskRecord, TaskStatus
from qwenedit.domain.views import task_view
from qwenedit.domain.wire import TaskObject


class TaskPresenter:
    def __init__(self, *, links: ResultLinks, result_ttl: float) -> None:
        self._links = links
        self._ttl = timedelta(seconds=result_ttl)

    def results_expire_at(self, task: TaskRecord) -> datetime | None:
        """The same expiry on every read: completion time plus the result TTL (DESIGN §8)."""
        if task.status is not TaskStatus.COMPLETED or task.finished_at is None:
            return None
        return task.finished_at + self._ttl

    def result_urls(self, task: TaskRecord, now: datetime) -> list[str]:
        expires_at = self.results_expire_at(task)
        if expires_at is None or expires_at <= now:
            return []
        return [self._links.url(key, expires_at, now) for key in task.result_keys]

    def view(
        self,
        task: TaskRecord,
        *,
        now: datetime,
        estimated_time: int,
        queue_position: int | None = None,
    ) -> TaskObject:
        return task_view(
            task,
            result_urls=self.result_urls(task, now),
            estimated_time=estimated_time,
            queue_position=queue_position,
            results_expire_at=self.results_expire_at(task),
        )

    def callback_body(self, task: TaskRecord) -> bytes:
        """The callback body of a finished task, rendered when it is sent: exactly what
        ``GET /v1/tasks/{id}`` shows at that moment."""
        return self.view(task, now=datetime.now(UTC), estimated_time=0).model_dump_json().encode()

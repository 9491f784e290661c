"""A task's changes as Server-Sent Events (ours, not in the hosted interface)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header
from fastapi.responses import StreamingResponse

from qwenedit.api.deps import AccountDep, EventsDep
from qwenedit.api.openapi import errors
from qwenedit.domain.wire import TaskObject

router = APIRouter(prefix="/v1", tags=["tasks"])

_STREAM: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "``text/event-stream``: a ``task`` event whose data is the task object "
        "(as ``GET /v1/tasks/{task_id}`` shows it) on every change of status, progress or "
        "queue position; the stream ends after the completed or failed one. Event ids name "
        "the state shown: send the last one back as ``Last-Event-ID`` to resume.",
        "content": {
            "text/event-stream": {
                "schema": {"type": "string"},
                "x-event-data-schema": TaskObject.model_json_schema(mode="serialization"),
            }
        },
    }
}


@router.get(
    "/tasks/{task_id}/events",
    response_class=StreamingResponse,
    responses={**_STREAM, **errors(400, 401, 404, 429)},
    summary="Follow a task as Server-Sent Events",
)
async def task_events(
    task_id: str,
    events: EventsDep,
    account: AccountDep,
    last_event_id: Annotated[
        str | None,
        Header(alias="Last-Event-ID", description="The id of the last event received"),
    ] = None,
) -> StreamingResponse:
    frames = await events.open(account, task_id, last_event_id)
    return StreamingResponse(
        frames,
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )

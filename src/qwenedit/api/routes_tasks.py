"""Edits: create a task, read it, cancel it."""

from __future__ import annotations

from fastapi import APIRouter, Request

from qwenedit.api.deps import AccountDep, EditsDep
from qwenedit.api.json_body import read_json
from qwenedit.api.openapi import EDIT_REQUEST_OPENAPI, IDEMPOTENCY_HEADER, errors
from qwenedit.domain.wire import TaskObject

router = APIRouter(prefix="/v1", tags=["tasks"])


@router.post(
    "/images/generations",
    responses=errors(400, 401, 402, 404, 409, 413, 429, 503),
    openapi_extra=EDIT_REQUEST_OPENAPI,
    summary="Create an image-edit task",
)
async def create_task(request: Request, edits: EditsDep, account: AccountDep) -> TaskObject:
    """The ``Idempotency-Key`` header is read here, not declared as a parameter: FastAPI's
    validation of a header parameter was a tenth of this route's own work, for a string the
    service checks anyway (it is documented in ``EDIT_REQUEST_OPENAPI``)."""
    body = await read_json(request)
    idempotency_key = request.headers.get(IDEMPOTENCY_HEADER)
    return await edits.create(account, body, idempotency_key=idempotency_key)


@router.get("/tasks/{task_id}", responses=errors(400, 401, 404), summary="Read a task")
async def get_task(task_id: str, edits: EditsDep, account: AccountDep) -> TaskObject:
    return await edits.get(account, task_id)


@router.post(
    "/tasks/{task_id}/cancel", responses=errors(400, 401, 404, 409), summary="Cancel a task"
)
async def cancel_task(task_id: str, edits: EditsDep, account: AccountDep) -> TaskObject:
    return await edits.cancel(account, task_id)

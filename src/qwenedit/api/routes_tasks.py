"""Edits: create a task, read it, cancel it."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Request

from qwenedit.api.deps import AccountDep, EditsDep
from qwenedit.api.json_body import read_json
from qwenedit.api.openapi import EDIT_REQUEST_OPENAPI, errors
from qwenedit.domain.wire import TaskObject

router = APIRouter(prefix="/v1", tags=["tasks"])


@router.post(
    "/images/generations",
    responses=errors(400, 401, 402, 404, 409, 413, 429, 503),
    openapi_extra=EDIT_REQUEST_OPENAPI,
    summary="Create an image-edit task",
)
async def create_task(
    request: Request,
    edits: EditsDep,
    account: AccountDep,
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            description="Within 24 h, the same key from the same account returns the first task",
        ),
    ] = None,
) -> TaskObject:
    body = await read_json(request)
    return await edits.create(account, body, idempotency_key=idempotency_key)


@router.get("/tasks/{task_id}", responses=errors(400, 401, 404), summary="Read a task")
async def get_task(task_id: str, edits: EditsDep, account: AccountDep) -> TaskObject:
    return await edits.get(account, task_id)


@router.post(
    "/tasks/{task_id}/cancel", responses=errors(400, 401, 404, 409), summary="Cancel a task"
)
async def cancel_task(task_id: str, edits: EditsDep, account: AccountDep) -> TaskObject:
    return await edits.cancel(account, task_id)

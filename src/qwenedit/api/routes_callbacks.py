"""A task's callback deliveries (ours, not in the hosted interface)."""

from __future__ import annotations

from fastapi import APIRouter

from qwenedit.api.deps import AccountDep, CallbacksDep
from qwenedit.api.openapi import errors
from qwenedit.domain.wire import CallbackHistory

router = APIRouter(prefix="/v1", tags=["callbacks"])


@router.get(
    "/tasks/{task_id}/callbacks",
    responses=errors(400, 401, 404),
    summary="Callback deliveries of a task",
)
async def list_callbacks(
    task_id: str, callbacks: CallbacksDep, account: AccountDep
) -> CallbackHistory:
    """Every delivery of the task's callback with each attempt: time, status code or error,
    duration."""
    return await callbacks.history(account, task_id)


@router.post(
    "/tasks/{task_id}/callbacks/redeliver",
    responses=errors(400, 401, 404, 409),
    summary="Send the callback again",
)
async def redeliver_callback(
    task_id: str, callbacks: CallbacksDep, account: AccountDep
) -> CallbackHistory:
    """Queue the task's final body once more, with a new webhook-id and a fresh schedule."""
    return await callbacks.redeliver(account, task_id)

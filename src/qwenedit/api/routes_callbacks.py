"""A task's callback deliveries (ours, not in the hosted interface)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from qwenedit.api.deps import AccountDep, CallbacksDep

router = APIRouter(prefix="/v1", tags=["callbacks"])


@router.get("/tasks/{task_id}/callbacks", summary="Callback deliveries of a task")
async def list_callbacks(task_id: str, callbacks: CallbacksDep, account: AccountDep) -> Any:
    """Every delivery of the task's callback with each attempt: time, status code or error,
    duration."""
    return await callbacks.history(account, task_id)


@router.post("/tasks/{task_id}/callbacks/redeliver", summary="Send the callback again")
async def redeliver_callback(task_id: str, callbacks: CallbacksDep, account: AccountDep) -> Any:
    """Queue the task's final body once more, with a new webhook-id and a fresh schedule."""
    return await callbacks.redeliver(account, task_id)

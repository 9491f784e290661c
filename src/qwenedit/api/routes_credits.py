"""The calling account's balance."""

from __future__ import annotations

from fastapi import APIRouter

from qwenedit.api.deps import AccountDep, CallersDep
from qwenedit.api.openapi import errors
from qwenedit.domain.wire import Credits

router = APIRouter(prefix="/v1", tags=["account"])


@router.get("/credits", responses=errors(401), summary="Balance of the caller")
async def get_credits(account: AccountDep, callers: CallersDep) -> Credits:
    return await callers.credits(account)

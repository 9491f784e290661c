"""The calling account's balance."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from qwenedit.api.deps import AccountDep
from qwenedit.api.schemas import Credits
from qwenedit.domain.money import milli_to_wire

router = APIRouter(prefix="/v1", tags=["account"])


@router.get("/credits", responses={200: {"model": Credits}}, summary="Balance of the caller")
async def get_credits(account: AccountDep) -> dict[str, Any]:
    return {
        "account": account.name,
        "balance": milli_to_wire(account.balance_milli),
        "user_group": account.user_group,
    }

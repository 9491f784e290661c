"""Dependencies routes declare: the runtime and the calling account."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from qwenedit.errors import AuthenticationFailed
from qwenedit.runtime import Runtime
from qwenedit.store.accounts import Account


def get_runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


async def get_account(request: Request, runtime: RuntimeDep) -> Account:
    header = request.headers.get("authorization", "")
    scheme, _, key = header.partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise AuthenticationFailed("Missing bearer token: send Authorization: Bearer <API key>")
    account = await runtime.accounts.authenticate(key.strip())
    if account is None:
        raise AuthenticationFailed("Invalid or revoked API key")
    return account


AccountDep = Annotated[Account, Depends(get_account)]

"""Dependencies routes declare: the service they use and the calling account.

Every dependency is ``async def``, even one that only reads an attribute: FastAPI runs a plain
``def`` dependency on a worker thread, a thread round trip per request for nothing."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from qwenedit.errors import AuthenticationFailed
from qwenedit.runtime import Runtime
from qwenedit.services.callbacks import CallbackService
from qwenedit.services.callers import CallerService
from qwenedit.services.edits import EditService
from qwenedit.services.events import TaskEvents
from qwenedit.services.openai_edits import OpenAIEdits
from qwenedit.services.operations import OperationsService
from qwenedit.services.results import ResultService
from qwenedit.services.uploads import UploadService
from qwenedit.store.accounts import Caller


def _runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


async def _edits(request: Request) -> EditService:
    return _runtime(request).edits


async def _events(request: Request) -> TaskEvents:
    return _runtime(request).events


async def _openai_edits(request: Request) -> OpenAIEdits:
    return _runtime(request).openai_edits


async def _uploads(request: Request) -> UploadService:
    return _runtime(request).uploads


async def _callbacks(request: Request) -> CallbackService:
    return _runtime(request).callbacks


async def _results(request: Request) -> ResultService:
    return _runtime(request).results


async def _operations(request: Request) -> OperationsService:
    return _runtime(request).operations


async def _callers(request: Request) -> CallerService:
    return _runtime(request).callers


EditsDep = Annotated[EditService, Depends(_edits)]
EventsDep = Annotated[TaskEvents, Depends(_events)]
OpenAIEditsDep = Annotated[OpenAIEdits, Depends(_openai_edits)]
UploadsDep = Annotated[UploadService, Depends(_uploads)]
CallbacksDep = Annotated[CallbackService, Depends(_callbacks)]
ResultsDep = Annotated[ResultService, Depends(_results)]
OperationsDep = Annotated[OperationsService, Depends(_operations)]
CallersDep = Annotated[CallerService, Depends(_callers)]


async def _account(request: Request) -> Caller:
    header = request.headers.get("authorization", "")
    scheme, _, key = header.partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise AuthenticationFailed("Missing bearer token: send Authorization: Bearer <API key>")
    account = await _runtime(request).callers.authenticate(key.strip())
    if account is None:
        raise AuthenticationFailed("Invalid or revoked API key")
    return account


AccountDep = Annotated[Caller, Depends(_account)]

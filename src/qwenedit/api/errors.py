"""Every failure answers the error envelope of DESIGN §4.5, whatever raised it."""

from __future__ import annotations

import logging

import asyncpg  # type: ignore[import-untyped]
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from sqlalchemy.exc import SQLAlchemyError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from qwenedit.api.outage_log import OutageAnswers
from qwenedit.domain.wire import ErrorBody, ErrorEnvelope
from qwenedit.errors import (
    ApiError,
    AuthenticationFailed,
    DependencyUnavailable,
    DomainError,
    InternalError,
    InvalidRequest,
    MethodNotAllowed,
    NotFound,
    PermissionDenied,
    RateLimited,
    RequestTooLarge,
    ServiceUnavailable,
    StorageError,
)
from qwenedit.services.api_errors import as_api_error, outage_error

log = logging.getLogger(__name__)

_OUTAGE_TYPES: tuple[type[Exception], ...] = (
    SQLAlchemyError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    OSError,
    StorageError,
    DependencyUnavailable,
)
"""What a database or blob store that cannot be reached raises (``resilience.dependency_of``
tells an outage from a bug among them)."""

_BY_STATUS: dict[int, type[ApiError]] = {
    400: InvalidRequest,
    401: AuthenticationFailed,
    403: PermissionDenied,
    404: NotFound,
    405: MethodNotAllowed,
    413: RequestTooLarge,
    429: RateLimited,
    503: ServiceUnavailable,
}


def envelope(error: ApiError) -> ErrorEnvelope:
    return ErrorEnvelope(
        error=ErrorBody(
            code=error.status,
            message=error.message,
            type=error.type,
            param=error.param,
            fallback_suggestion=error.fallback_suggestion,
        )
    )


def error_response(error: ApiError) -> Response:
    headers = {"Retry-After": str(error.retry_after)} if error.retry_after is not None else None
    if isinstance(error, AuthenticationFailed):
        headers = {**(headers or {}), "WWW-Authenticate": "Bearer"}
    return Response(
        envelope(error).model_dump_json(),
        status_code=error.status,
        headers=headers,
        media_type="application/json",
    )


async def _api_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return error_response(exc)


async def _domain_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, DomainError)
    return error_response(as_api_error(exc))


async def _http_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    kind = _BY_STATUS.get(exc.status_code, InvalidRequest)
    message = "Not found" if exc.status_code == 404 else str(exc.detail)
    return error_response(kind(message))


async def _validation_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    first = exc.errors()[0] if exc.errors() else {}
    location = [str(part) for part in first.get("loc", ()) if part not in ("body", "query", "path")]
    param = location[-1] if location else None
    return error_response(InvalidRequest(str(first.get("msg", "Invalid request")), param=param))


async def _client_gone(request: Request, exc: Exception) -> Response:
    """The client left (or was cut for sending too slowly) before its body was complete; the
    answer reaches nobody, and it is no error of ours."""
    log.info(
        "%s %s: the client left before its body was complete", request.method, request.url.path
    )
    return error_response(InvalidRequest("The request body did not arrive"))


async def _outage(request: Request, exc: Exception) -> Response:
    """A dependency that cannot be reached now: 503 with ``Retry-After``, logged without a
    stack trace and at most every few seconds (``outage_log``). Any other error of these types
    is a bug, answered as one (500)."""
    unavailable = outage_error(exc)
    if unavailable is None:
        raise exc
    answers: OutageAnswers = request.app.state.outage_answers
    answers.answered(f"{request.method} {request.url.path}", exc)
    return error_response(unavailable)


async def _unexpected(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return error_response(InternalError("Internal server error"))


def install_error_handlers(app: FastAPI) -> None:
    app.state.outage_answers = OutageAnswers()
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(DomainError, _domain_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(ClientDisconnect, _client_gone)
    for kind in _OUTAGE_TYPES:
        app.add_exception_handler(kind, _outage)
    app.add_exception_handler(Exception, _unexpected)

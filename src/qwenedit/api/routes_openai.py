"""OpenAI-compatible routes: ``POST /v1/images/edits`` and ``GET /v1/models``, so the
``openai`` package (``OpenAI(base_url=..., api_key=...).images.edit(...)``) works unchanged.

Their errors are in OpenAI's shape (``{"error": {"message", "type", "param", "code"}}``), not
our envelope: the route class below catches every error of these routes, authentication
included, and words it that way."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import APIRouter, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from fastapi.routing import APIRoute
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException

from qwenedit.api.deps import AccountDep, OpenAIEditsDep
from qwenedit.domain.wire import (
    ModelList,
    ModelObject,
    OpenAIErrorBody,
    OpenAIErrorEnvelope,
    OpenAIImagesResponse,
)
from qwenedit.errors import ApiError, DomainError, InvalidRequest, RequestTooLarge
from qwenedit.services.api_errors import as_api_error
from qwenedit.services.openai_edits import MODEL, OpenAIEditForm

MODEL_CREATED = 1757116800
"""When qwen-image-edit-plus (Qwen-Image-Edit-2509) was published: 2025-09-16."""
MAX_FIELDS = 20
IMAGE_FIELDS = ("image", "image[]")


def _as_api_error(exc: Exception) -> ApiError | None:
    match exc:
        case ApiError():
            return exc
        case DomainError():
            return as_api_error(exc)
        case RequestValidationError():
            return InvalidRequest("Invalid request")
        case StarletteHTTPException(status_code=413):
            return RequestTooLarge(str(exc.detail))
        case StarletteHTTPException():
            return InvalidRequest(str(exc.detail))
    return None


def openai_error(error: ApiError) -> Response:
    body = OpenAIErrorEnvelope(
        error=OpenAIErrorBody(
            message=error.message, type=error.type, param=error.param, code=error.code
        )
    )
    headers = {"Retry-After": str(error.retry_after)} if error.retry_after is not None else None
    return Response(
        body.model_dump_json(),
        status_code=error.status,
        headers=headers,
        media_type="application/json",
    )


class OpenAIRoute(APIRoute):
    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def answer(request: Request) -> Response:
            try:
                return await handler(request)
            except Exception as exc:
                error = _as_api_error(exc)
                if error is None:
                    raise
                return openai_error(error)

        return answer


def _errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    declared: dict[int | str, dict[str, Any]] = {
        status: {"model": OpenAIErrorEnvelope} for status in statuses
    }
    declared["default"] = {"model": OpenAIErrorEnvelope, "description": "Any other error"}
    return declared


_EDIT_FORM: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["image", "prompt"],
                    "properties": {
                        "image": {
                            "type": "array",
                            "items": {"type": "string", "format": "binary"},
                            "minItems": 1,
                            "maxItems": 3,
                            "description": "1-3 images; also accepted as image[]",
                        },
                        "prompt": {"type": "string", "maxLength": 2000},
                        "n": {"type": "integer", "minimum": 1, "maximum": 6, "default": 1},
                        "size": {"type": "string", "examples": ["1024x1024", "auto"]},
                        "response_format": {
                            "type": "string",
                            "enum": ["url", "b64_json"],
                            "default": "url",
                        },
                        "model": {"type": "string", "enum": [MODEL]},
                        "user": {"type": "string", "description": "Accepted and ignored"},
                    },
                }
            }
        },
    }
}

router = APIRouter(prefix="/v1", tags=["openai"], route_class=OpenAIRoute)


def _text(value: str | UploadFile | None) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidRequest("Expected a text field, got a file")
    return value


@router.post(
    "/images/edits",
    responses=_errors(400, 401, 402, 404, 409, 413, 429, 500, 503),
    openapi_extra=_EDIT_FORM,
    summary="Edit images, OpenAI style: waits for the task and answers the images",
)
async def create_edit(
    request: Request, account: AccountDep, openai_edits: OpenAIEditsDep
) -> OpenAIImagesResponse:
    async with request.form(max_files=len(IMAGE_FIELDS) * 3, max_fields=MAX_FIELDS) as form:
        images = []
        for name in IMAGE_FIELDS:
            for part in form.getlist(name):
                if not isinstance(part, UploadFile):
                    raise InvalidRequest("image must be a file", param="image")
                images.append(await part.read())
        fields = {
            name: _text(form.get(name)) for name in ("prompt", "n", "size", "response_format")
        }
        edit = OpenAIEditForm(
            prompt=fields["prompt"],
            images=images,
            n=fields["n"],
            size=fields["size"],
            response_format=fields["response_format"],
            model=_text(form.get("model")),
        )
    return await openai_edits.edit(account, edit, disconnected=request.is_disconnected)


@router.get("/models", responses=_errors(401), summary="The model this server runs")
async def list_models(_account: AccountDep) -> ModelList:
    return ModelList(data=[ModelObject(id=MODEL, created=MODEL_CREATED, owned_by="qwen")])

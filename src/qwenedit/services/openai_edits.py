"""The OpenAI Images API's edit (``POST /v1/images/edits``): a task on the same queue, with
the same billing, that the request waits for.

The images arrive in the request: they are stored as uploads and the task reads them as it
reads any upload. The answer carries result links or the PNGs themselves. A client that goes
away before the end cancels its task (and so gets its reserve back), as does running past
``sync_timeout``."""

from __future__ import annotations

import asyncio
import base64
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from qwenedit.blobs.base import BlobStore
from qwenedit.domain.task import ErrorCode, TaskRecord, TaskStatus
from qwenedit.domain.wire import OpenAIImage, OpenAIImagesResponse
from qwenedit.errors import (
    ApiError,
    Conflict,
    InternalError,
    InvalidRequest,
    NotFound,
    ServiceUnavailable,
    TaskAlreadyFinished,
)
from qwenedit.services.edits import EditService
from qwenedit.services.uploads import UploadService
from qwenedit.setting_groups import RetentionSettings, StreamSettings
from qwenedit.store.accounts import Caller
from qwenedit.store.tasks import TaskRepo

MODEL = "qwen-image-edit-plus"
RESPONSE_FORMATS = ("url", "b64_json")
_CLIENT_FAULTS = {
    ErrorCode.INVALID_PARAMETERS,
    ErrorCode.IMAGE_PROCESSING_ERROR,
    ErrorCode.IMAGE_DIMENSION_MISMATCH,
    ErrorCode.CONTENT_POLICY_VIOLATION,
}
_UNAVAILABLE = {ErrorCode.RESOURCE_EXHAUSTED, ErrorCode.SERVICE_UNAVAILABLE}


@dataclass(frozen=True)
class OpenAIEditForm:
    """The multipart fields as sent (strings), the images as bytes."""

    prompt: str | None
    images: list[bytes]
    n: str | None = None
    size: str | None = None
    response_format: str | None = None
    model: str | None = None


def _failure(task: TaskRecord) -> ApiError:
    """A failed task as an error answer, carrying its code."""
    code = task.error_code or ErrorCode.UNKNOWN_ERROR.value
    message = task.error_message or "The edit failed"
    kind: type[ApiError]
    if code in _CLIENT_FAULTS:
        kind = InvalidRequest
    elif code in _UNAVAILABLE:
        kind = ServiceUnavailable
    elif code == ErrorCode.REQUEST_CANCELLED:
        kind = Conflict
    else:
        kind = InternalError
    return kind(message, code=code)


def _n(raw: str | None) -> int | None:
    if raw is None:
        return None
    if not raw.isdigit():
        raise InvalidRequest("n must be an integer from 1 to 6", param="n")
    return int(raw)


class OpenAIEdits:
    def __init__(
        self,
        *,
        streams: StreamSettings,
        retention: RetentionSettings,
        edits: EditService,
        uploads: UploadService,
        tasks: TaskRepo,
        blobs: BlobStore,
    ) -> None:
        self._poll = streams.event_poll_seconds
        self._timeout = streams.sync_timeout
        self._retention = retention
        self._edits = edits
        self._uploads = uploads
        self._tasks = tasks
        self._blobs = blobs

    async def edit(
        self,
        account: Caller,
        form: OpenAIEditForm,
        *,
        disconnected: Callable[[], Awaitable[bool]],
    ) -> OpenAIImagesResponse:
        body = await self._body(account, form)
        try:
            created = await self._edits.create(account, body)
        except ApiError as exc:
            if exc.param == "image_urls":
                exc.param = "image"
            raise
        task = await self._wait(account, created.id, disconnected)
        if task.status is not TaskStatus.COMPLETED:
            raise _failure(task)
        return await self._answer(task, form.response_format or "url")

    async def _body(self, account: Caller, form: OpenAIEditForm) -> dict[str, Any]:
        if form.model not in (None, "", MODEL):
            raise NotFound(f"The model {form.model!r} does not exist: use {MODEL}", param="model")
        if form.response_format not in (None, *RESPONSE_FORMATS):
            raise InvalidRequest("response_format must be url or b64_json", param="response_format")
        if not 1 <= len(form.images) <= 3:
            raise InvalidRequest("Send 1 to 3 images", param="image")
        n = _n(form.n)
        urls = []
        for data in form.images:
            try:
                urls.append((await self._uploads.upload(account, data)).url)
            except ApiError as exc:
                exc.param = "image"
                raise
        body: dict[str, Any] = {"model": MODEL, "prompt": form.prompt, "image_urls": urls}
        if n is not None:
            body["n"] = n
        if form.size not in (None, "", "auto"):
            body["size"] = form.size
        return body

    async def _wait(
        self, account: Caller, task_id: str, disconnected: Callable[[], Awaitable[bool]]
    ) -> TaskRecord:
        """Until the task ends; a client gone or the timeout cancels it."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._timeout
        try:
            while True:
                task = await self._tasks.get(
                    task_id, account.id, retention_seconds=self._retention.task_retention
                )
                if task.status.is_terminal:
                    return task
                if await disconnected():
                    await self._cancel(account, task_id)
                    raise InvalidRequest("The client went away; the task was cancelled")
                if loop.time() >= deadline:
                    if await self._cancel(account, task_id):
                        raise ServiceUnavailable(
                            f"The edit did not finish within {self._timeout:g} s; it was "
                            "cancelled and refunded",
                            retry_after=1,
                        )
                    continue  # it ended meanwhile: answer with that
                await asyncio.sleep(self._poll)
        except asyncio.CancelledError:
            await asyncio.shield(self._cancel(account, task_id))
            raise

    async def _cancel(self, account: Caller, task_id: str) -> bool:
        """``False`` when the task had already ended."""
        with contextlib.suppress(TaskAlreadyFinished):
            await self._tasks.cancel(task_id, account.id)
            return True
        return False

    async def _answer(self, task: TaskRecord, response_format: str) -> OpenAIImagesResponse:
        if response_format == "url":
            shown = await self._edits.present(task)
            images = [
                OpenAIImage(url=url, revised_prompt=task.actual_prompt)
                for url in shown.results or []
            ]
        else:
            images = []
            for key in task.result_keys:
                data = await self._blobs.get(key)
                if data is None:
                    raise InternalError("A result image is missing")
                encoded = base64.b64encode(data).decode()
                images.append(OpenAIImage(b64_json=encoded, revised_prompt=task.actual_prompt))
        return OpenAIImagesResponse(created=task.created, data=images)

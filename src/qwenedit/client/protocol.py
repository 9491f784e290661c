"""The parts of talking to the server that do no I/O, shared by ``Client`` and
``AsyncClient``: request bodies, error answers, retry delays and the event-stream parser."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import httpx

from qwenedit.errors import (
    AuthenticationError,
    BadRequestError,
    InsufficientCreditsError,
    NotFoundError,
    RateLimitError,
    ResponseError,
    UnavailableError,
)

DEFAULT_TIMEOUT = httpx.Timeout(60.0, connect=10.0)
"""Each HTTP call; waiting for a task has its own, overall, timeout."""
MAX_RETRIES = 3
"""How often a 429 or 503 is retried after its ``Retry-After``."""
MAX_RETRY_WAIT = 30.0
POLL_SECONDS = 1.0
"""How often ``wait`` reads the task when the event stream is not available."""

_ERRORS: dict[int, type[ResponseError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    402: InsufficientCreditsError,
    404: NotFoundError,
    409: BadRequestError,
    429: RateLimitError,
    503: UnavailableError,
}


class PilImage(Protocol):
    """A ``PIL.Image.Image``, without importing Pillow to recognise one."""

    def save(self, fp: io.BytesIO, format: str | None = None) -> None: ...


ImageInput = str | Path | bytes | PilImage
"""An input image: an ``http(s)://`` or ``data:`` URL as it is, or a local path, bytes or PIL
image, uploaded first through ``/v1/files``."""


def is_url(image: ImageInput) -> bool:
    return isinstance(image, str) and image.startswith(("http://", "https://", "data:"))


def image_bytes(image: ImageInput) -> bytes:
    """The bytes to upload for a local image."""
    if isinstance(image, bytes):
        return image
    if isinstance(image, str | Path):
        return Path(image).read_bytes()
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def create_body(
    prompt: str,
    image_urls: list[str],
    *,
    n: int | None = None,
    size: str | None = None,
    seed: int | None = None,
    negative_prompt: str | None = None,
    prompt_extend: bool | None = None,
    watermark: bool | None = None,
    callback_url: str | None = None,
) -> dict[str, Any]:
    """The create body with only the options given (the server's defaults for the rest)."""
    options = {
        "n": n,
        "size": size,
        "seed": seed,
        "negative_prompt": negative_prompt,
        "prompt_extend": prompt_extend,
        "watermark": watermark,
        "callback_url": callback_url,
    }
    body: dict[str, Any] = {"model": "qwen-image-edit-plus", "prompt": prompt}
    body["image_urls"] = image_urls
    body.update({key: value for key, value in options.items() if value is not None})
    return body


def _retry_after(response: httpx.Response) -> float | None:
    try:
        return max(0.0, float(response.headers["retry-after"]))
    except (KeyError, ValueError):
        return None


def response_error(response: httpx.Response) -> ResponseError:
    """The typed error for an error answer; its envelope's fields when it has one."""
    message, type_, param = response.reason_phrase or "error", "", None
    try:
        envelope = response.json()["error"]
        message = str(envelope.get("message", message))
        type_ = str(envelope.get("type", ""))
        param = envelope.get("param")
    except (ValueError, KeyError, TypeError, AttributeError):
        pass
    kind = _ERRORS.get(response.status_code, ResponseError)
    return kind(
        response.status_code,
        message,
        type=type_,
        param=param,
        retry_after=_retry_after(response),
    )


def retry_delay(response: httpx.Response, retries_done: int) -> float | None:
    """Seconds to wait before sending again, ``None`` when the answer stands."""
    if response.status_code not in (429, 503) or retries_done >= MAX_RETRIES:
        return None
    delay = _retry_after(response)
    return min(MAX_RETRY_WAIT, delay if delay is not None else 2.0**retries_done)


@dataclass
class ServerEvent:
    event: str
    data: str
    id: str | None


class EventParser:
    """Server-Sent Events, line by line (the WHATWG rules this server's streams need)."""

    def __init__(self) -> None:
        self.last_id: str | None = None
        self._event = ""
        self._data: list[str] = []

    def feed(self, line: str) -> ServerEvent | None:
        """One line without its ending; an event when the line ends one."""
        if not line:
            if not self._data:
                self._event = ""
                return None
            event = ServerEvent(self._event or "message", "\n".join(self._data), self.last_id)
            self._event, self._data = "", []
            return event
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            self._event = value
        elif name == "data":
            self._data.append(value)
        elif name == "id" and "\0" not in value:
            self.last_id = value
        return None


def task_event(event: ServerEvent) -> dict[str, Any] | None:
    if event.event != "task":
        return None
    body: dict[str, Any] = json.loads(event.data)
    return body

"""The blocking client."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import httpx

from qwenedit.client.models import Balance, Task, UploadedFile
from qwenedit.client.protocol import (
    DEFAULT_TIMEOUT,
    POLL_SECONDS,
    EventParser,
    ImageInput,
    create_body,
    image_bytes,
    is_url,
    response_error,
    retry_delay,
    task_event,
)
from qwenedit.client.settings import ClientSettings
from qwenedit.errors import AuthenticationError, ResponseError, TaskFailed, WaitTimeout

OnUpdate = Callable[[Task], None]
STREAM_READ_SECONDS = 30.0
"""Longer than the server's keep-alive interval: a quiet stream is not a dead one."""


def state(task: Task) -> tuple[str, int, int | None]:
    return task.status, task.progress, task.queue_position


class Client:
    """``Client(base_url, api_key)``; either falls back to ``QWENEDIT_BASE_URL`` and
    ``QWENEDIT_API_KEY``. Each HTTP call has ``timeout``; 429 and 503 answers are retried after
    their ``Retry-After`` a few times. ``transport`` is httpx's seam, for tests and proxies."""

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        settings = ClientSettings()
        key = api_key or (settings.api_key.get_secret_value() if settings.api_key else None)
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self._http = httpx.Client(
            base_url=base_url or settings.base_url,
            headers=headers,
            timeout=timeout,
            transport=transport,
        )
        self.tasks = Tasks(self)
        self.files = Files(self)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        retries = 0
        while True:
            response = self._http.request(method, url, **kwargs)
            if response.is_success:
                return response
            delay = retry_delay(response, retries)
            if delay is None:
                raise response_error(response)
            retries += 1
            time.sleep(delay)

    def stream(
        self, method: str, url: str, **kwargs: Any
    ) -> AbstractContextManager[httpx.Response]:
        """A streamed answer (no retries: the caller reads the status)."""
        return self._http.stream(method, url, **kwargs)

    def edit(
        self,
        prompt: str,
        images: Sequence[ImageInput],
        *,
        n: int | None = None,
        size: str | None = None,
        seed: int | None = None,
        negative_prompt: str | None = None,
        prompt_extend: bool | None = None,
        watermark: bool | None = None,
        callback_url: str | None = None,
        on_update: OnUpdate | None = None,
        timeout: float | None = None,
    ) -> Task:
        """Upload the local images, create the task, wait for it: the completed task, or
        ``TaskFailed`` with its code and message."""
        urls = [str(i) if is_url(i) else self.files.upload(i).url for i in images]
        task = self.tasks.create(
            prompt,
            urls,
            n=n,
            size=size,
            seed=seed,
            negative_prompt=negative_prompt,
            prompt_extend=prompt_extend,
            watermark=watermark,
            callback_url=callback_url,
        )
        done = self.tasks.wait(task.id, on_update=on_update, timeout=timeout)
        if done.status == "failed":
            raise TaskFailed(done.id, done.error_code or "unknown_error", done.error_message or "")
        return done

    def credits(self) -> Balance:
        body = self.request("GET", "/v1/credits").json()
        return Balance(body["account"], body["balance"], body["user_group"])


class Tasks:
    def __init__(self, client: Client) -> None:
        self._client = client

    def create(
        self,
        prompt: str,
        image_urls: Sequence[str],
        *,
        idempotency_key: str | None = None,
        **options: Any,
    ) -> Task:
        """A new pending task; ``options`` are the create fields (n, size, seed, ...). The
        ``Idempotency-Key`` (a fresh one by default) makes a retried create safe."""
        body = create_body(prompt, list(image_urls), **options)
        headers = {"Idempotency-Key": idempotency_key or uuid.uuid4().hex}
        response = self._client.request(
            "POST", "/v1/images/generations", json=body, headers=headers
        )
        return Task.from_wire(response.json())

    def get(self, task_id: str) -> Task:
        return Task.from_wire(self._client.request("GET", f"/v1/tasks/{task_id}").json())

    def cancel(self, task_id: str) -> Task:
        return Task.from_wire(self._client.request("POST", f"/v1/tasks/{task_id}/cancel").json())

    def wait(
        self, task_id: str, *, on_update: OnUpdate | None = None, timeout: float | None = None
    ) -> Task:
        """The ended task (completed or failed: this does not raise ``TaskFailed``). Follows
        the event stream, resuming it after a dropped connection, and reads the task every
        second instead when the server offers no stream. ``WaitTimeout`` after ``timeout``."""
        deadline = None if timeout is None else time.monotonic() + timeout
        seen: list[tuple[str, int, int | None]] = []

        def report(task: Task) -> None:
            if not seen or seen[-1] != state(task):
                seen.append(state(task))
                if on_update is not None:
                    on_update(task)

        def remaining() -> float:
            if deadline is None:
                return STREAM_READ_SECONDS
            left = deadline - time.monotonic()
            if left <= 0:
                raise WaitTimeout(task_id, timeout or 0.0)
            return left

        task = self.get(task_id)
        report(task)
        parser = EventParser()
        streaming = True
        while not task.done:
            left = remaining()
            if streaming:
                try:
                    task = self._follow(task_id, parser, report, min(left, STREAM_READ_SECONDS))
                    continue
                except AuthenticationError:
                    raise
                except ResponseError:
                    streaming = False
                except httpx.TransportError:
                    pass
            time.sleep(min(POLL_SECONDS, left))
            task = self.get(task_id)
            report(task)
        return task

    def _follow(
        self, task_id: str, parser: EventParser, report: OnUpdate, read_seconds: float
    ) -> Task:
        """Read the stream until it ends; the last task it showed (or a fresh read)."""
        headers = {"Accept": "text/event-stream"}
        if parser.last_id is not None:
            headers["Last-Event-ID"] = parser.last_id
        last: Task | None = None
        timeout = httpx.Timeout(read_seconds, connect=10.0)
        with self._client.stream(
            "GET", f"/v1/tasks/{task_id}/events", headers=headers, timeout=timeout
        ) as response:
            if not response.is_success:
                response.read()
                raise response_error(response)
            for line in response.iter_lines():
                event = parser.feed(line)
                body = None if event is None else task_event(event)
                if body is not None:
                    last = Task.from_wire(body)
                    report(last)
                    if last.done:
                        return last
        return last if last is not None else self.get(task_id)


class Files:
    def __init__(self, client: Client) -> None:
        self._client = client

    def upload(self, image: ImageInput) -> UploadedFile:
        """Upload a local path, bytes or PIL image; its URL works as a task input."""
        name = Path(image).name if isinstance(image, str | Path) else "image.png"
        files = {"file": (name, image_bytes(image), "application/octet-stream")}
        response = self._client.request("POST", "/v1/files", files=files)
        return UploadedFile.from_wire(response.json())

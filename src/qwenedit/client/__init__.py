"""The Python client of a qwenedit server (or any server of the qwen-image-edit-plus task API).

    from qwenedit.client import Client

    with Client("http://127.0.0.1:8000", "qe_...") as client:
        task = client.edit("add a red hat", images=["house.png"], n=2)
        print(task.save("out"))

``AsyncClient`` is the same with ``await``. Errors are ``qwenedit.errors.ClientError``s:
``ResponseError`` (and one subclass per status) for an error answer, ``TaskFailed`` for a task
that ended failed, ``WaitTimeout`` when ``timeout`` ran out.
"""

from __future__ import annotations

from qwenedit.client.aio import AsyncClient
from qwenedit.client.models import Balance, Task, UploadedFile
from qwenedit.client.sync import Client
from qwenedit.client.webhooks import verify_webhook
from qwenedit.errors import (
    AuthenticationError,
    BadRequestError,
    ClientError,
    InsufficientCreditsError,
    NotFoundError,
    RateLimitError,
    ResponseError,
    TaskFailed,
    UnavailableError,
    WaitTimeout,
    WebhookVerificationError,
)

__all__ = [
    "AsyncClient",
    "AuthenticationError",
    "BadRequestError",
    "Balance",
    "Client",
    "ClientError",
    "InsufficientCreditsError",
    "NotFoundError",
    "RateLimitError",
    "ResponseError",
    "Task",
    "TaskFailed",
    "UnavailableError",
    "UploadedFile",
    "WaitTimeout",
    "WebhookVerificationError",
    "verify_webhook",
]

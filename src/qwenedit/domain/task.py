"""Task states, error codes, ids and the stored shape of a task."""

from __future__ import annotations

import re
import secrets
import string
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

MODEL_NAME = "qwen-image-edit-plus"
TASK_ID_PATTERN = re.compile(r"^task-unified-\d{1,12}-[a-z0-9]{8}$")
_ID_ALPHABET = string.ascii_lowercase + string.digits
_ID_SUFFIX_CHARS = 8


class TaskStatus(StrEnum):
    """Stored states. A requeued task is ``pending`` with ``attempt > 0``; the wire shows it
    as ``processing`` (DESIGN §8)."""

    PENDING = "pending"
    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"

    @property
    def is_terminal(self) -> bool:
        return self in (TaskStatus.COMPLETED, TaskStatus.FAILED)


class ErrorCode(StrEnum):
    INVALID_PARAMETERS = "invalid_parameters"
    IMAGE_PROCESSING_ERROR = "image_processing_error"
    IMAGE_DIMENSION_MISMATCH = "image_dimension_mismatch"
    REQUEST_CANCELLED = "request_cancelled"
    CONTENT_POLICY_VIOLATION = "content_policy_violation"
    GENERATION_FAILED_NO_CONTENT = "generation_failed_no_content"
    SERVICE_ERROR = "service_error"
    GENERATION_TIMEOUT = "generation_timeout"
    RESOURCE_EXHAUSTED = "resource_exhausted"
    SERVICE_UNAVAILABLE = "service_unavailable"
    UNKNOWN_ERROR = "unknown_error"


def new_task_id(created: int) -> str:
    """``task-unified-<created>-<8 random [a-z0-9]>``, as the hosted interface shapes them."""
    number = secrets.randbelow(len(_ID_ALPHABET) ** _ID_SUFFIX_CHARS)  # one read of the OS RNG
    suffix = []
    for _ in range(_ID_SUFFIX_CHARS):
        number, digit = divmod(number, len(_ID_ALPHABET))
        suffix.append(_ID_ALPHABET[digit])
    return f"task-unified-{created}-{''.join(suffix)}"


def task_ids_from(created: int) -> str:
    """A string that sorts before every id of a task created at or after the second
    ``created`` and after every id of one created before it (ids of the same number of
    digits, which every second from 2001 to 2286 has)."""
    return f"task-unified-{created}"


def task_id_second(task_id: str) -> int:
    """The second a task id says it was made in (``task-unified-<second>-…``)."""
    return int(task_id.split("-")[2])


def is_task_id(value: str) -> bool:
    return TASK_ID_PATTERN.fullmatch(value) is not None


@dataclass(frozen=True)
class TaskParams:
    """The effective parameters of an accepted edit, as stored with the task."""

    prompt: str
    image_urls: tuple[str, ...]
    n: int
    negative_prompt: str | None
    size: tuple[int, int] | None
    prompt_extend: bool
    watermark: bool
    seed: int
    callback_url: str | None


@dataclass(frozen=True)
class TaskRecord:
    """One task row as the rest of the program sees it. Money is in milli-credits."""

    id: str
    account_id: int
    user_group: str
    params: TaskParams
    status: TaskStatus
    progress: int
    attempt: int
    created_at: datetime
    reserved_milli: int
    used_milli: int | None = None
    worker_id: str | None = None
    lease_expires_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    error_code: str | None = None
    error_message: str | None = None
    result_keys: tuple[str, ...] = field(default_factory=tuple)
    actual_prompt: str | None = None
    engine_seconds: float | None = None

    @property
    def created(self) -> int:
        return int(self.created_at.timestamp())

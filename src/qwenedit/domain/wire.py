"""The wire shapes (DESIGN §4), each defined once: the routes answer these models and the
OpenAPI document at ``/openapi.json`` is generated from them, so the two cannot drift.

An optional field the wire leaves out when it has no value is ``Absent[...]``: it is never sent
as ``null`` and the schema shows it as optional but not nullable. Every other field is always
sent, and the response schemas say so (``required``), with no properties beyond the listed ones.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import SkipJsonSchema

from qwenedit.domain.task import ErrorCode, TaskStatus

T = TypeVar("T")


def _is_none(value: object) -> bool:
    return value is None


def _no_default(schema: dict[str, Any]) -> None:
    """An absent field has no value at all, not a default of ``null``."""
    schema.pop("default", None)


Absent = Annotated[
    T | SkipJsonSchema[None], Field(exclude_if=_is_none, json_schema_extra=_no_default)
]

CreditAmount = Annotated[
    int | float,
    Field(description="Credits: whole amounts as integers, others with at most 3 decimals"),
]
"""Money on the wire; ``domain.money.milli_to_wire`` makes it from stored milli-credits."""

UnixSeconds = Annotated[int, Field(description="Unix time in seconds")]


class WireModel(BaseModel):
    """A response object: closed (``additionalProperties: false``) and immutable; a field with a
    default (the constants) is always sent, so the response schema lists it as required."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, json_schema_serialization_defaults_required=True
    )


class TaskInfo(WireModel):
    can_cancel: bool = Field(description="False once the task has ended")
    estimated_time: int = Field(
        ge=0,
        description="Seconds until done: measured seconds per image times the images ahead "
        "(spread over live workers) plus this task's own remaining images",
    )
    queue_position: Absent[Annotated[int, Field(ge=0)]] = Field(
        None,
        description="Extension, only while pending: tasks a worker takes before this one "
        "(0: it is next)",
    )


class Usage(WireModel):
    billing_rule: Literal["per_call"] = "per_call"
    credits_reserved: CreditAmount
    user_group: str
    credits_used: Absent[CreditAmount] = Field(
        None, description="Once the task has ended; the rest of the reserve was refunded"
    )


class TaskError(WireModel):
    code: ErrorCode
    message: str


class TaskObject(WireModel):
    """A task as create, read and cancel answer it; the callback body is this object for the
    ended task, exactly as a read shows it."""

    created: UnixSeconds
    id: str = Field(examples=["task-unified-1757156493-imcg5zqt"])
    model: Literal["qwen-image-edit-plus"] = "qwen-image-edit-plus"
    object: Literal["image.generation.task"] = "image.generation.task"
    progress: int = Field(ge=0, le=100, description="Never decreases; 100 when completed")
    status: TaskStatus
    task_info: TaskInfo
    type: Literal["image"] = "image"
    usage: Usage
    seed: int = Field(description="Extension: the effective seed")
    results: Absent[list[str]] = Field(
        None, description="When completed: one signed URL per image, until results_expire_at"
    )
    results_expire_at: Absent[UnixSeconds] = Field(
        None, description="Extension: when the result URLs stop working"
    )
    error: Absent[TaskError] = Field(None, description="When failed (also when cancelled)")
    actual_prompt: Absent[str] = Field(
        None, description="Extension: the rewritten prompt, when prompt_extend ran"
    )
    completed_at: Absent[UnixSeconds] = Field(None, description="Extension: when the task ended")


class ErrorBody(WireModel):
    code: int = Field(description="The HTTP status")
    message: str
    type: str = Field(examples=["invalid_request_error", "not_found_error"])
    param: Absent[str] = Field(None, description="The request field at fault")
    fallback_suggestion: Absent[str] = None


class ErrorEnvelope(WireModel):
    """Every error answer (DESIGN §4.5)."""

    error: ErrorBody


class FileObject(WireModel):
    """An uploaded input image; ``url`` is usable in ``image_urls`` until ``expires_at``."""

    id: str
    object: Literal["file"] = "file"
    url: str
    bytes: int
    mime_type: str
    width: int
    height: int
    created_at: UnixSeconds
    expires_at: UnixSeconds


class Credits(WireModel):
    account: str
    balance: CreditAmount
    user_group: str


class CallbackAttempt(WireModel):
    attempted_at: float = Field(description="Unix time in seconds, to the millisecond")
    status_code: int | None = Field(description="The receiver's HTTP status, if it answered")
    error: str | None = Field(description="Why no answer was had, if none was")
    duration_ms: int


class CallbackDelivery(WireModel):
    id: int
    url: str
    status: Literal["pending", "delivered", "failed"]
    created_at: float
    delivered_at: float | None
    next_attempt_at: float | None = Field(description="While pending: when it is tried next")
    attempts: list[CallbackAttempt]


class CallbackHistory(WireModel):
    """Every delivery of a task's callback, oldest first (ours, not in the hosted interface)."""

    object: Literal["list"] = "list"
    task_id: str
    data: list[CallbackDelivery]


class ReadinessChecks(WireModel):
    database: bool = Field(description="The database answers")
    workers: bool = Field(description="This process has an engine, or a worker beat recently")


class Readiness(WireModel):
    """``GET /readyz``: 200 when ready, 503 (with the same body) when not."""

    status: Literal["ready", "not_ready"]
    checks: ReadinessChecks


class EditRequestBody(BaseModel):
    """Documentation of the create body only: ``domain.request`` validates it, with the exact
    errors of DESIGN §4.1 (unknown fields are ignored, so this one is not ``WireModel``)."""

    model: Literal["qwen-image-edit-plus"] = "qwen-image-edit-plus"
    prompt: str = Field(max_length=2000, description="What to change in the input images")
    image_urls: list[str] = Field(
        min_length=1,
        max_length=3,
        description="1-3 http(s) URLs, data:image/...;base64 URIs or uploaded file URLs; "
        "384-3072 px per side",
    )
    n: int = Field(1, ge=1, le=6)
    negative_prompt: str | None = Field(None, description="Truncated to 500 characters")
    size: str | None = Field(None, examples=["1024x1024"], description="WxH, 512-2048, n == 1")
    prompt_extend: bool = True
    watermark: bool = False
    seed: int | None = Field(None, ge=0, le=2147483647)
    callback_url: str | None = Field(None, max_length=2048, description="HTTPS only")


class OpenAIImage(WireModel):
    """One image of ``POST /v1/images/edits``: ``url`` or ``b64_json``, as
    ``response_format`` asked."""

    url: Absent[str] = Field(None, description="A signed link, valid until results_expire_at")
    b64_json: Absent[str] = Field(None, description="The PNG, base64-encoded")
    revised_prompt: Absent[str] = Field(None, description="The rewritten prompt, if any")


class OpenAIImagesResponse(WireModel):
    """The OpenAI Images API answer (the ``openai`` package reads it as ``ImagesResponse``)."""

    created: UnixSeconds
    data: list[OpenAIImage]


class OpenAIErrorBody(WireModel):
    message: str
    type: str = Field(examples=["invalid_request_error"])
    param: str | None
    code: str | None = Field(description="A task's error code when the task failed")


class OpenAIErrorEnvelope(WireModel):
    """Every error of the OpenAI-compatible routes, in OpenAI's shape."""

    error: OpenAIErrorBody


class ModelObject(WireModel):
    id: str
    object: Literal["model"] = "model"
    created: UnixSeconds
    owned_by: str


class ModelList(WireModel):
    object: Literal["list"] = "list"
    data: list[ModelObject]

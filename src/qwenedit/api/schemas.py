"""Wire shapes for the OpenAPI document. The routes validate with ``domain.request`` (which
gives the exact errors of DESIGN §4.1); these models only describe the contract in /docs."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field


class EditRequestBody(BaseModel):
    model: Literal["qwen-image-edit-plus"] = "qwen-image-edit-plus"
    prompt: str = Field(max_length=2000, description="What to change in the input images")
    image_urls: list[str] = Field(
        min_length=1,
        max_length=3,
        description="1-3 http(s) URLs or data:image/...;base64 URIs; 384-3072 px per side",
    )
    n: int = Field(1, ge=1, le=6)
    negative_prompt: str | None = Field(None, description="Truncated to 500 characters")
    size: str | None = Field(None, examples=["1024x1024"], description="WxH, 512-2048, n == 1")
    prompt_extend: bool = True
    watermark: bool = False
    seed: int | None = Field(None, ge=0, le=2147483647)
    callback_url: str | None = Field(None, max_length=2048, description="HTTPS only")


class TaskInfo(BaseModel):
    can_cancel: bool
    estimated_time: int


class Usage(BaseModel):
    billing_rule: Literal["per_call"]
    credits_reserved: float
    user_group: str
    credits_used: float | None = None


class TaskError(BaseModel):
    code: str
    message: str


class TaskObject(BaseModel):
    created: int
    id: str
    model: str
    object: Literal["image.generation.task"]
    progress: int = Field(ge=0, le=100)
    status: Literal["pending", "processing", "completed", "failed"]
    task_info: TaskInfo
    type: Literal["image"]
    usage: Usage
    results: list[str] | None = None
    error: TaskError | None = None
    seed: int | None = Field(None, description="Extension: the effective seed")
    actual_prompt: str | None = Field(None, description="Extension: the rewritten prompt")
    completed_at: int | None = Field(None, description="Extension: when the task ended")


class ErrorBody(BaseModel):
    code: int
    message: str
    type: str
    param: str | None = None
    fallback_suggestion: str | None = None


class ErrorEnvelope(BaseModel):
    error: ErrorBody


class Credits(BaseModel):
    account: str
    balance: float
    user_group: str


EDIT_REQUEST_OPENAPI: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": EditRequestBody.model_json_schema()}},
    }
}

_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorEnvelope} for status in (400, 401, 402, 404, 409, 413, 429, 503)
}
TASK_RESPONSES: dict[int | str, dict[str, Any]] = {200: {"model": TaskObject}, **_ERRORS}

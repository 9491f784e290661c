"""What the routes add to the OpenAPI document beyond their return types: the create body
(documented, not validated by FastAPI) and the error envelope under each status a route answers."""

from __future__ import annotations

from typing import Any

from qwenedit.domain.wire import EditRequestBody, ErrorEnvelope
from qwenedit.services.edits import IDEMPOTENCY_KEY_MAX_CHARS

IDEMPOTENCY_HEADER = "Idempotency-Key"
EDIT_REQUEST_OPENAPI: dict[str, Any] = {
    "parameters": [
        {
            "name": IDEMPOTENCY_HEADER,
            "in": "header",
            "required": False,
            "description": "Within 24 h, the same key from the same account returns the first task",
            "schema": {"type": "string", "minLength": 1, "maxLength": IDEMPOTENCY_KEY_MAX_CHARS},
        }
    ],
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": EditRequestBody.model_json_schema()}},
    },
}


UPLOAD_FIELD = "file"
UPLOAD_REQUEST_OPENAPI: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": [UPLOAD_FIELD],
                    "properties": {
                        UPLOAD_FIELD: {
                            "type": "string",
                            "contentMediaType": "application/octet-stream",
                            "description": "A JPEG, PNG, BMP, WEBP or TIFF image",
                        }
                    },
                }
            }
        },
    }
}
"""The upload body, read by ``api.upload_body`` after the key check rather than by FastAPI."""


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The envelope under each status the route answers on purpose, and as ``default`` for
    any other (a 500, a 405). Declaring ``default`` also keeps FastAPI from documenting a 422
    that the error handlers answer as a 400."""
    declared: dict[int | str, dict[str, Any]] = {
        status: {"model": ErrorEnvelope} for status in statuses
    }
    declared["default"] = {"model": ErrorEnvelope, "description": "Any other error"}
    return declared

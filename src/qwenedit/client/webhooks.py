"""Checking a callback's Standard Webhooks signature on the receiving side."""

from __future__ import annotations

import hmac
import json
import time
from collections.abc import Mapping
from typing import Any

from qwenedit.domain.webhooks import sign
from qwenedit.errors import WebhookVerificationError

DEFAULT_TOLERANCE = 300.0
"""Seconds a callback's timestamp may be off from this machine's clock (replay window)."""


def verify_webhook(
    body: bytes,
    headers: Mapping[str, str],
    secret: str,
    *,
    tolerance: float = DEFAULT_TOLERANCE,
    now: float | None = None,
) -> dict[str, Any]:
    """The task object a callback carries, once its signature (any of them, during a secret
    rotation) and its timestamp check; ``WebhookVerificationError`` otherwise. ``body`` is the
    raw request body, before any JSON parsing."""
    lowered = {key.lower(): value for key, value in headers.items()}
    try:
        message_id = lowered["webhook-id"]
        timestamp = int(lowered["webhook-timestamp"])
        signatures = lowered["webhook-signature"].split()
    except (KeyError, ValueError) as exc:
        raise WebhookVerificationError("missing or malformed webhook headers") from exc
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance:
        raise WebhookVerificationError("the webhook timestamp is outside the tolerance")
    try:
        expected = sign(secret, message_id, timestamp, body)
    except ValueError as exc:
        raise WebhookVerificationError("the secret is not a whsec_ secret") from exc
    if not any(hmac.compare_digest(expected, candidate) for candidate in signatures):
        raise WebhookVerificationError("no signature matches")
    payload: dict[str, Any] = json.loads(body)
    return payload

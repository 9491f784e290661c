"""Callback rules (DESIGN §4.4): the retry schedule and Standard Webhooks signatures.

A signature is ``v1,<base64 HMAC-SHA256>`` over ``"<webhook-id>.<timestamp>.<body>"``, keyed with
the bytes of a ``whsec_<base64>`` secret (https://www.standardwebhooks.com/)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

SECRET_PREFIX = "whsec_"  # noqa: S105 - the format's prefix, not a secret
SECRET_BYTES = 24
RETRY_DELAYS = (1.0, 2.0, 4.0)
"""Seconds after the 1st, 2nd and 3rd failed attempt; after the 4th the delivery has failed."""
MAX_ATTEMPTS = len(RETRY_DELAYS) + 1
MAX_REDELIVERIES = 5
"""Deliveries an owner may ask for beyond the first, per task: enough to get past a receiver's
outage, never an amplifier (each delivery is up to ``MAX_ATTEMPTS`` POSTs)."""
ROTATION_OVERLAP_SECONDS = 24 * 3600.0
"""After a rotation, deliveries carry signatures with both secrets for this long."""


def new_webhook_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def retry_delay(attempts_made: int) -> float | None:
    """Seconds until the next attempt after ``attempts_made`` failed ones, ``None`` when the
    schedule is exhausted."""
    if 1 <= attempts_made <= len(RETRY_DELAYS):
        return RETRY_DELAYS[attempts_made - 1]
    return None


def webhook_id(outbox_id: int) -> str:
    """Stable across the retries of one delivery, so receivers can deduplicate."""
    return f"msg_{outbox_id}"


def sign(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    key = base64.b64decode(secret.removeprefix(SECRET_PREFIX))
    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def signature_header(
    secrets_in_use: list[str], message_id: str, timestamp: int, body: bytes
) -> str:
    """Space-separated signatures, one per secret in use (two during a rotation overlap)."""
    return " ".join(sign(secret, message_id, timestamp, body) for secret in secrets_in_use)

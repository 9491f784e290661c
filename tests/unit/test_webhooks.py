"""Signatures verify with the reference Standard Webhooks library; the retry schedule."""

from __future__ import annotations

import json
import time

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from qwenedit.domain.webhooks import (
    MAX_ATTEMPTS,
    new_webhook_secret,
    retry_delay,
    signature_header,
)


def test_signature_verifies_with_the_reference_library() -> None:
    secret = new_webhook_secret()
    body = json.dumps({"id": "task-unified-1-abcdefgh", "status": "completed"}).encode()
    now = int(time.time())
    headers = {
        "webhook-id": "msg_1",
        "webhook-timestamp": str(now),
        "webhook-signature": signature_header([secret], "msg_1", now, body),
    }
    assert Webhook(secret).verify(body, headers) == json.loads(body)
    with pytest.raises(WebhookVerificationError):
        Webhook(new_webhook_secret()).verify(body, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(body + b" ", headers)


def test_both_secrets_sign_during_a_rotation() -> None:
    old, new = new_webhook_secret(), new_webhook_secret()
    body = b'{"ok":true}'
    now = int(time.time())
    header = signature_header([new, old], "msg_9", now, body)
    assert len(header.split(" ")) == 2
    for secret in (old, new):
        headers = {
            "webhook-id": "msg_9",
            "webhook-timestamp": str(now),
            "webhook-signature": header,
        }
        Webhook(secret).verify(body, headers)


def test_retry_schedule_is_one_two_four_then_done() -> None:
    assert [retry_delay(made) for made in range(1, MAX_ATTEMPTS + 1)] == [1.0, 2.0, 4.0, None]
    assert MAX_ATTEMPTS == 4

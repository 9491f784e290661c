"""The client's I/O-free parts: webhook verification (against the reference Standard Webhooks
signer), the event-stream parser, error answers and retry delays."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

import httpx
import pytest
from standardwebhooks.webhooks import Webhook

from qwenedit.client import BadRequestError, RateLimitError, ResponseError, verify_webhook
from qwenedit.client.protocol import EventParser, create_body, response_error, retry_delay
from qwenedit.domain.webhooks import new_webhook_secret, signature_header
from qwenedit.errors import WebhookVerificationError

BODY = json.dumps({"id": "task-unified-1-abcdefgh", "status": "completed"}).encode()


def signed(secret: str, at: int) -> dict[str, str]:
    signature = Webhook(secret).sign("msg_1", datetime.fromtimestamp(at, UTC), BODY.decode())
    return {"Webhook-Id": "msg_1", "Webhook-Timestamp": str(at), "Webhook-Signature": signature}


def test_verify_webhook_accepts_the_reference_signature_and_a_rotation() -> None:
    secret, old = new_webhook_secret(), new_webhook_secret()
    now = int(time.time())
    assert verify_webhook(BODY, signed(secret, now), secret)["status"] == "completed"
    both = {
        "webhook-id": "msg_2",
        "webhook-timestamp": str(now),
        "webhook-signature": signature_header([secret, old], "msg_2", now, BODY),
    }
    assert verify_webhook(BODY, both, old)["id"] == "task-unified-1-abcdefgh"


@pytest.mark.parametrize("flaw", ["other secret", "tampered", "stale", "missing", "bad secret"])
def test_verify_webhook_refuses(flaw: str) -> None:
    secret = new_webhook_secret()
    now = int(time.time())
    headers, body, key = signed(secret, now), BODY, secret
    if flaw == "other secret":
        key = new_webhook_secret()
    elif flaw == "tampered":
        body = BODY + b" "
    elif flaw == "stale":
        headers = signed(secret, now - 301)
    elif flaw == "missing":
        del headers["Webhook-Signature"]
    else:
        key = "whsec_not base64!"
    with pytest.raises(WebhookVerificationError):
        verify_webhook(body, headers, key)


def test_event_parser_follows_the_sse_rules() -> None:
    parser = EventParser()
    lines = [": keepalive", "", "retry: 1000", "", "id: pending.0.1", "event: task"]
    lines += ['data: {"a":', "data: 1}", ""]
    events = [event for line in lines if (event := parser.feed(line)) is not None]
    assert [(e.event, e.data, e.id) for e in events] == [("task", '{"a":\n1}', "pending.0.1")]
    assert parser.last_id == "pending.0.1"
    assert parser.feed("data:x") is None
    event = parser.feed("")
    assert event is not None  # an id lasts until another is sent
    assert (event.event, event.data, event.id) == ("message", "x", "pending.0.1")


def answer(status: int, body: object = None, **headers: str) -> httpx.Response:
    request = httpx.Request("GET", "http://127.0.0.1/v1/x")
    return httpx.Response(status, json=body, headers=headers, request=request)


def test_error_answers_become_typed_errors() -> None:
    envelope = {"error": {"code": 400, "message": "bad n", "type": "invalid_request_error"}}
    envelope["error"]["param"] = "n"
    error = response_error(answer(400, envelope))
    assert isinstance(error, BadRequestError)
    assert (error.status, error.type, error.param, error.message) == (
        400,
        "invalid_request_error",
        "n",
        "bad n",
    )
    limited = response_error(answer(429, {"error": {"message": "slow"}}, **{"Retry-After": "3"}))
    assert isinstance(limited, RateLimitError) and limited.retry_after == 3
    odd = response_error(answer(502, ["not an envelope"]))
    assert type(odd) is ResponseError and odd.status == 502


def test_retry_delays_follow_retry_after_up_to_a_limit() -> None:
    assert retry_delay(answer(429, **{"Retry-After": "2"}), 0) == 2
    assert retry_delay(answer(503, **{"Retry-After": "3600"}), 0) == 30
    assert retry_delay(answer(503), 1) == 2
    assert retry_delay(answer(429), 3) is None
    assert retry_delay(answer(400), 0) is None


def test_create_body_sends_only_the_options_given() -> None:
    body = create_body("p", ["https://x/a.png"], n=2, seed=0, prompt_extend=False)
    assert body == {
        "model": "qwen-image-edit-plus",
        "prompt": "p",
        "image_urls": ["https://x/a.png"],
        "n": 2,
        "seed": 0,
        "prompt_extend": False,
    }

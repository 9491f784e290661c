"""The client against a scripted HTTP server on loopback: retries after ``Retry-After``, the
fall back to polling when a server has no event stream, and the wait's timeout."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from itertools import count

import pytest

from qwenedit.client import AsyncClient, Client, Task, WaitTimeout
from support.http_server import Answer, Received, ScriptedServer, scripted_server

TASK_ID = "task-unified-1764000000-abcdefgh"


def task_body(status: str, progress: int) -> bytes:
    info: dict[str, object] = {"can_cancel": status in ("pending", "processing")}
    info["estimated_time"] = 0 if status == "completed" else 5
    if status == "pending":
        info["queue_position"] = 0
    body = {
        "id": TASK_ID,
        "created": 1764000000,
        "status": status,
        "progress": progress,
        "task_info": info,
        "usage": {"billing_rule": "per_call", "credits_reserved": 1, "user_group": "default"},
        "seed": 1,
        "a_field_from_a_newer_server": True,
    }
    return json.dumps(body).encode()


JSON = {"Content-Type": "application/json"}
NO_STREAM = Answer(404, b'{"error":{"code":404,"message":"Not found","type":"not_found_error"}}')


@pytest.fixture
def server() -> Iterator[ScriptedServer]:
    with scripted_server() as scripted:
        yield scripted


def progressing() -> Callable[[Received], Answer]:
    states = iter([("pending", 0), ("processing", 50), ("processing", 50), ("completed", 100)])
    last = [("pending", 0)]

    def answer(_: Received) -> Answer:
        last[0] = next(states, last[0])
        return Answer(200, task_body(*last[0]), JSON)

    return answer


def test_429_and_503_are_retried_after_retry_after(server: ScriptedServer) -> None:
    calls = count()

    def credits(_: Received) -> Answer:
        call = next(calls)
        if call < 2:
            return Answer(429 if call == 0 else 503, b"{}", {"Retry-After": "0"})
        return Answer(200, b'{"account":"a","balance":2.5,"user_group":"default"}', JSON)

    server.answers["/v1/credits"] = credits
    with Client(server.url(""), "qe_key") as client:
        assert client.credits().balance == 2.5
    assert len(server.requests_for("/v1/credits")) == 3
    assert server.received[0].headers["authorization"] == "Bearer qe_key"


def test_wait_polls_when_the_server_has_no_event_stream(server: ScriptedServer) -> None:
    server.answers[f"/v1/tasks/{TASK_ID}/events"] = NO_STREAM
    server.answers[f"/v1/tasks/{TASK_ID}"] = progressing()
    seen: list[Task] = []
    with Client(server.url(""), "qe_key") as client:
        done = client.tasks.wait(TASK_ID, on_update=seen.append, timeout=30)
    assert done.status == "completed" and done.raw["a_field_from_a_newer_server"] is True
    assert [(t.status, t.progress) for t in seen] == [
        ("pending", 0),
        ("processing", 50),
        ("completed", 100),
    ]
    assert len(server.requests_for(f"/v1/tasks/{TASK_ID}/events")) == 1


async def test_async_wait_polls_and_times_out(server: ScriptedServer) -> None:
    server.answers[f"/v1/tasks/{TASK_ID}/events"] = NO_STREAM
    server.answers[f"/v1/tasks/{TASK_ID}"] = Answer(200, task_body("pending", 0), JSON)
    async with AsyncClient(server.url(""), "qe_key") as client:
        with pytest.raises(WaitTimeout) as timed_out:
            await client.tasks.wait(TASK_ID, timeout=1.5)
    assert timed_out.value.task_id == TASK_ID
    assert len(server.requests_for(f"/v1/tasks/{TASK_ID}")) >= 2


def test_settings_come_from_the_environment(
    server: ScriptedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    server.answers["/v1/credits"] = Answer(200, b'{"account":"a","balance":1,"user_group":"g"}')
    monkeypatch.setenv("QWENEDIT_BASE_URL", server.url(""))
    monkeypatch.setenv("QWENEDIT_API_KEY", "qe_from_env")
    with Client() as client:
        assert client.credits().user_group == "g"
    assert server.received[-1].headers["authorization"] == "Bearer qe_from_env"

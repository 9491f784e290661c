"""Prompt extension through a fake OpenAI-compatible chat server (a real HTTP server on
loopback): a good answer becomes the engine's prompt; garbage, errors and hangs do not stop the
task."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from support.app import make_settings, running_app
from support.engine import SteppingEngine
from support.http_server import Answer, ScriptedServer, scripted_server
from support.images import data_uri, png_bytes

REWRITE = "Turn the sky in Picture 1 into a warm orange sunset; keep the house unchanged."


def chat_answer(content: str) -> Answer:
    body = {"choices": [{"index": 0, "message": {"role": "assistant", "content": content}}]}
    return Answer(body=json.dumps(body).encode(), headers={"Content-Type": "application/json"})


@pytest.fixture
def chat() -> Iterator[ScriptedServer]:
    with scripted_server() as server:
        yield server


def edit(**extra: object) -> dict[str, object]:
    return {
        "model": "qwen-image-edit-plus",
        "prompt": "sunset sky",
        "image_urls": [data_uri(png_bytes(400, 400))],
        **extra,
    }


async def run_task(
    chat: ScriptedServer, db_url: str, tmp_path: Path, timeout: float = 1.0, **extra: object
) -> tuple[dict[str, Any], SteppingEngine]:
    engine = SteppingEngine(steps=1)
    settings = make_settings(
        db_url,
        tmp_path,
        prompt_extend_url=chat.url("v1"),
        prompt_extend_model="vlm",
        prompt_extend_api_key="sk-test",
        prompt_extend_timeout=timeout,
    )
    async with running_app(settings, engine) as app:
        key = await app.new_key("acme", credits=5)
        created = (await app.create(key, edit(**extra))).json()
        task = await app.wait_for(key, created["id"])
    return task, engine


async def test_the_rewrite_is_what_the_engine_receives(
    chat: ScriptedServer, db_url: str, tmp_path: Path
) -> None:
    chat.answers["/v1/chat/completions"] = chat_answer(json.dumps({"Rewritten": REWRITE}))
    task, engine = await run_task(chat, db_url, tmp_path)
    assert task["status"] == "completed"
    assert task["actual_prompt"] == REWRITE
    assert engine.jobs[0].prompt == REWRITE
    (request,) = chat.requests_for("v1/chat/completions")
    sent = json.loads(request.body)
    assert request.headers["authorization"] == "Bearer sk-test"
    assert sent["model"] == "vlm"
    assert "Rewritten" in sent["messages"][0]["content"]
    parts = sent["messages"][1]["content"]
    assert any(p["type"] == "image_url" for p in parts)
    assert parts[-1]["text"].endswith("sunset sky")


async def test_prompt_extend_false_skips_the_endpoint(
    chat: ScriptedServer, db_url: str, tmp_path: Path
) -> None:
    chat.answers["/v1/chat/completions"] = chat_answer(json.dumps({"Rewritten": REWRITE}))
    task, engine = await run_task(chat, db_url, tmp_path, prompt_extend=False)
    assert task["status"] == "completed"
    assert "actual_prompt" not in task
    assert engine.jobs[0].prompt == "sunset sky"
    assert chat.received == []


@pytest.mark.parametrize(
    "answer",
    [
        chat_answer("I cannot help with that."),
        Answer(status=500, body=b"oops"),
        Answer(body=b"<html>not json</html>"),
    ],
    ids=["garbage", "http-500", "not-json"],
)
async def test_failures_keep_the_original_prompt(
    chat: ScriptedServer, db_url: str, tmp_path: Path, answer: Answer
) -> None:
    chat.answers["/v1/chat/completions"] = answer
    task, engine = await run_task(chat, db_url, tmp_path)
    assert task["status"] == "completed"
    assert "actual_prompt" not in task
    assert engine.jobs[0].prompt == "sunset sky"


async def test_a_hanging_endpoint_keeps_the_original_prompt(
    chat: ScriptedServer, db_url: str, tmp_path: Path
) -> None:
    hang = threading.Event()
    chat.answers["/v1/chat/completions"] = Answer(body=b"{}", hold=hang)
    try:
        task, engine = await run_task(chat, db_url, tmp_path, timeout=0.25)
    finally:
        hang.set()
    assert task["status"] == "completed"
    assert "actual_prompt" not in task
    assert engine.jobs[0].prompt == "sunset sky"
    assert len(chat.requests_for("v1/chat/completions")) == 1

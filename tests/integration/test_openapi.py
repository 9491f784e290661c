"""Real responses validate against the schemas ``/openapi.json`` publishes for them: the task
object in every state, the callback body, the file, credits and callback-history objects, and
error envelopes. Every object a response can contain is closed (no undeclared fields), so a field
sent but not documented fails here."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from contextlib import AbstractAsyncContextManager
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from jsonschema import Draft202012Validator

from qwenedit.api.app import create_app
from qwenedit.runtime import Runtime
from qwenedit.services.openai_edits import MODEL
from support.app import BASE_URL, RunningApp, make_settings, running_app
from support.engine import SteppingEngine
from support.http_server import Answer, ScriptedServer, scripted_server
from support.image_server import serve_images
from support.images import data_uri, png_bytes

SCHEMA_REF = "#/components/schemas/"


class Contract:
    """The OpenAPI document of the running app, answering "does this response match what the
    document declares for its operation and status?". Objects are read as closed whatever the
    document says, so a field sent but not documented is a mismatch."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document
        self.schemas: dict[str, Any] = document["components"]["schemas"]
        self._closed = {
            name: {"additionalProperties": False, **schema} if "properties" in schema else schema
            for name, schema in self.schemas.items()
        }

    def response_schema(self, method: str, path: str, status: int) -> dict[str, Any]:
        responses: dict[str, Any] = self.document["paths"][path][method]["responses"]
        declared = responses.get(str(status))
        if declared is None and status >= 400:
            declared = responses.get("default")
        assert declared is not None, f"{method.upper()} {path} does not declare {status}"
        schema: dict[str, Any] = declared["content"]["application/json"]["schema"]
        return schema

    def check(self, method: str, path: str, response: httpx.Response) -> dict[str, Any]:
        """The response's JSON body, after validating it against its declared schema."""
        schema = self.response_schema(method, path, response.status_code)
        validator = Draft202012Validator({**schema, "components": {"schemas": self._closed}})
        body: dict[str, Any] = response.json()
        validator.validate(body)
        return body

    def check_component(self, name: str, body: object) -> None:
        """Validate ``body`` against a component schema, read as closed."""
        schema = {"$ref": SCHEMA_REF + name, "components": {"schemas": self._closed}}
        Draft202012Validator(schema).validate(body)

    def reachable(self, node: object, seen: set[str] | None = None) -> set[str]:
        """The names of the component schemas ``node`` refers to, directly or not."""
        seen = set() if seen is None else seen
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith(SCHEMA_REF):
                name = ref.removeprefix(SCHEMA_REF)
                if name not in seen:
                    seen.add(name)
                    self.reachable(self.schemas[name], seen)
            for value in node.values():
                self.reachable(value, seen)
        elif isinstance(node, list):
            for item in node:
                self.reachable(item, seen)
        return seen


async def contract_of(client: httpx.AsyncClient) -> Contract:
    response = await client.get("/openapi.json")
    assert response.status_code == 200
    document: dict[str, Any] = response.json()
    assert document["openapi"].startswith("3.1")
    return Contract(document)


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def edit(*urls: str, **extra: object) -> dict[str, object]:
    return {"prompt": "make it blue", "image_urls": list(urls), **extra}


@pytest.fixture
def receiver() -> Iterator[ScriptedServer]:
    with scripted_server() as server:
        server.answers["/hook"] = Answer(status=200)
        yield server


async def wait_until_delivered(app: RunningApp, key: str, task_id: str) -> httpx.Response:
    deadline = time.monotonic() + 20
    while True:
        response = await app.client.get(f"/v1/tasks/{task_id}/callbacks", headers=auth(key))
        deliveries = response.json()["data"]
        if deliveries and deliveries[0]["status"] == "delivered":
            return response
        assert time.monotonic() < deadline, f"the callback was not delivered: {deliveries}"
        await asyncio.sleep(0.05)


async def test_the_task_object_in_every_state_matches_the_schema(
    db_url: str, tmp_path: Path, receiver: ScriptedServer
) -> None:
    engine = SteppingEngine(steps=4, hold_at=2)
    settings = make_settings(
        db_url, tmp_path, allow_insecure_callbacks=True, price_per_image=Decimal("0.5")
    )
    image = data_uri(png_bytes(512, 384))
    async with running_app(settings, engine) as app:
        contract = await contract_of(app.client)
        key = await app.new_key("acme", credits=10)
        create, read = ("post", "/v1/images/generations"), ("get", "/v1/tasks/{task_id}")

        response = await app.create(key, edit(image, callback_url=receiver.url("hook")))
        pending = contract.check(*create, response)
        assert pending["status"] == "pending"
        assert pending["usage"]["credits_reserved"] == 0.5
        task_id = pending["id"]

        assert await asyncio.to_thread(engine.holding.wait, 30)
        processing = contract.check(*read, await app.get(key, task_id))
        assert processing["status"] == "processing"

        second = contract.check(*create, await app.create(key, edit(image, n=2)))
        assert type(second["usage"]["credits_reserved"]) is int
        response = await app.client.post(f"/v1/tasks/{second['id']}/cancel", headers=auth(key))
        cancelled = contract.check("post", "/v1/tasks/{task_id}/cancel", response)
        assert cancelled["error"]["code"] == "request_cancelled"
        assert cancelled == contract.check(*read, await app.get(key, second["id"]))

        engine.release.set()
        await app.wait_for(key, task_id)
        completed = contract.check(*read, await app.get(key, task_id))
        assert completed["status"] == "completed"
        assert {"results", "results_expire_at", "completed_at"} <= completed.keys()

        history = await wait_until_delivered(app, key, task_id)
        contract.check("get", "/v1/tasks/{task_id}/callbacks", history)
        callback_body = json.loads(receiver.requests_for("hook")[0].body)
        assert callback_body == completed

        with serve_images({"small.png": png_bytes(383, 512)}) as images:
            too_small = images.url("small.png")  # a remote image is judged after download
            third = contract.check(*create, await app.create(key, edit(too_small)))
            await app.wait_for(key, third["id"])
        failed = contract.check(*read, await app.get(key, third["id"]))
        assert failed["error"]["code"] == "image_processing_error"
        assert "results" not in failed


async def test_files_credits_and_errors_match_the_schema(db_url: str, tmp_path: Path) -> None:
    async with running_app(make_settings(db_url, tmp_path, max_body_bytes=4096)) as app:
        contract = await contract_of(app.client)
        key = await app.new_key("acme", credits=1)

        upload = await app.client.post(
            "/v1/files",
            files={"file": ("in.png", png_bytes(400, 400), "image/png")},
            headers=auth(key),
        )
        stored = contract.check("post", "/v1/files", upload)
        again = await app.client.get(f"/v1/files/{stored['id']}", headers=auth(key))
        assert contract.check("get", "/v1/files/{file_id}", again) == stored
        credits = await app.client.get("/v1/credits", headers=auth(key))
        assert contract.check("get", "/v1/credits", credits)["balance"] == 1

        image = data_uri(png_bytes(384, 384))
        task = (await app.create(key, edit(image))).json()
        create = ("post", "/v1/images/generations")
        errors = [
            (create, await app.client.post("/v1/images/generations", json=edit(image)), 401),
            (create, await app.create(key, edit(image, n=0)), 400),
            (create, await app.create(key, edit(image)), 402),
            (create, await app.create(key, edit(image, model="dall-e-3")), 404),
            (create, await app.create(key, edit("data:image/png;base64," + "A" * 8000)), 413),
            (("get", "/v1/tasks/{task_id}"), await app.get(key, "task-unified-1-zzzzzzzz"), 404),
            (
                ("get", "/v1/credits"),
                await app.client.delete("/v1/credits", headers=auth(key)),
                405,
            ),
        ]
        await app.client.post(f"/v1/tasks/{task['id']}/cancel", headers=auth(key))
        cancel_again = await app.client.post(f"/v1/tasks/{task['id']}/cancel", headers=auth(key))
        errors.append((("post", "/v1/tasks/{task_id}/cancel"), cancel_again, 409))
        for (method, path), response, status in errors:
            assert response.status_code == status, response.text
            body = contract.check(method, path, response)
            assert body["error"]["code"] == status


OPENAI_PATHS = ("/v1/images/edits", "/v1/models")
"""Routes for the ``openai`` package: their errors are in OpenAI's shape."""


def never_opened() -> AbstractAsyncContextManager[Runtime]:
    raise AssertionError("the document must not need the runtime")


async def test_every_response_object_is_closed_and_every_v1_error_is_the_envelope(
    tmp_path: Path,
) -> None:
    """The document alone: the app is not started (serving /openapi.json needs no runtime)."""
    settings = make_settings(f"sqlite+aiosqlite:///{tmp_path / 'unused.db'}", tmp_path)
    app = create_app(never_opened, max_body_bytes=settings.max_body_bytes)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as client:
        contract = await contract_of(client)
    operations = [
        (path, operation)
        for path, item in contract.document["paths"].items()
        for operation in item.values()
    ]
    in_responses: set[str] = set()
    for path, operation in operations:
        for status, declared in operation["responses"].items():
            in_responses |= contract.reachable(declared)
            if path.startswith("/v1/") and not status.startswith("2"):
                schema = declared["content"]["application/json"]["schema"]
                shape = "OpenAIErrorEnvelope" if path in OPENAI_PATHS else "ErrorEnvelope"
                assert schema == {"$ref": SCHEMA_REF + shape}, (path, status)
    assert {"TaskObject", "FileObject", "Credits", "CallbackHistory"} <= in_responses
    for name in in_responses:
        schema = contract.schemas[name]
        if schema.get("type") == "object":
            assert schema.get("additionalProperties") is False, name


async def test_openai_answers_and_task_events_match_the_schema(db_url: str, tmp_path: Path) -> None:
    async with running_app(make_settings(db_url, tmp_path), SteppingEngine()) as app:
        contract = await contract_of(app.client)
        key = await app.new_key("acme", credits=5)
        edits = ("post", "/v1/images/edits")
        image = ("in.png", png_bytes(512, 512), "image/png")
        for response_format in ("url", "b64_json"):
            answer = await app.client.post(
                "/v1/images/edits",
                files=[("image[]", image)],
                data={"prompt": "make it blue", "response_format": response_format},
                headers=auth(key),
            )
            assert answer.status_code == 200, answer.text
            [item] = contract.check(*edits, answer)["data"]
            assert set(item) == {response_format}
        refused = await app.client.post(
            "/v1/images/edits", files=[("image", image)], data={"prompt": "p", "n": "9"}
        )
        assert contract.check(*edits, refused)["error"]["type"] == "authentication_error"
        bad = await app.client.post(
            "/v1/images/edits", files=[("image", image)], data={"n": "x"}, headers=auth(key)
        )
        assert contract.check(*edits, bad)["error"]["param"] == "n"
        models = await app.client.get("/v1/models", headers=auth(key))
        assert contract.check("get", "/v1/models", models)["data"][0]["id"] == MODEL

        task = (await app.create(key, edit(data_uri(png_bytes(512, 512))))).json()
        await app.wait_for(key, task["id"])
        stream = await app.client.get(f"/v1/tasks/{task['id']}/events", headers=auth(key))
        assert stream.headers["content-type"].startswith("text/event-stream")
        data = [line[6:] for line in stream.text.splitlines() if line.startswith("data: ")]
        for body in data:
            contract.check_component("TaskObject", json.loads(body))
        assert json.loads(data[-1])["status"] == "completed"


async def test_the_create_documents_its_idempotency_header(tmp_path: Path) -> None:
    settings = make_settings(f"sqlite+aiosqlite:///{tmp_path / 'unused.db'}", tmp_path)
    app = create_app(never_opened, max_body_bytes=settings.max_body_bytes)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as client:
        contract = await contract_of(client)
    create = contract.document["paths"]["/v1/images/generations"]["post"]
    headers = {p["name"]: p for p in create["parameters"] if p["in"] == "header"}
    assert headers["Idempotency-Key"]["required"] is False
    assert headers["Idempotency-Key"]["schema"]["maxLength"] == 255

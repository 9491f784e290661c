"""The remote engine against a local fake of the OpenAI-style ``/v1/images/edits`` API."""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Iterator
from email.parser import BytesParser
from email.policy import HTTP

import pytest
from PIL import Image

from qwenedit.engines import remote
from qwenedit.engines.base import EditJob
from qwenedit.engines.remote import RemoteEngine
from qwenedit.errors import TaskCancelled, TaskFailure
from support.http_server import Answer, Received, ScriptedServer, scripted_server


def form(request: Received) -> tuple[dict[str, str], list[tuple[str, bytes]]]:
    """The fields and the files of a multipart/form-data request."""
    head = f"Content-Type: {request.headers['content-type']}\r\n\r\n".encode()
    message = BytesParser(policy=HTTP).parsebytes(head + request.body)
    fields: dict[str, str] = {}
    files: list[tuple[str, bytes]] = []
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True)
        assert isinstance(payload, bytes)
        if part.get_filename():
            files.append((str(name), payload))
        else:
            fields[str(name)] = payload.decode()
    return fields, files


def png_b64(color: tuple[int, int, int], size: tuple[int, int] = (64, 48)) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def images_answer(count: int) -> Answer:
    data = [{"b64_json": png_b64((10 * i, 100, 200))} for i in range(count)]
    return Answer(body=json.dumps({"created": 1, "data": data}).encode())


@pytest.fixture
def server() -> Iterator[ScriptedServer]:
    with scripted_server() as running:
        yield running


@pytest.fixture(autouse=True)
def fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(remote, "RETRY_DELAYS", (0.05, 0.05, 0.05))


def engine(server: ScriptedServer, dialect: str = "openai", **extra: object) -> RemoteEngine:
    options: dict[str, object] = {
        "dialect": dialect,
        "model": "qwen-image-edit",
        "api_key": "sk-remote",
        "steps": 8,
        "true_cfg_scale": 1.0,
        "timeout": 5.0,
        **extra,
    }
    return RemoteEngine(server.url("v1"), **options)  # type: ignore[arg-type]


def job(n: int = 1) -> EditJob:
    inputs = tuple(Image.new("RGB", (400, 400), (i * 50, 0, 0)) for i in range(2))
    return EditJob(
        prompt="make it blue",
        images=inputs,
        n=n,
        width=100,
        height=80,
        negative_prompt=None,
        seed=7,
    )


@pytest.mark.parametrize(
    ("dialect", "image_field", "format_field"),
    [
        ("openai", "image[]", ("response_format", "b64_json")),
        ("sglang", "image", ("response_format", "b64_json")),
        ("vllm-omni", "image", ("output_format", "png")),
    ],
)
def test_each_dialect_sends_its_fields(
    server: ScriptedServer, dialect: str, image_field: str, format_field: tuple[str, str]
) -> None:
    server.answers["/v1/images/edits"] = images_answer(2)
    steps: list[tuple[int, int]] = []
    remote_engine = engine(server, dialect)
    try:
        output = remote_engine.edit(job(n=2), lambda done, total: steps.append((done, total)))
    finally:
        remote_engine.close()
    assert [image.size for image in output.images] == [(100, 80), (100, 80)]
    (request,) = server.requests_for("v1/images/edits")
    assert request.headers["authorization"] == "Bearer sk-remote"
    fields, files = form(request)
    assert [name for name, _ in files] == [image_field, image_field]
    assert Image.open(io.BytesIO(files[1][1])).getpixel((0, 0)) == (50, 0, 0)
    assert fields[format_field[0]] == format_field[1]
    assert fields["prompt"] == "make it blue"
    assert (fields["n"], fields["size"], fields["seed"]) == ("2", "100x80", "7")
    assert (fields["num_inference_steps"], fields["true_cfg_scale"]) == ("8", "1.0")
    assert fields["negative_prompt"] == " "
    assert fields["model"] == "qwen-image-edit"
    assert steps[-1] == (2, 2)


def test_n_is_split_when_the_server_makes_one_image_per_call(server: ScriptedServer) -> None:
    server.answers["/v1/images/edits"] = images_answer(1)
    remote_engine = engine(server)
    try:
        output = remote_engine.edit(job(n=3), lambda done, total: None)
        assert len(output.images) == 3
        seeds = [form(r)[0]["seed"] for r in server.requests_for("v1/images/edits")]
        assert seeds == ["7", "8", "9"]
        assert [form(r)[0]["n"] for r in server.requests_for("v1/images/edits")] == ["3", "1", "1"]
    finally:
        remote_engine.close()


def test_retries_on_503_then_succeeds(server: ScriptedServer) -> None:
    answers = iter([Answer(503), Answer(502)])
    server.answers["/v1/images/edits"] = lambda _: next(answers, images_answer(1))
    remote_engine = engine(server)
    try:
        assert len(remote_engine.edit(job(), lambda done, total: None).images) == 1
    finally:
        remote_engine.close()
    assert len(server.requests_for("v1/images/edits")) == 3


def test_gives_up_after_the_retries(server: ScriptedServer) -> None:
    server.answers["/v1/images/edits"] = Answer(503)
    remote_engine = engine(server)
    try:
        with pytest.raises(TaskFailure) as caught:
            remote_engine.edit(job(), lambda done, total: None)
    finally:
        remote_engine.close()
    assert caught.value.code == "service_error"
    assert len(server.requests_for("v1/images/edits")) == 4


def test_a_refused_edit_is_invalid_parameters(server: ScriptedServer) -> None:
    server.answers["/v1/images/edits"] = Answer(400, body=b'{"error": "bad size"}')
    remote_engine = engine(server)
    try:
        with pytest.raises(TaskFailure) as caught:
            remote_engine.edit(job(), lambda done, total: None)
    finally:
        remote_engine.close()
    assert caught.value.code == "invalid_parameters"
    assert len(server.requests_for("v1/images/edits")) == 1


def test_connection_errors_are_retried_then_fail(server: ScriptedServer) -> None:
    remote_engine = RemoteEngine(
        "http://127.0.0.1:9",
        dialect="openai",
        model=None,
        api_key=None,
        steps=4,
        true_cfg_scale=4.0,
        timeout=2.0,
    )
    try:
        with pytest.raises(TaskFailure, match="unreachable"):
            remote_engine.edit(job(), lambda done, total: None)
    finally:
        remote_engine.close()
    assert remote_engine.calls == 4


def test_garbage_answers_fail_cleanly(server: ScriptedServer) -> None:
    server.answers["/v1/images/edits"] = Answer(body=b'{"data": [{"b64_json": "!!"}]}')
    remote_engine = engine(server)
    try:
        with pytest.raises(TaskFailure, match="could not be read"):
            remote_engine.edit(job(), lambda done, total: None)
    finally:
        remote_engine.close()


def test_cancellation_between_calls(server: ScriptedServer) -> None:
    server.answers["/v1/images/edits"] = images_answer(1)

    def on_step(done: int, total: int) -> None:
        if done == 1:
            raise TaskCancelled()

    remote_engine = engine(server)
    try:
        with pytest.raises(TaskCancelled):
            remote_engine.edit(job(n=3), on_step)
    finally:
        remote_engine.close()
    assert len(server.requests_for("v1/images/edits")) == 1

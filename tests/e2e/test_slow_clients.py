"""Slow, idle and hostile clients against the real server process (issue 10): each pattern is
cut within its deadline while a steady upload that takes far longer than any deadline goes
through. Deadlines are shortened through the environment; raw sockets play the clients."""

from __future__ import annotations

import contextlib
import http.client
import io
import json
import select
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest
from PIL import Image

from support.images import data_uri, png_bytes
from support.server_process import Server, serve_api_only

pytestmark = pytest.mark.slow

DEADLINE = 1.5
SLACK = 3.0
"""What a loaded two-core machine may add to a deadline before the test calls it missed."""
MAX_CONNECTIONS = 8


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with serve_api_only(
        tmp_path_factory.mktemp("slow") / "data",
        header_timeout=str(DEADLINE),
        body_timeout=str(DEADLINE),
        body_min_rate=str(64 * 1024),
        keepalive_timeout=str(DEADLINE),
        max_connections=str(MAX_CONNECTIONS),
    ) as running:
        yield running


@pytest.fixture(scope="module")
def key(server: Server) -> str:
    return server.new_key("acme")


def trickle(
    sock: socket.socket, pieces: list[bytes], every: float, limit: float
) -> tuple[bytes, float]:
    """Send one piece every ``every`` seconds (then nothing) until the server closes; the
    bytes it sent back and the seconds it took. Fails if the server keeps it open ``limit`` s."""
    started = time.monotonic()
    received = b""
    index = 0
    while time.monotonic() - started < limit:
        if index < len(pieces):
            with contextlib.suppress(OSError):
                sock.sendall(pieces[index])
            index += 1
        readable, _, _ = select.select([sock], [], [], every)
        if readable:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                return received, time.monotonic() - started
            received += chunk
    raise AssertionError(f"the server kept the connection open for {limit} s")


def head(method: str, path: str, headers: dict[str, str]) -> bytes:
    lines = [
        f"{method} {path} HTTP/1.1",
        "Host: 127.0.0.1",
        *(f"{k}: {v}" for k, v in headers.items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def status_and_body(answer: bytes) -> tuple[int, dict[str, Any]]:
    top, _, body = answer.partition(b"\r\n\r\n")
    status = int(top.split(b" ", 2)[1])
    return status, json.loads(body)


def test_an_idle_socket_is_closed_after_the_head_deadline(server: Server) -> None:
    with server.connect() as sock:
        answer, took = trickle(sock, [], 0.2, DEADLINE + SLACK)
    assert answer == b""  # nothing was asked, so nothing is answered
    assert took >= DEADLINE - 0.2


def test_a_head_sent_a_line_at_a_time_is_cut_with_a_408(server: Server) -> None:
    lines = [b"GET /healthz HTTP/1.1\r\n"] + [b"X-Slow: yes\r\n"] * 50
    with server.connect() as sock:
        answer, took = trickle(sock, lines, 0.4, DEADLINE + SLACK)
    assert took >= DEADLINE - 0.2
    status, body = status_and_body(answer)
    assert status == 408
    assert body["error"] == {
        "code": 408,
        "message": "The request head did not arrive in time",
        "type": "request_timeout_error",
    }


def test_a_body_sent_a_byte_at_a_time_is_cut_with_a_408(server: Server, key: str) -> None:
    start = head(
        "POST",
        "/v1/images/generations",
        {
            "Authorization": f"Bearer {key}",
            "Content-Type": "application/json",
            "Content-Length": "500",
        },
    )
    with server.connect() as sock:
        answer, took = trickle(sock, [start] + [b" "] * 100, 0.4, DEADLINE + SLACK)
    assert took >= DEADLINE - 0.2
    assert status_and_body(answer)[0] == 408


def test_an_idle_kept_alive_connection_is_closed(server: Server) -> None:
    with server.connect() as sock:
        answer, took = trickle(sock, [head("GET", "/healthz", {})], 0.2, DEADLINE + SLACK)
    assert answer.startswith(b"HTTP/1.1 200 ")
    assert took >= DEADLINE - 0.2


def test_a_connection_over_the_cap_is_answered_503(server: Server) -> None:
    held = [server.connect() for _ in range(MAX_CONNECTIONS)]
    try:
        time.sleep(0.3)  # the server has accepted them all
        with server.connect() as extra:
            answer, _ = trickle(extra, [head("GET", "/healthz", {})], 0.2, 5)
    finally:
        for sock in held:
            sock.close()
    assert answer.startswith(b"HTTP/1.1 503 ")
    assert b"\r\nretry-after: 1\r\n" in answer
    assert status_and_body(answer)[1]["error"]["type"] == "service_unavailable_error"
    time.sleep(0.3)
    with server.connect() as again:
        answer, _ = trickle(again, [head("GET", "/healthz", {"Connection": "close"})], 0.2, 5)
    assert answer.startswith(b"HTTP/1.1 200 ")


def test_a_keyless_upload_is_refused_before_its_body_is_sent(server: Server) -> None:
    start = head(
        "POST",
        "/v1/files",
        {
            "Content-Type": "multipart/form-data; boundary=b",
            "Content-Length": str(30 * 1024 * 1024),
        },
    )
    with server.connect() as sock:
        answer, took = trickle(sock, [start], 0.2, 2 + SLACK)  # no body byte is ever sent
    status, body = status_and_body(answer)
    assert status == 401
    assert body["error"]["type"] == "authentication_error"
    assert took < 2 + SLACK


def test_a_steady_upload_longer_than_any_deadline_goes_through(server: Server, key: str) -> None:
    """27 MiB (a 3072x3072 BMP, within the 32 MiB image limit) at about 2 MiB/s: some 13 s,
    nearly ten body deadlines."""
    buffer = io.BytesIO()
    Image.new("RGB", (3072, 3072), (30, 120, 200)).save(buffer, format="BMP")
    image = buffer.getvalue()
    form = (
        b'--b\r\nContent-Disposition: form-data; name="file"; filename="big.bmp"\r\n'
        b"Content-Type: image/bmp\r\n\r\n" + image + b"\r\n--b--\r\n"
    )
    start = head(
        "POST",
        "/v1/files",
        {
            "Authorization": f"Bearer {key}",
            "Content-Type": "multipart/form-data; boundary=b",
            "Content-Length": str(len(form)),
            "Connection": "close",
        },
    )
    rate, tick = 2 * 1024 * 1024, 0.25
    step = int(rate * tick)
    pieces = [start] + [form[i : i + step] for i in range(0, len(form), step)]
    began = time.monotonic()
    with server.connect(timeout=60) as sock:
        for piece in pieces:
            sock.sendall(piece)
            time.sleep(tick)
        answer = b""  # no half-close: uvicorn takes one for the client leaving
        while chunk := sock.recv(65536):
            answer += chunk
    took = time.monotonic() - began
    status, body = status_and_body(answer)
    assert status == 200, body
    assert (body["width"], body["height"], body["bytes"]) == (3072, 3072, len(image))
    assert took > 8 * DEADLINE


def test_hostile_bodies_are_400s_on_one_kept_alive_connection(server: Server, key: str) -> None:
    image = data_uri(png_bytes(400, 400))

    def raw(text: str) -> bytes:
        return text.encode()

    valid = json.dumps({"prompt": "p", "image_urls": [image]})
    bodies = [
        raw(
            json.dumps(
                {"prompt": "p", "image_urls": [image], "callback_url": "https://xn--zz.com/"}
            )
        ),
        raw(json.dumps({"prompt": "p", "image_urls": ["https://\uff11\uff12\uff17.0.0.1/a.png"]})),
        b"[" * 100_000 + b"]" * 100_000,
        raw(valid[:-1] + ', "n": ' + "9" * 5000 + "}"),
        raw(json.dumps({"prompt": "\ud800", "image_urls": [image]})),
    ]
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        connection.connect()
        first_socket = connection.sock
        for index, content in enumerate(bodies):
            connection.request(
                "POST",
                "/v1/images/generations",
                body=content,
                headers={"Authorization": f"Bearer {key}", "Idempotency-Key": f"k{index}"},
            )
            response = connection.getresponse()
            answer = json.loads(response.read())
            assert response.status == 400, answer
            assert answer["error"]["type"] == "invalid_request_error"
            assert response.getheader("connection") != "close"
        assert connection.sock is first_socket
    finally:
        connection.close()
    assert "Traceback" not in server.log.read_text()


@pytest.mark.parametrize(
    "request_bytes",
    [b"NOT HTTP AT ALL\r\n\r\n", b"GET /healthz HTTP/1.1\r\nX-Big: " + b"a" * 20_000 + b"\r\n\r\n"],
)
def test_unparseable_requests_get_the_envelope(server: Server, request_bytes: bytes) -> None:
    with server.connect() as sock:
        answer, _ = trickle(sock, [request_bytes], 0.2, 5)
    status, body = status_and_body(answer)
    assert status == 400
    assert body["error"]["type"] == "invalid_request_error"

"""The guarded outbound client against real loopback servers (DESIGN §6, §8)."""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme

from qwenedit.config import Settings
from qwenedit.errors import OutboundRefused
from qwenedit.media import callback_connections, guarded_client
from qwenedit.media.guarded_client import GuardedClient
from support.http_server import Answer, ScriptedServer, scripted_server
from support.leaks import assert_not_leaked
from support.resolver import MapResolver


def settings(tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {"data_dir": tmp_path, "fetch_timeout": 2.0, "max_redirects": 3}
    values.update(overrides)
    return Settings(**values)


@pytest.fixture
def server() -> Iterator[ScriptedServer]:
    with scripted_server() as running:
        running.answers["/img"] = Answer(body=b"x" * 1000)
        yield running


async def test_fetch_from_an_allowed_network(server: ScriptedServer, tmp_path: Path) -> None:
    client = GuardedClient(settings(tmp_path, allow_private_network="127.0.0.0/8"))
    try:
        assert await client.fetch(server.url("img"), max_bytes=1000) == b"x" * 1000
    finally:
        await client.aclose()


@pytest.mark.parametrize(
    ("host", "address"),
    [
        ("127.0.0.1", "127.0.0.1"),
        ("localhost", "127.0.0.1"),
        ("2130706433", "127.0.0.1"),
        ("0x7f.1", "127.0.0.1"),
        ("[::ffff:127.0.0.1]", "::ffff:127.0.0.1"),
        ("0.0.0.0", "0.0.0.0"),
        ("[::1]", "::1"),
    ],
)
async def test_internal_targets_are_refused(
    server: ScriptedServer, tmp_path: Path, host: str, address: str
) -> None:
    client = GuardedClient(settings(tmp_path), resolver=MapResolver({}))
    try:
        with pytest.raises(OutboundRefused, match="internal address") as refused:
            await client.fetch(server.url("img", host=host), max_bytes=1000)
    finally:
        await client.aclose()
    assert server.received == []
    assert_not_leaked(str(refused.value), address)
    assert host.strip("[]") not in str(refused.value)


async def test_metadata_address_is_refused_without_connecting(tmp_path: Path) -> None:
    client = GuardedClient(settings(tmp_path))
    try:
        with pytest.raises(OutboundRefused, match="internal address") as refused:
            await client.fetch("http://169.254.169.254/latest/meta-data/", max_bytes=1000)
    finally:
        await client.aclose()
    assert_not_leaked(str(refused.value), "169.254.169.254")


async def test_a_name_resolving_to_any_internal_address_is_refused(
    server: ScriptedServer, tmp_path: Path
) -> None:
    resolver = MapResolver({"mixed.example": ["93.184.216.34", "10.0.0.1"]})
    client = GuardedClient(settings(tmp_path), resolver=resolver)
    try:
        with pytest.raises(OutboundRefused, match="internal address") as refused:
            await client.fetch("http://mixed.example/img", max_bytes=1000)
    finally:
        await client.aclose()
    assert resolver.asked == ["mixed.example"]
    assert_not_leaked(str(refused.value), "10.0.0.1")


async def test_connection_goes_to_the_checked_address_with_the_original_host(
    server: ScriptedServer, tmp_path: Path
) -> None:
    """The OS cannot resolve ``images.example``: the request can only arrive if the client
    connected to the address its resolver checked, and it keeps the name in ``Host``."""
    resolver = MapResolver({"images.example": ["127.0.0.1"]})
    client = GuardedClient(
        settings(tmp_path, allow_private_network="127.0.0.0/8"), resolver=resolver
    )
    try:
        url = server.url("img", host="images.example")
        assert await client.fetch(url, max_bytes=1000) == b"x" * 1000
    finally:
        await client.aclose()
    assert server.received[0].headers["host"] == f"images.example:{server.port}"


async def test_redirects_are_checked_again(tmp_path: Path) -> None:
    with scripted_server("127.0.0.2") as outer, scripted_server("127.0.0.1") as inner:
        inner.answers["/secret"] = Answer(body=b"secret")
        outer.answers["/img"] = Answer(status=302, headers={"Location": inner.url("secret")})
        client = GuardedClient(settings(tmp_path, allow_private_network="127.0.0.2/32"))
        try:
            with pytest.raises(OutboundRefused, match="internal address") as refused:
                await client.fetch(outer.url("img"), max_bytes=1000)
        finally:
            await client.aclose()
        assert inner.received == []
        assert_not_leaked(str(refused.value), inner.host)


async def test_redirects_are_followed_up_to_the_limit(
    server: ScriptedServer, tmp_path: Path
) -> None:
    for hop in range(5):
        server.answers[f"/r{hop}"] = Answer(status=302, headers={"Location": f"/r{hop + 1}"})
    server.answers["/r5"] = Answer(body=b"end")
    client = GuardedClient(settings(tmp_path, allow_private_network="127.0.0.0/8"))
    try:
        assert await client.fetch(server.url("r2"), max_bytes=100) == b"end"
        with pytest.raises(OutboundRefused, match="too many redirects"):
            await client.fetch(server.url("r0"), max_bytes=100)
    finally:
        await client.aclose()


@pytest.mark.parametrize("chunked", [False, True])
async def test_bytes_are_capped_while_streaming(
    server: ScriptedServer, tmp_path: Path, chunked: bool
) -> None:
    server.answers["/big"] = Answer(body=b"y" * 50_000, chunked=chunked)
    client = GuardedClient(settings(tmp_path, allow_private_network="127.0.0.0/8"))
    try:
        with pytest.raises(OutboundRefused, match="larger than 10000 bytes"):
            await client.fetch(server.url("big"), max_bytes=10_000)
    finally:
        await client.aclose()


async def test_non_200_answers_are_refused(server: ScriptedServer, tmp_path: Path) -> None:
    client = GuardedClient(settings(tmp_path, allow_private_network="127.0.0.0/8"))
    try:
        with pytest.raises(OutboundRefused, match="HTTP 404"):
            await client.fetch(server.url("missing"), max_bytes=100)
    finally:
        await client.aclose()


async def test_a_stalled_download_times_out(server: ScriptedServer, tmp_path: Path) -> None:
    server.answers["/slow"] = Answer(body=b"z", delay=3.0)
    client = GuardedClient(
        settings(tmp_path, allow_private_network="127.0.0.0/8", fetch_timeout=0.5)
    )
    started = time.monotonic()
    try:
        with pytest.raises(OutboundRefused, match="timed out"):
            await client.fetch(server.url("slow"), max_bytes=100)
    finally:
        await client.aclose()
    assert time.monotonic() - started < 2.5


async def test_post_never_follows_redirects(server: ScriptedServer, tmp_path: Path) -> None:
    server.answers["/hook"] = Answer(status=302, headers={"Location": "/elsewhere"})
    client = GuardedClient(
        settings(tmp_path, allow_private_network="127.0.0.0/8", allow_insecure_callbacks=True)
    )
    try:
        status = await client.post(server.url("hook"), b"{}", {}, deadline=2)
    finally:
        await client.aclose()
    assert status == 302
    assert [r.path for r in server.received] == ["/hook"]


async def test_callbacks_to_one_receiver_share_a_connection_and_other_names_do_not(
    server: ScriptedServer, tmp_path: Path
) -> None:
    """Two names on one address: each keeps its own connection, so a connection checked (and
    on TLS verified) for one name never carries a request for the other."""
    server.answers["/hook"] = Answer()
    resolver = MapResolver({"a.example": ["127.0.0.1"], "b.example": ["127.0.0.1"]})
    client = GuardedClient(
        settings(tmp_path, allow_private_network="127.0.0.0/8", allow_insecure_callbacks=True),
        resolver=resolver,
    )
    try:
        for host in ("a.example", "a.example", "b.example", "a.example", "b.example"):
            assert await client.post(server.url("hook", host=host), b"{}", {}, deadline=2) == 200
    finally:
        await client.aclose()
    by_name: dict[str, set[int]] = {}
    for received in server.received:
        by_name.setdefault(received.headers["host"], set()).add(received.peer[1])
    assert [len(ports) for ports in by_name.values()] == [1, 1]
    assert by_name[f"a.example:{server.port}"].isdisjoint(by_name[f"b.example:{server.port}"])


async def test_callback_pools_are_bounded_and_a_closed_one_is_reopened(
    server: ScriptedServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(callback_connections, "MAX_RECEIVERS", 2)
    server.answers["/hook"] = Answer()
    names = {f"n{i}.example": ["127.0.0.1"] for i in range(3)}
    client = GuardedClient(
        settings(tmp_path, allow_private_network="127.0.0.0/8", allow_insecure_callbacks=True),
        resolver=MapResolver(names),
    )
    try:
        for host in ("n0.example", "n1.example", "n2.example", "n1.example", "n0.example"):
            assert await client.post(server.url("hook", host=host), b"{}", {}, deadline=2) == 200
    finally:
        await client.aclose()

    def ports(name: str) -> list[int]:
        return [r.peer[1] for r in server.received if r.headers["host"].startswith(name)]

    assert ports("n1.")[0] == ports("n1.")[1]  # kept
    assert ports("n0.")[0] != ports("n0.")[1]  # closed to make room for n2, then made anew


async def test_check_url_resolves_names_every_time_and_remembers_accepted_literals(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(guarded_client, "MAX_ACCEPTED_LITERAL_URLS", 2)
    resolver = MapResolver({"hooks.example": ["8.8.8.8"]})
    client = GuardedClient(settings(tmp_path), resolver=resolver)
    try:
        for _ in range(2):
            await client.check_url("https://hooks.example/a", https_only=True, within=2)
        for url in ("https://8.8.8.8/a", "https://8.8.4.4/a", "https://1.1.1.1/a"):
            await client.check_url(url, https_only=True, within=2)
        await client.check_url("https://1.1.1.1/a", https_only=True, within=2)
        for _ in range(2):
            with pytest.raises(OutboundRefused, match="internal address"):
                await client.check_url("https://10.0.0.1/a", https_only=True, within=2)
        with pytest.raises(OutboundRefused, match="scheme"):
            await client.check_url("http://1.1.1.1/a", https_only=True, within=2)
        remembered = list(client._accepted_literal)
    finally:
        await client.aclose()
    assert resolver.asked == ["hooks.example", "hooks.example"]
    assert remembered == [("https://8.8.4.4/a", True), ("https://1.1.1.1/a", True)]


async def test_post_refuses_plain_http_by_default(server: ScriptedServer, tmp_path: Path) -> None:
    client = GuardedClient(settings(tmp_path, allow_private_network="127.0.0.0/8"))
    try:
        with pytest.raises(OutboundRefused, match="scheme must be https"):
            await client.post(server.url("hook"), b"{}", {}, deadline=2)
    finally:
        await client.aclose()
    assert server.received == []


async def test_post_has_a_total_deadline(server: ScriptedServer, tmp_path: Path) -> None:
    server.answers["/hang"] = Answer(delay=3.0)
    client = GuardedClient(
        settings(tmp_path, allow_private_network="127.0.0.0/8", allow_insecure_callbacks=True)
    )
    started = time.monotonic()
    try:
        with pytest.raises(OutboundRefused, match="no answer within"):
            await client.post(server.url("hang"), b"{}", {}, deadline=0.5)
    finally:
        await client.aclose()
    assert time.monotonic() - started < 2.0


@pytest.fixture(scope="module")
def authority() -> trustme.CA:
    return trustme.CA()


def tls_context(authority: trustme.CA, name: str) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert(name).configure_cert(context)
    return context


async def test_https_uses_sni_and_the_ca_bundle(authority: trustme.CA, tmp_path: Path) -> None:
    bundle = tmp_path / "ca.pem"
    authority.cert_pem.write_to_path(str(bundle))
    resolver = MapResolver({"hooks.example": ["127.0.0.1"]})
    with scripted_server(tls=tls_context(authority, "hooks.example")) as receiver:
        receiver.answers["/hook"] = Answer(status=204)
        url = receiver.url("hook", host="hooks.example")
        trusted = GuardedClient(
            settings(tmp_path, allow_private_network="127.0.0.0/8", ca_bundle=bundle),
            resolver=resolver,
        )
        untrusted = GuardedClient(
            settings(tmp_path, allow_private_network="127.0.0.0/8"), resolver=resolver
        )
        try:
            assert await trusted.post(url, b'{"a":1}', {"X-Test": "1"}, deadline=5) == 204
            with pytest.raises(OutboundRefused, match="failed"):
                await untrusted.post(url, b"{}", {}, deadline=5)
        finally:
            await trusted.aclose()
            await untrusted.aclose()
        assert len(receiver.received) == 1
        assert receiver.received[0].body == b'{"a":1}'
        assert receiver.received[0].headers["x-test"] == "1"


async def test_post_reads_only_the_start_of_a_huge_answer(
    server: ScriptedServer, tmp_path: Path
) -> None:
    server.answers["/hook"] = Answer(status=200, body=b"z" * 20_000_000, chunked=True)
    client = GuardedClient(
        settings(tmp_path, allow_private_network="127.0.0.0/8", allow_insecure_callbacks=True)
    )
    started = time.monotonic()
    try:
        assert await client.post(server.url("hook"), b"{}", {}, deadline=5) == 200
    finally:
        await client.aclose()
    assert time.monotonic() - started < 2.0


class StalledResolver:
    async def resolve(self, host: str, port: int) -> list[Any]:
        await asyncio.sleep(30)
        return []


async def test_check_url_gives_a_name_a_deadline_to_resolve(tmp_path: Path) -> None:
    client = GuardedClient(settings(tmp_path), resolver=StalledResolver())
    started = time.monotonic()
    try:
        with pytest.raises(OutboundRefused, match="did not resolve in time"):
            await client.check_url("https://slow.example/hook", https_only=True, within=0.2)
    finally:
        await client.aclose()
    assert time.monotonic() - started < 5

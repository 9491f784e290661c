"""The one outbound HTTP client (DESIGN §6): every user-supplied URL goes through it.

For each request it resolves the host once, refuses the URL when ANY address is internal, and
connects to the checked address itself (the URL's host is replaced by the address; the
``Host`` header and TLS SNI/certificate check keep the original name), so a second DNS answer
cannot redirect the connection. A kept connection must never carry a request for a name it was
not opened for: image fetches keep no connection, and callbacks keep theirs per name and
address (``callback_connections``, h11 without httpx around it). Redirects are re-checked
(images) or refused (callbacks); every call has a total deadline and a cap on the bytes it
reads."""

from __future__ import annotations

import asyncio
import base64
import ssl
from collections import OrderedDict
from typing import NamedTuple

import httpx

from qwenedit import __version__
from qwenedit.errors import InputRejected, OutboundRefused
from qwenedit.media.addresses import address_without_dns, is_forbidden, literal_host_address
from qwenedit.media.callback_connections import CallbackConnections, Receiver
from qwenedit.media.hosts import connect_host
from qwenedit.media.resolver import Resolver, SystemResolver
from qwenedit.media.sources import INTERNAL_MESSAGE
from qwenedit.setting_groups import OutboundSettings

USER_AGENT = f"qwenedit/{__version__}"
_REDIRECTS = (301, 302, 303, 307, 308)
_CALLBACK_DEFAULTS = (("User-Agent", USER_AGENT), ("Accept-Encoding", "identity"))
"""Headers of a callback unless the caller gives its own."""
MAX_ACCEPTED_LITERAL_URLS = 1024
"""URLs with a literal address that ``check_url`` remembers as accepted (least recently used
forgotten first). Their verdict needs no DNS and depends on nothing but the URL and the
settings, and a client sends the same callback URL with every create: parsing and judging it
again was a tenth of a create's own work (bench/vs_cog.py)."""


def outbound_ssl_context(settings: OutboundSettings) -> ssl.SSLContext:
    """Default trust (certifi, as httpx) plus the operator's extra CAs (``CA_BUNDLE``)."""
    context = httpx.create_ssl_context()
    if settings.ca_bundle is not None:
        context.load_verify_locations(cafile=str(settings.ca_bundle))
    return context


class GuardedClient:
    def __init__(
        self,
        settings: OutboundSettings,
        *,
        resolver: Resolver | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self._settings = settings
        self._allowance = settings.private_network_allowance
        self._resolver = resolver or SystemResolver()
        self._ssl = ssl_context or outbound_ssl_context(settings)
        self._client = httpx.AsyncClient(
            verify=self._ssl,
            follow_redirects=False,
            trust_env=False,
            timeout=httpx.Timeout(settings.fetch_timeout),
            limits=httpx.Limits(max_keepalive_connections=0, max_connections=256),
            headers={"User-Agent": USER_AGENT, "Accept-Encoding": "identity"},
        )
        self._callbacks = CallbackConnections(self._ssl)
        self._accepted_literal: OrderedDict[tuple[str, bool], None] = OrderedDict()

    async def check_url(self, url: str, *, https_only: bool, within: float) -> None:
        """Resolve and check a URL without connecting (used at create for callbacks), the
        name's resolution within ``within`` seconds. A name is resolved on every check; a
        literal address's verdict, once accepted, is remembered (``MAX_ACCEPTED_LITERAL_URLS``)
        and answered without a timer."""
        key = (url, https_only)
        if key in self._accepted_literal:
            self._accepted_literal.move_to_end(key)
            return
        try:
            parsed = httpx.URL(url)
        except httpx.InvalidURL as exc:
            raise OutboundRefused("the URL is not valid") from exc
        try:
            async with asyncio.timeout(within):
                pinned = await self._pin(parsed, https_only=https_only)
        except TimeoutError as exc:
            raise OutboundRefused("the host name did not resolve in time") from exc
        if pinned.literal:
            self._accepted_literal[key] = None
            if len(self._accepted_literal) > MAX_ACCEPTED_LITERAL_URLS:
                self._accepted_literal.popitem(last=False)

    async def fetch(self, url: str, *, max_bytes: int) -> bytes:
        """GET an image: http(s) only, redirects re-checked (at most ``MAX_REDIRECTS``), a 200
        answer of at most ``max_bytes`` bytes, all within ``FETCH_TIMEOUT``."""
        try:
            async with asyncio.timeout(self._settings.fetch_timeout):
                return await self._fetch(httpx.URL(url), max_bytes)
        except TimeoutError as exc:
            raise OutboundRefused("the download timed out") from exc
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            raise OutboundRefused(f"the download failed ({type(exc).__name__})") from exc

    async def _fetch(self, url: httpx.URL, max_bytes: int) -> bytes:
        for _ in range(self._settings.max_redirects + 1):
            request = await self._pinned_get(url)
            response = await self._client.send(request, stream=True)
            try:
                if response.status_code in _REDIRECTS and "location" in response.headers:
                    url = url.join(response.headers["location"])
                    continue
                if response.status_code != 200:
                    raise OutboundRefused(f"the server answered HTTP {response.status_code}")
                return await _read_capped(response, max_bytes)
            finally:
                await response.aclose()
        raise OutboundRefused("too many redirects")

    async def post(self, url: str, body: bytes, headers: dict[str, str], *, deadline: float) -> int:
        """POST a callback; returns the status code. No redirects are followed (a 3xx is just a
        status); the whole exchange, connect to last byte read, fits in ``deadline``."""
        https_only = not self._settings.allow_insecure_callbacks
        try:
            async with asyncio.timeout(deadline):
                parsed = httpx.URL(url)
                sent = _callback_headers(parsed, headers)
                pinned = await self._pin(parsed, https_only=https_only)
                receiver = Receiver(
                    scheme=parsed.scheme,
                    netloc=parsed.netloc.decode("ascii"),
                    address=pinned.address,
                    port=pinned.port,
                    tls_name=pinned.host,
                )
                return await self._callbacks.post(receiver, parsed.raw_path, sent, body)
        except TimeoutError as exc:
            raise OutboundRefused(f"no answer within {deadline:g} s") from exc
        except httpx.InvalidURL as exc:
            raise OutboundRefused(f"the request failed ({type(exc).__name__})") from exc

    async def _pinned_get(self, url: httpx.URL) -> httpx.Request:
        pinned = await self._pin(url, https_only=False)
        extensions: dict[str, object] = {}
        if url.scheme == "https" and literal_host_address(pinned.host) is None:
            extensions["sni_hostname"] = pinned.host
        return self._client.build_request(
            "GET",
            url.copy_with(host=pinned.address),
            headers={"Host": url.netloc.decode("ascii")},
            extensions=extensions,
        )

    async def _pin(self, url: httpx.URL, *, https_only: bool) -> Pinned:
        """The checked address to connect to for ``url``. The host is judged, and resolved, in
        the ASCII form the client sends (``media.hosts``)."""
        allowed = ("https",) if https_only else ("http", "https")
        if url.scheme not in allowed:
            raise OutboundRefused(f"the URL scheme must be {' or '.join(allowed)}")
        try:
            host = connect_host(url)
        except InputRejected as exc:
            raise OutboundRefused(str(exc)) from exc
        port = url.port or (443 if url.scheme == "https" else 80)
        known = address_without_dns(host)
        addresses = [known] if known is not None else await self._resolver.resolve(host, port)
        if any(is_forbidden(address, self._allowance) for address in addresses):
            raise OutboundRefused(INTERNAL_MESSAGE)
        return Pinned(str(addresses[0]), host, port, literal=known is not None)

    async def aclose(self) -> None:
        await self._client.aclose()
        await self._callbacks.aclose()


def _callback_headers(url: httpx.URL, given: dict[str, str]) -> list[tuple[str, str]]:
    """``given``, after the defaults it does not replace; a user and password in the URL
    become Basic credentials unless ``given`` has its own (as httpx sent them)."""
    names = {name.lower() for name in given}
    defaults = list(_CALLBACK_DEFAULTS)
    if url.userinfo:
        pair = f"{url.username}:{url.password}".encode()
        defaults.append(("Authorization", "Basic " + base64.b64encode(pair).decode("ascii")))
    sent = [(name, value) for name, value in defaults if name.lower() not in names]
    sent.extend(given.items())
    return sent


class Pinned(NamedTuple):
    address: str
    """The checked address to connect to."""
    host: str
    """The URL's host as sent (``media.hosts``): what TLS verifies, and sends as SNI unless it
    is an address."""
    port: int
    literal: bool
    """Whether the address was known without DNS (a literal address, or ``localhost``)."""


async def _read_capped(response: httpx.Response, max_bytes: int) -> bytes:
    declared = response.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise OutboundRefused(f"the file is larger than {max_bytes} bytes")
    chunks: list[bytes] = []
    received = 0
    async for chunk in response.aiter_raw():
        received += len(chunk)
        if received > max_bytes:
            raise OutboundRefused(f"the file is larger than {max_bytes} bytes")
        chunks.append(chunk)
    return b"".join(chunks)

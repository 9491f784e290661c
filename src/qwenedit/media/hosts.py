"""The host of a user's URL as the HTTP client will connect to it, or a refusal.

Parsers disagree about exotic hosts: fullwidth or circled digits (U+FF11, U+2460) that NFKC
folds into an address, an ``xn--`` label that is not valid Punycode, a soft hyphen that one IDNA
mapping deletes and another refuses. The guard must judge exactly the host the client uses, so
it takes the host from httpx's own parse (IDNA 2008, the ASCII form httpx puts on the wire and
hands to the resolver) and refuses any URL whose host httpx cannot encode and decode again, or
that is neither an IP address nor made of DNS name characters."""

from __future__ import annotations

import ipaddress
import re

import httpx

from qwenedit.errors import InputRejected

INVALID_HOST_MESSAGE = "the URL's host is not a valid host name"
_NAME = re.compile(r"[a-z0-9_-]+(\.[a-z0-9_-]+)*\.?")
"""A DNS name in ASCII (A-labels), optionally fully qualified; underscores occur in real names."""


def connect_host(url: str | httpx.URL) -> str:
    """The ASCII host the client connects to: A-labels for an IDNA name, an IPv6 address
    without brackets. ``InputRejected`` (naming nothing) when there is none or it is not valid."""
    try:
        parsed = url if isinstance(url, httpx.URL) else httpx.URL(url)
        parsed.host  # noqa: B018 - decodes the A-labels: raises on one that is not Punycode
        host = parsed.raw_host.decode("ascii")
    except (httpx.InvalidURL, UnicodeError, ValueError) as exc:
        raise InputRejected(INVALID_HOST_MESSAGE) from exc
    if not host:
        raise InputRejected("the URL has no host")
    if ":" in host:
        try:
            ipaddress.IPv6Address(host)
        except ValueError as exc:
            raise InputRejected(INVALID_HOST_MESSAGE) from exc
    elif not _NAME.fullmatch(host):
        raise InputRejected(INVALID_HOST_MESSAGE)
    return host

"""Refusals must not echo the internal address they refused, in any spelling of it."""

from __future__ import annotations

import ipaddress


def spellings(address: str) -> set[str]:
    parsed = ipaddress.ip_address(address)
    found = {address, str(parsed), parsed.exploded}
    if isinstance(parsed, ipaddress.IPv6Address) and parsed.ipv4_mapped is not None:
        found.add(str(parsed.ipv4_mapped))
    return found


def assert_not_leaked(message: str, address: str) -> None:
    shown = sorted(spelling for spelling in spellings(address) if spelling in message)
    assert not shown, f"{message!r} shows the internal address {shown}"

"""A test resolver: names map to fixed addresses, which a test may change mid-run."""

from __future__ import annotations

import ipaddress

from qwenedit.errors import OutboundRefused
from qwenedit.media.addresses import IPAddress


class MapResolver:
    def __init__(self, names: dict[str, list[str]] | None = None) -> None:
        self.names = dict(names or {})
        self.asked: list[str] = []

    async def resolve(self, host: str, port: int) -> list[IPAddress]:
        self.asked.append(host)
        if host not in self.names:
            raise OutboundRefused("the host name does not resolve")
        return [ipaddress.ip_address(address) for address in self.names[host]]

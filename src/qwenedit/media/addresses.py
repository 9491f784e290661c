"""Which IP addresses the server may connect to on a user's behalf (DESIGN §6).

Only globally routable unicast addresses are allowed. IPv6 forms that embed an IPv4 address
(IPv4-mapped, NAT64, 6to4, Teredo) are judged by the embedded address too, so
``::ffff:127.0.0.1`` is as internal as ``127.0.0.1``. IPv6 site-local addresses
(``fec0::/10``) are internal too: RFC 3879 deprecated them, but hosts still route them
locally, and Python's ``is_global`` calls them global."""

from __future__ import annotations

import ipaddress
import socket

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

Allowance = bool | tuple[Network, ...]
"""``Settings.private_network_allowance``: ``True`` allows every internal address, a tuple of
networks just those, ``False`` none."""

LOOPBACK = ipaddress.IPv4Address("127.0.0.1")

_NAT64 = (ipaddress.IPv6Network("64:ff9b::/96"), ipaddress.IPv6Network("64:ff9b:1::/48"))
_CGNAT = ipaddress.IPv4Network("100.64.0.0/10")
_SITE_LOCAL = ipaddress.IPv6Network("fec0::/10")


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    if any(address in net for net in _NAT64):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def _is_internal(address: IPAddress) -> bool:
    if isinstance(address, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(address)
        if embedded is not None and _is_internal(embedded):
            return True
        if address.scope_id or address in _SITE_LOCAL:
            return True
    elif address in _CGNAT:
        return True
    return (
        not address.is_global
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
        or address.is_loopback
        or address.is_link_local
    )


def is_forbidden(address: IPAddress, allowance: Allowance) -> bool:
    """Whether the server must refuse to connect to ``address``, given the operator's
    ``allowance`` for internal addresses (development only)."""
    if not _is_internal(address):
        return False
    if allowance is True:
        return False
    if allowance is False:
        return True
    return not any(address in net for net in allowance)


def literal_host_address(host: str) -> IPAddress | None:
    """The address a URL's host names without DNS, or ``None`` for a real name.

    Besides the usual forms this accepts the legacy IPv4 spellings that resolvers honour
    (``2130706433``, ``0x7f.1``, ``017700000001``), so they cannot slip past a check."""
    host = host.strip("[]").rstrip(".")
    if not host:
        return None
    try:
        return ipaddress.ip_address(host.split("%")[0])
    except ValueError:
        pass
    if all(part and _is_number(part) for part in host.split(".")):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    return None


def address_without_dns(host: str) -> IPAddress | None:
    """The address ``host`` stands for without asking DNS: a literal address in any spelling,
    or loopback for ``localhost`` and its subdomains (RFC 6761 has them answered locally, so
    no resolver may be trusted to say otherwise). ``None`` for a name only DNS can answer."""
    name = host.rstrip(".").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return LOOPBACK
    return literal_host_address(host)


def _is_number(part: str) -> bool:
    """ASCII digits only: ``str.isdigit`` is also true of fullwidth and circled digits."""
    lowered = part.lower()
    if lowered.startswith("0x"):
        return all(c in "0123456789abcdef" for c in lowered[2:])
    return lowered.isascii() and lowered.isdigit()

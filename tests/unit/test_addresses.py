"""Which addresses the guarded client refuses (DESIGN §6, §8)."""

from __future__ import annotations

import ipaddress

import pytest

from qwenedit.media.addresses import address_without_dns, is_forbidden, literal_host_address


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1",
        "10.0.0.1",
        "10.1.2.3",
        "172.16.5.4",
        "192.168.1.1",
        "169.254.169.254",
        "100.64.0.1",
        "0.0.0.0",
        "224.0.0.1",
        "240.0.0.1",
        "255.255.255.255",
        "::1",
        "::",
        "fe80::1",
        "fc00::1",
        "fec0::1",
        "feff::1",
        "ff02::1",
        "::ffff:127.0.0.1",
        "::ffff:10.0.0.1",
        "64:ff9b::a00:1",
        "2002:7f00:1::",
        "2130706433",
        "0x7f.1",
        "0x7f000001",
        "017700000001",
        "127.1",
        "[::ffff:127.0.0.1]",
    ],
)
def test_internal_literals_are_forbidden(host: str) -> None:
    address = literal_host_address(host)
    assert address is not None
    assert is_forbidden(address, False)


@pytest.mark.parametrize("host", ["93.184.216.34", "8.8.8.8", "2606:4700::1111", "1.1.1.1"])
def test_global_addresses_are_allowed(host: str) -> None:
    address = literal_host_address(host)
    assert address is not None
    assert not is_forbidden(address, False)


@pytest.mark.parametrize("host", ["example.com", "localhost", "a.b.c", "1.2.3.example", ""])
def test_names_are_not_literals(host: str) -> None:
    assert literal_host_address(host) is None


def test_legacy_ipv4_spellings_mean_loopback() -> None:
    loopback = ipaddress.IPv4Address("127.0.0.1")
    assert literal_host_address("2130706433") == loopback
    assert literal_host_address("0x7f.1") == loopback
    assert literal_host_address("127.1") == loopback


def test_allowance_true_allows_every_internal_address() -> None:
    for host in ("127.0.0.1", "10.0.0.1", "169.254.169.254", "::1"):
        address = literal_host_address(host)
        assert address is not None
        assert not is_forbidden(address, True)


def test_allowance_list_allows_only_its_networks() -> None:
    allowance = (ipaddress.ip_network("127.0.0.0/8"),)
    assert not is_forbidden(ipaddress.ip_address("127.0.0.1"), allowance)
    assert is_forbidden(ipaddress.ip_address("10.0.0.1"), allowance)
    assert is_forbidden(ipaddress.ip_address("169.254.169.254"), allowance)
    assert not is_forbidden(ipaddress.ip_address("8.8.8.8"), allowance)


@pytest.mark.parametrize("host", ["localhost", "LocalHost.", "api.localhost"])
def test_localhost_names_are_loopback_without_dns(host: str) -> None:
    assert address_without_dns(host) == ipaddress.ip_address("127.0.0.1")


def test_a_real_name_needs_dns_and_a_literal_does_not() -> None:
    assert address_without_dns("localhost.example") is None
    assert address_without_dns("0x7f.1") == ipaddress.ip_address("127.0.0.1")

"""Tests never leave the machine: model hubs are offline and any connect to a non-loopback
address fails the test that tried it. Torch runs one thread per process."""

from __future__ import annotations

import ipaddress
import os
import socket
from typing import Any

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Server processes inherit it. The tiny pipeline's tensors are too small to gain from threads,
# and on two shared cores OpenMP threads waiting on each other made every call several times
# slower.
os.environ.setdefault("OMP_NUM_THREADS", "1")

_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex


def _check_target(sock: socket.SocketType, address: Any) -> None:
    if sock.family not in (socket.AF_INET, socket.AF_INET6):
        return
    host = address[0]
    try:
        loopback = ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if not loopback:
        raise AssertionError(f"test tried to connect to a non-loopback address: {host}")


def _guarded_connect(self: socket.SocketType, address: Any) -> None:
    _check_target(self, address)
    _real_connect(self, address)


def _guarded_connect_ex(self: socket.SocketType, address: Any) -> int:
    _check_target(self, address)
    return _real_connect_ex(self, address)


def pytest_configure(config: pytest.Config) -> None:
    socket.socket.connect = _guarded_connect  # type: ignore[method-assign]
    socket.socket.connect_ex = _guarded_connect_ex  # type: ignore[method-assign]

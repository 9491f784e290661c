"""Signed, expiring result links: HMAC-SHA256 over the key and expiry time.

The link needs no bearer key (clients hand it to browsers and CDNs, like the hosted service's
OSS links); whoever has it can read the image until it expires."""

from __future__ import annotations

import base64
import hashlib
import hmac
from urllib.parse import quote


def sign(key: str, expires: int, secret: bytes) -> str:
    mac = hmac.new(secret, f"result:{key}:{expires}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()


def verify(key: str, expires: int, signature: str, secret: bytes, now: int) -> bool:
    """True only for an untampered link that has not expired. Compared as bytes:
    ``compare_digest`` raises on a ``str`` that is not ASCII, and a link is client input."""
    if now >= expires:
        return False
    given = signature.encode("utf-8", "surrogatepass")
    return hmac.compare_digest(sign(key, expires, secret).encode(), given)


def signed_path(key: str, expires: int, secret: bytes) -> str:
    """The path and query of a result link, relative to the public URL."""
    signature = sign(key, expires, secret)
    return f"/v1/results/{quote(key)}?expires={expires}&signature={signature}"

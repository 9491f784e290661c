"""Result images behind signed, expiring links."""

from __future__ import annotations

import time
from dataclasses import dataclass

from qwenedit.blobs.base import BlobStore
from qwenedit.blobs.signing import verify
from qwenedit.errors import NotFound, PermissionDenied


@dataclass(frozen=True)
class ResultImage:
    data: bytes
    seconds_left: int
    """Until the link expires: how long a client may cache it."""


class ResultService:
    def __init__(self, *, blobs: BlobStore, secret: bytes) -> None:
        self._blobs = blobs
        self._secret = secret

    async def image(self, key: str, expires: int, signature: str) -> ResultImage:
        now = int(time.time())
        if not verify(key, expires, signature, self._secret, now):
            raise PermissionDenied("The link is invalid or has expired")
        data = await self._blobs.get(key)
        if data is None:
            raise NotFound("The result no longer exists")
        return ResultImage(data=data, seconds_left=max(0, expires - now))

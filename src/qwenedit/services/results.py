"""Result images behind signed, expiring links, streamed from the blob store."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

from qwenedit.blobs.base import BlobStore
from qwenedit.blobs.signing import verify
from qwenedit.errors import NotFound, PermissionDenied


@dataclass(frozen=True)
class ResultImage:
    size: int
    chunks: AsyncIterator[bytes]
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
        stream = await self._blobs.open(key)
        if stream is None:
            raise NotFound("The result no longer exists")
        return ResultImage(
            size=stream.size, chunks=stream.chunks, seconds_left=max(0, expires - now)
        )

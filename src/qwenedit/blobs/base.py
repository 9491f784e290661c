"""The BlobStore seam: result images, uploads and inputs, in a directory or an S3 bucket.

Keys are relative paths of ``[A-Za-z0-9._-]`` segments joined by ``/``:
``<task>/<attempt>/<i>.png``, ``files/<id>``, ``inputs/<task>/<i>``. Every store answers the
same contract (tests/integration/test_blobs_contract.py runs one suite against each)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Protocol

_SEGMENT = re.compile(r"^[A-Za-z0-9._-]+$")
CHUNK_BYTES = 256 * 1024
"""The size of the pieces a streamed blob is read in."""


def check_key(key: str) -> None:
    """``ValueError`` unless ``key`` is a valid blob key (so no key can leave its root)."""
    segments = key.split("/")
    if not key or any(not _SEGMENT.match(s) or s in (".", "..") for s in segments):
        raise ValueError(f"invalid blob key: {key!r}")


def valid_key(key: str) -> bool:
    try:
        check_key(key)
    except ValueError:
        return False
    return True


@dataclass(frozen=True)
class BlobStream:
    """An open blob: its size, and its bytes in chunks that are read as they are consumed."""

    size: int
    chunks: AsyncIterator[bytes]


class BlobStore(Protocol):
    @property
    def location(self) -> str:
        """Where the blobs live, for operators: ``file:///…`` or ``s3://bucket/prefix at …``.
        Never shown to API clients."""
        ...

    async def check(self) -> None:
        """``ConfigError`` naming the location unless the store can be used (the directory can
        be created, the bucket exists and the credentials are accepted)."""
        ...

    async def put(self, key: str, data: bytes) -> None: ...

    async def get(self, key: str) -> bytes | None:
        """The bytes, or ``None`` when no such blob exists."""
        ...

    async def open(self, key: str) -> BlobStream | None:
        """The blob as a stream (one copy in memory at most a chunk), or ``None``."""
        ...

    async def names_under(self, prefix: str, *, after: str, before: str) -> list[str]:
        """The names that follow ``prefix`` (which ends with ``/``) in the keys under it, one
        path segment each (``names_under("inputs/", ...)``: task ids), those greater than
        ``after`` and less than ``before``, each once, sorted."""
        ...

    async def delete_prefix(self, prefix: str) -> int:
        """Delete the blobs under ``prefix``, which ends at a segment boundary (``"<task>/"``)
        or names one blob; returns how many."""
        ...

    def presigned_url(self, key: str, expires_in: timedelta) -> str:
        """A URL that downloads ``key`` without credentials until ``expires_in`` from now.
        ``ConfigError`` for stores that have no such URLs (a directory)."""
        ...

    def close(self) -> None: ...

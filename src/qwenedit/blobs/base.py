"""The BlobStore seam."""

from __future__ import annotations

from typing import Protocol


class BlobStore(Protocol):
    """Keys are relative paths of ``[A-Za-z0-9._-]`` segments joined by ``/``."""

    async def put(self, key: str, data: bytes) -> None: ...

    async def get(self, key: str) -> bytes | None:
        """The bytes, or ``None`` when no such blob exists."""
        ...

    async def delete_prefix(self, prefix: str) -> int:
        """Delete every blob whose key starts with ``prefix``; returns how many."""
        ...

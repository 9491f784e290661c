"""What the client hands back. They read the fields this client knows and keep the rest in
``raw``, so a newer server that adds fields does not break an older client."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

TERMINAL = ("completed", "failed")
DOWNLOAD_TIMEOUT = httpx.Timeout(60.0, connect=10.0)


@dataclass(frozen=True)
class Task:
    id: str
    status: str
    progress: int
    created: int
    seed: int | None
    can_cancel: bool
    estimated_time: int
    queue_position: int | None
    """Tasks a worker takes before this one, while pending (0: it is next)."""
    results: list[str]
    error_code: str | None
    error_message: str | None
    credits_reserved: float
    credits_used: float | None
    raw: dict[str, Any] = field(repr=False)

    @classmethod
    def from_wire(cls, body: dict[str, Any]) -> Task:
        info = body.get("task_info") or {}
        usage = body.get("usage") or {}
        error = body.get("error") or {}
        return cls(
            id=body["id"],
            status=body["status"],
            progress=int(body.get("progress", 0)),
            created=int(body.get("created", 0)),
            seed=body.get("seed"),
            can_cancel=bool(info.get("can_cancel", False)),
            estimated_time=int(info.get("estimated_time", 0)),
            queue_position=info.get("queue_position"),
            results=list(body.get("results") or []),
            error_code=error.get("code"),
            error_message=error.get("message"),
            credits_reserved=usage.get("credits_reserved", 0),
            credits_used=usage.get("credits_used"),
            raw=body,
        )

    @property
    def done(self) -> bool:
        return self.status in TERMINAL

    def save(self, directory: str | Path) -> list[Path]:
        """Download the results into ``directory`` (created if missing); the written paths.
        Result URLs are signed, so no key is sent (it may be another host, e.g. S3)."""
        folder = Path(directory)
        folder.mkdir(parents=True, exist_ok=True)
        written = []
        with httpx.Client(timeout=DOWNLOAD_TIMEOUT) as http:
            for url, name in zip(self.results, self.file_names(), strict=True):
                path = folder / name
                path.write_bytes(http.get(url).raise_for_status().content)
                written.append(path)
        return written

    async def save_async(self, directory: str | Path) -> list[Path]:
        """``save`` for async code."""
        folder = Path(directory)
        await asyncio.to_thread(folder.mkdir, parents=True, exist_ok=True)
        written = []
        async with httpx.AsyncClient(timeout=DOWNLOAD_TIMEOUT) as http:
            for url, name in zip(self.results, self.file_names(), strict=True):
                path = folder / name
                content = (await http.get(url)).raise_for_status().content
                await asyncio.to_thread(path.write_bytes, content)
                written.append(path)
        return written

    def file_names(self) -> list[str]:
        """``<task id>-<index><extension of the result URL>`` for each result."""
        names = []
        for index, url in enumerate(self.results):
            suffix = Path(urlsplit(url).path).suffix or ".png"
            names.append(f"{self.id}-{index}{suffix}")
        return names


@dataclass(frozen=True)
class UploadedFile:
    id: str
    url: str
    """Usable as an input image of a task until ``expires_at``."""
    width: int
    height: int
    expires_at: int

    @classmethod
    def from_wire(cls, body: dict[str, Any]) -> UploadedFile:
        return cls(
            id=body["id"],
            url=body["url"],
            width=body["width"],
            height=body["height"],
            expires_at=body["expires_at"],
        )


@dataclass(frozen=True)
class Balance:
    account: str
    balance: float
    user_group: str

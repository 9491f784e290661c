"""Runs the real FastAPI app (lifespan included: runtime, workers, reaper) in-process."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI

from qwenedit.api.app import create_app
from qwenedit.config import Settings
from qwenedit.engines.base import Engine
from qwenedit.media.resolver import Resolver
from qwenedit.node import NodeOptions, node_runtime
from qwenedit.runtime import Runtime

BASE_URL = "http://testserver"
TERMINAL = ("completed", "failed")


def make_settings(db_url: str, data_dir: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": db_url,
        "data_dir": data_dir,
        "secret_key": "test-secret",
        "allow_private_network": "127.0.0.0/8",
        "steps": 4,
        "lease_seconds": 5.0,
        "heartbeat_seconds": 0.5,
        "poll_seconds": 0.1,
        "callback_poll_seconds": 0.05,
        "reaper_seconds": 0.5,
        "retention_sweep_seconds": 0.5,
        "shutdown_grace": 2.0,
        "fetch_timeout": 5.0,
    }
    values.update(overrides)
    return Settings(**values)


@dataclass
class RunningApp:
    app: FastAPI
    client: httpx.AsyncClient
    settings: Settings

    @property
    def runtime(self) -> Runtime:
        runtime: Runtime = self.app.state.runtime
        return runtime

    async def new_key(self, account: str, credits: int = 10, group: str | None = None) -> str:
        repo = self.runtime.accounts
        found = await repo.ensure(account, group)
        if credits:
            found = await repo.grant(found.id, credits * 1000, "test")
        _, key = await repo.create_key(found.id)
        return key

    async def create(self, key: str, body: dict[str, Any]) -> httpx.Response:
        return await self.client.post(
            "/v1/images/generations", json=body, headers={"Authorization": f"Bearer {key}"}
        )

    async def get(self, key: str, task_id: str) -> httpx.Response:
        return await self.client.get(
            f"/v1/tasks/{task_id}", headers={"Authorization": f"Bearer {key}"}
        )

    async def wait_for(
        self, key: str, task_id: str, statuses: tuple[str, ...] = TERMINAL, timeout: float = 60
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            task: dict[str, Any] = (await self.get(key, task_id)).json()
            if task["status"] in statuses:
                return task
            if time.monotonic() > deadline:
                raise AssertionError(f"task {task_id} stayed {task['status']}: {task}")
            await asyncio.sleep(0.05)


def _fatal() -> None:
    raise AssertionError("a background loop of the app died")


@asynccontextmanager
async def running_app(
    settings: Settings,
    engine: Engine | None = None,
    workers: int = 1,
    resolver: Resolver | None = None,
    housekeeping: bool = True,
) -> AsyncIterator[RunningApp]:
    """``housekeeping=False`` runs neither the reaper nor the callback dispatcher."""
    options = NodeOptions(
        public_url=BASE_URL,
        resolver=resolver,
        housekeeping=housekeeping,
        workers=workers if engine is not None else 0,
        load_engine=(lambda _settings: engine) if engine is not None else None,
    )
    app = create_app(
        node_runtime(settings, options, on_fatal=_fatal), max_body_bytes=settings.max_body_bytes
    )
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as client:
            yield RunningApp(app=app, client=client, settings=settings)

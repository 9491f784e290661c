"""The FastAPI application: routes, error envelope, body cap, and the process's background
services tied to its lifespan."""

from __future__ import annotations

import os
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from fastapi import FastAPI

from qwenedit import __version__
from qwenedit.api import (
    routes_callbacks,
    routes_credits,
    routes_files,
    routes_ops,
    routes_results,
    routes_tasks,
)
from qwenedit.api.body_limit import BodyLimitMiddleware
from qwenedit.api.errors import install_error_handlers
from qwenedit.config import Settings
from qwenedit.media.resolver import Resolver
from qwenedit.runtime import open_runtime
from qwenedit.worker.background import Background, EngineLoader


@dataclass(frozen=True)
class ServeOptions:
    public_url: str
    workers: int = 0
    """Worker loops in this process; 0 serves the API only (``--no-worker``)."""
    load_engine: EngineLoader | None = None
    resolver: Resolver | None = None
    """Name resolution for outbound URLs; the system's when ``None``."""
    run_reaper: bool = True
    """Also runs the callback dispatcher: the housekeeping loops every node may run."""


def _terminate_self() -> None:
    os.kill(os.getpid(), signal.SIGTERM)


def create_app(settings: Settings, options: ServeOptions) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runtime = await open_runtime(
            settings, public_url=options.public_url, resolver=options.resolver
        )
        background = Background(runtime, on_fatal=_terminate_self)
        app.state.runtime = runtime
        app.state.background = background
        if options.run_reaper:
            background.start_reaper()
            background.start_dispatcher()
        if options.workers and options.load_engine is not None:
            background.start_workers(options.workers, options.load_engine)
        try:
            yield
        finally:
            await background.shutdown()
            await runtime.close()

    app = FastAPI(
        title="qwenedit",
        version=__version__,
        description="Self-hosted qwen-image-edit-plus task API.",
        lifespan=lifespan,
    )
    install_error_handlers(app)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    for module in (
        routes_tasks,
        routes_callbacks,
        routes_files,
        routes_credits,
        routes_results,
        routes_ops,
    ):
        app.include_router(module.router)
    return app

"""The FastAPI application: routes, error envelope and body cap. What runs behind it (the
runtime and its background loops) is handed in by the composition root (``qwenedit.node``)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from fastapi import FastAPI

from qwenedit import __version__
from qwenedit.api import (
    routes_callbacks,
    routes_credits,
    routes_events,
    routes_files,
    routes_openai,
    routes_ops,
    routes_results,
    routes_tasks,
    routes_web,
)
from qwenedit.api.body_limit import BodyLimitMiddleware
from qwenedit.api.errors import install_error_handlers
from qwenedit.runtime import Runtime

RuntimeContext = Callable[[], AbstractAsyncContextManager[Runtime]]
"""Opens the runtime the routes' services come from for the app's lifespan."""


def create_app(open_runtime: RuntimeContext, *, max_body_bytes: int) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with open_runtime() as runtime:
            app.state.runtime = runtime
            yield

    app = FastAPI(
        title="qwenedit",
        version=__version__,
        description="Self-hosted qwen-image-edit-plus task API.",
        lifespan=lifespan,
    )
    install_error_handlers(app)
    app.add_middleware(BodyLimitMiddleware, max_bytes=max_body_bytes)
    for module in (
        routes_tasks,
        routes_events,
        routes_callbacks,
        routes_files,
        routes_credits,
        routes_results,
        routes_openai,
        routes_ops,
        routes_web,
    ):
        app.include_router(module.router)
    return app

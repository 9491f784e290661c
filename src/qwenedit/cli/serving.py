"""``serve`` and ``worker``: the long-running commands. They share one definition of the engine
options; ``serve --no-worker`` never imports torch (engines load lazily).

Exit status: 0 after SIGTERM or SIGINT (tasks in hand finished or handed back within the grace
period); 1 when a background loop died of a bug; 2 when the process cannot start (settings,
engine, schema not migrated, blob store refusing, database still unreachable after
``QWENEDIT_START_TIMEOUT``), with a one-line message. Outages after the start are waited out."""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import os
import signal
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any

import typer

from qwenedit import __version__
from qwenedit.cli.common import err, fail, run, settings_from
from qwenedit.config import Settings
from qwenedit.errors import ConfigError
from qwenedit.logs import configure_logging

if TYPE_CHECKING:
    from qwenedit.api.http_server import HttpServer

ENGINE_OPTIONS: dict[str, Any] = {
    "engine": Annotated[
        str | None,
        typer.Option(
            "--engine",
            help="qwen (the real model, CUDA), tiny (CPU, offline), remote, or module:Class",
        ),
    ],
    "model": Annotated[str | None, typer.Option(help="Hub id or local directory of the model")],
    "device": Annotated[str | None, typer.Option(help="Torch device, e.g. cuda, cuda:1, cpu")],
    "dtype": Annotated[str | None, typer.Option(help="bfloat16 (default), float16, float32")],
    "steps": Annotated[int | None, typer.Option(help="Denoising steps (default 40)")],
    "true_cfg_scale": Annotated[float | None, typer.Option(help="true_cfg_scale (default 4.0)")],
    "fast": Annotated[
        int | None, typer.Option(help="Lightning mode: 8 or 4 steps, distilled LoRA, CFG off")
    ],
    "offload": Annotated[
        str | None, typer.Option(help="none | model | group | sequential (see qwenedit doctor)")
    ],
    "vae_tiling": Annotated[
        bool | None, typer.Option("--vae-tiling/--no-vae-tiling", help="Decode in tiles")
    ],
    "compile": Annotated[
        bool | None, typer.Option("--compile/--no-compile", help="torch.compile the transformer")
    ],
    "warmup": Annotated[
        bool | None, typer.Option("--warmup/--no-warmup", help="One edit at start (default on)")
    ],
}
"""The flags that override engine settings, shared by ``serve`` and ``worker``."""

WorkersOption = Annotated[int, typer.Option(min=1, help="Worker loops in this process")]


def with_engine_options(command: Callable[..., None]) -> Callable[..., None]:
    """Give ``command`` the engine flags; it receives the settings they make as ``settings``."""
    own = [
        p
        for p in inspect.signature(command, eval_str=True).parameters.values()
        if p.name != "settings"
    ]
    shared = [
        inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=kind)
        for name, kind in ENGINE_OPTIONS.items()
    ]

    @functools.wraps(command)
    def wrapper(**values: Any) -> None:
        overrides = {name: values.pop(name) for name in ENGINE_OPTIONS}
        command(settings=settings_from(**overrides), **values)

    wrapper.__signature__ = inspect.Signature(own + shared)  # type: ignore[attr-defined]
    wrapper.__annotations__ = {p.name: p.annotation for p in own + shared}
    return wrapper


def _check_engine(settings: Settings) -> None:
    from qwenedit.engines.registry import check_engine_available

    try:
        check_engine_available(settings)
    except ConfigError as exc:
        raise fail(str(exc)) from exc


def _check_at_start(settings: Settings) -> None:
    """Settings that cannot work stop the command here with one line, before anything starts
    (the database and the blob store are checked when the node opens them)."""
    try:
        settings.check_at_start()
    except ConfigError as exc:
        raise fail(str(exc)) from exc


def _embedded_engine_settings(settings: Settings) -> Settings:
    """In one embedded process, leave a core for the API and the event loop."""
    if settings.torch_threads is not None:
        return settings
    return settings.model_copy(update={"torch_threads": max(1, (os.cpu_count() or 2) - 1)})


LOOP_FAILED = "a background loop failed (see the log above); stopped"
FATAL_EXIT = 1


class _StopOnFatal:
    """``serve``'s answer to a background loop that died: uvicorn shuts down as gracefully as
    for SIGTERM, and afterwards the exit status says that it failed."""

    def __init__(self) -> None:
        self.server: HttpServer | None = None
        self.happened = False

    def __call__(self) -> None:
        self.happened = True
        if self.server is not None:
            self.server.should_exit = True


def _exit_cleanly(signum: int, frame: object) -> None:
    """uvicorn shuts down gracefully on SIGTERM, then raises the signal again with the handler
    it found; this one makes that a clean exit (status 0), which supervisors expect."""
    raise SystemExit(0)


@with_engine_options
def serve(
    settings: Settings,
    host: Annotated[str, typer.Option(help="Address to bind")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to bind")] = 8000,
    workers: WorkersOption = 1,
    no_worker: Annotated[bool, typer.Option("--no-worker", help="API only")] = False,
) -> None:
    """Run the API, embedded worker(s) and the reaper in one process."""
    import uvicorn

    from qwenedit.api.app import create_app
    from qwenedit.api.connections import protocol_for
    from qwenedit.api.http_server import HttpServer
    from qwenedit.engines.registry import load_engine
    from qwenedit.node import NodeOptions, check_start, node_runtime
    from qwenedit.runtime import default_public_url

    settings = _embedded_engine_settings(settings)
    configure_logging(settings)
    _check_at_start(settings)
    if not no_worker:
        _check_engine(settings)
    run(lambda: check_start(settings))
    public_url = default_public_url(settings, host, port)
    options = NodeOptions(
        public_url=public_url,
        workers=0 if no_worker else workers,
        load_engine=None if no_worker else load_engine,
        owns_process=True,
    )
    on_fatal = _StopOnFatal()
    app = create_app(
        node_runtime(settings, options, on_fatal=on_fatal),
        max_body_bytes=settings.max_body_bytes,
    )
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=settings.log_level.lower(),
        log_config=None,
        timeout_graceful_shutdown=int(settings.shutdown_grace) + 5,
        http=protocol_for(settings),
        ws="none",
    )
    on_fatal.server = HttpServer(config)
    err.print(f"qwenedit {__version__} listening on http://{host}:{port} (links: {public_url})")
    signal.signal(signal.SIGTERM, _exit_cleanly)
    on_fatal.server.run()
    if on_fatal.happened:
        raise fail(LOOP_FAILED, code=FATAL_EXIT)


@with_engine_options
def worker(settings: Settings, workers: WorkersOption = 1) -> None:
    """Run worker loop(s), the reaper and the callback dispatcher, against a shared database."""
    from qwenedit.engines.registry import load_engine
    from qwenedit.node import NodeOptions, run_node
    from qwenedit.runtime import default_public_url

    configure_logging(settings)
    _check_at_start(settings)
    _check_engine(settings)
    if not settings.public_url:
        logging.getLogger(__name__).warning(
            "QWENEDIT_PUBLIC_URL is not set: callback bodies will link to 127.0.0.1:8000"
        )
    options = NodeOptions(
        public_url=default_public_url(settings, "", 8000),
        workers=workers,
        load_engine=load_engine,
        owns_process=True,
    )

    async def main() -> bool:
        """Run until a signal or a loop's death; whether a loop died."""
        stop = asyncio.Event()
        died = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)

        def on_fatal() -> None:
            died.set()
            stop.set()

        async with run_node(settings, options, on_fatal=on_fatal):
            await stop.wait()
        return died.is_set()

    if run(main):
        raise fail(LOOP_FAILED, code=FATAL_EXIT)

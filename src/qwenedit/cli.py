"""The ``qwenedit`` command: serve, worker, keys, credits, db.

Admin commands and ``serve --no-worker`` never import torch: engines load lazily."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Coroutine
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console

from qwenedit import __version__
from qwenedit.config import Settings
from qwenedit.domain.money import credits_to_milli, milli_to_wire
from qwenedit.errors import ConfigError, QwenEditError
from qwenedit.store.accounts import Account, AccountRepo
from qwenedit.store.database import Database
from qwenedit.store.migrate import ensure_schema, upgrade

app = typer.Typer(help="Self-hosted qwen-image-edit-plus server.", no_args_is_help=True)
keys_app = typer.Typer(help="Create and revoke API keys.", no_args_is_help=True)
credits_app = typer.Typer(help="Grant and show account credits.", no_args_is_help=True)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
webhooks_app = typer.Typer(help="Callback signing secrets.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
app.add_typer(credits_app, name="credits")
app.add_typer(db_app, name="db")
app.add_typer(webhooks_app, name="webhooks")

err = Console(stderr=True, soft_wrap=True)
out = Console()
T = TypeVar("T")

EngineOption = Annotated[
    str | None,
    typer.Option(
        "--engine",
        help="qwen (the real model, CUDA), tiny (CPU, offline), remote, or module:Class",
    ),
]
ModelOption = Annotated[str | None, typer.Option(help="Hub id or local directory of the model")]
DeviceOption = Annotated[str | None, typer.Option(help="Torch device, e.g. cuda, cuda:1, cpu")]
DtypeOption = Annotated[str | None, typer.Option(help="bfloat16 (default), float16, float32")]
StepsOption = Annotated[int | None, typer.Option(help="Denoising steps (default 40)")]
CfgOption = Annotated[float | None, typer.Option(help="true_cfg_scale (default 4.0)")]
FastOption = Annotated[
    int | None, typer.Option(help="Lightning mode: 8 or 4 steps, distilled LoRA, CFG off")
]
OffloadOption = Annotated[
    str | None, typer.Option(help="none | model | group | sequential (see qwenedit doctor)")
]
VaeTilingOption = Annotated[
    bool | None, typer.Option("--vae-tiling/--no-vae-tiling", help="Decode in tiles")
]
CompileOption = Annotated[
    bool | None, typer.Option("--compile/--no-compile", help="torch.compile the transformer")
]
WarmupOption = Annotated[
    bool | None, typer.Option("--warmup/--no-warmup", help="One edit at start (default on)")
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON object")]


def _settings(**overrides: Any) -> Settings:
    try:
        return Settings(**{key: value for key, value in overrides.items() if value is not None})
    except ValueError as exc:
        raise _fail(f"invalid settings: {exc}") from exc


def _fail(message: str, code: int = 2) -> typer.Exit:
    err.print(f"[bold red]error:[/] {message}", highlight=False)
    return typer.Exit(code)


def _credits(text: str, name: str) -> int:
    try:
        return credits_to_milli(text)
    except ValueError as exc:
        raise _fail(f"{name}: {exc}") from exc


def _setup_logging(settings: Settings) -> None:
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def _run(main: Callable[[], Coroutine[Any, Any, T]]) -> T:
    try:
        return asyncio.run(main())
    except QwenEditError as exc:
        raise _fail(str(exc)) from exc


async def _admin(settings: Settings, action: Callable[[AccountRepo], Awaitable[T]]) -> T:
    """Admin commands migrate an embedded SQLite themselves and work on a fresh data dir."""
    url = settings.resolved_database_url
    db = Database.connect(url)
    try:
        await ensure_schema(db, url)
        return await action(AccountRepo(db))
    finally:
        await db.close()


def _account_json(account: Account) -> dict[str, Any]:
    return {
        "account": account.name,
        "balance": milli_to_wire(account.balance_milli),
        "user_group": account.user_group,
    }


def _engine_settings(settings: Settings) -> Settings:
    """In one embedded process, leave a core for the API and the event loop."""
    if settings.torch_threads is not None:
        return settings
    return settings.model_copy(update={"torch_threads": max(1, (os.cpu_count() or 2) - 1)})


@app.command()
def doctor(as_json: JsonOption = False) -> None:
    """Print the GPU, its free memory, library versions and the engine configuration that fits."""
    from qwenedit.doctor import inspect_machine

    report = inspect_machine()
    if as_json:
        print(json.dumps(report.as_dict()))
        return
    for label, value in report.lines():
        out.print(f"[bold]{label}:[/] {value}", highlight=False)


@app.command()
def version() -> None:
    """Print the version."""
    out.print(__version__)


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to bind")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to bind")] = 8000,
    engine: EngineOption = None,
    workers: Annotated[int, typer.Option(min=1, help="Worker loops in this process")] = 1,
    no_worker: Annotated[bool, typer.Option("--no-worker", help="API only")] = False,
    model: ModelOption = None,
    device: DeviceOption = None,
    dtype: DtypeOption = None,
    steps: StepsOption = None,
    true_cfg_scale: CfgOption = None,
    fast: FastOption = None,
    offload: OffloadOption = None,
    vae_tiling: VaeTilingOption = None,
    compile: CompileOption = None,
    warmup: WarmupOption = None,
) -> None:
    """Run the API, embedded worker(s) and the reaper in one process."""
    import uvicorn

    from qwenedit.api.app import ServeOptions, create_app
    from qwenedit.engines.registry import check_engine_available, load_engine
    from qwenedit.runtime import default_public_url

    settings = _engine_settings(
        _settings(
            engine=engine,
            model=model,
            device=device,
            dtype=dtype,
            steps=steps,
            true_cfg_scale=true_cfg_scale,
            fast=fast,
            offload=offload,
            vae_tiling=vae_tiling,
            compile=compile,
            warmup=warmup,
        )
    )
    _setup_logging(settings)
    if not no_worker:
        try:
            check_engine_available(settings)
        except ConfigError as exc:
            raise _fail(str(exc)) from exc
    _run(lambda: _admin(settings, _noop))
    public_url = default_public_url(settings, host, port)
    options = ServeOptions(
        public_url=public_url,
        workers=0 if no_worker else workers,
        load_engine=None if no_worker else load_engine,
    )
    err.print(f"qwenedit {__version__} listening on http://{host}:{port} (links: {public_url})")
    signal.signal(signal.SIGTERM, _exit_cleanly)
    uvicorn.run(
        create_app(settings, options),
        host=host,
        port=port,
        log_level=settings.log_level.lower(),
        timeout_graceful_shutdown=int(settings.shutdown_grace) + 5,
    )


def _exit_cleanly(signum: int, frame: object) -> None:
    """uvicorn shuts down gracefully on SIGTERM, then raises the signal again with the handler
    it found; this one makes that a clean exit (status 0), which supervisors expect."""
    raise SystemExit(0)


async def _noop(_: AccountRepo) -> None:
    return None


@app.command()
def worker(
    engine: EngineOption = None,
    workers: Annotated[int, typer.Option(min=1, help="Worker loops in this process")] = 1,
    model: ModelOption = None,
    device: DeviceOption = None,
    dtype: DtypeOption = None,
    steps: StepsOption = None,
    true_cfg_scale: CfgOption = None,
    fast: FastOption = None,
    offload: OffloadOption = None,
    vae_tiling: VaeTilingOption = None,
    compile: CompileOption = None,
    warmup: WarmupOption = None,
) -> None:
    """Run worker loop(s) and the reaper alone, against a shared database."""
    from qwenedit.engines.registry import check_engine_available, load_engine
    from qwenedit.runtime import default_public_url, open_runtime
    from qwenedit.worker.background import Background

    settings = _settings(
        engine=engine,
        model=model,
        device=device,
        dtype=dtype,
        steps=steps,
        true_cfg_scale=true_cfg_scale,
        fast=fast,
        offload=offload,
        vae_tiling=vae_tiling,
        compile=compile,
        warmup=warmup,
    )
    _setup_logging(settings)
    try:
        check_engine_available(settings)
    except ConfigError as exc:
        raise _fail(str(exc)) from exc
    if not settings.public_url:
        logging.getLogger(__name__).warning(
            "QWENEDIT_PUBLIC_URL is not set: callback bodies will link to 127.0.0.1:8000"
        )

    async def main() -> None:
        runtime = await open_runtime(settings, public_url=default_public_url(settings, "", 8000))
        loop = asyncio.get_running_loop()
        background = Background(runtime, on_fatal=lambda: background.stop.set())
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, background.stop.set)
        background.start_reaper()
        background.start_dispatcher()
        background.start_workers(workers, load_engine)
        try:
            await background.stop.wait()
        finally:
            await background.shutdown()
            await runtime.close()

    _run(main)


@keys_app.command("create")
def keys_create(
    account: Annotated[str, typer.Option("--account", help="Account name")],
    credits: Annotated[str, typer.Option("--credits", help="Credits to add")] = "0",
    group: Annotated[str | None, typer.Option("--group", help="User group")] = None,
    as_json: JsonOption = False,
) -> None:
    """Create the account if needed, add credits, print a new key (shown once)."""
    settings = _settings()
    milli = _credits(credits, "--credits")
    if milli < 0:
        raise _fail("--credits must not be negative")

    async def action(repo: AccountRepo) -> tuple[str, str, Account, str]:
        found = await repo.ensure(account, group)
        if milli:
            found = await repo.grant(found.id, milli, "keys create")
        key_id, key = await repo.create_key(found.id)
        return key_id, key, found, await repo.webhook_secret(found.id)

    key_id, key, found, webhook_secret = _run(lambda: _admin(settings, action))
    if as_json:
        shown = {"api_key": key, "key_id": key_id, "webhook_secret": webhook_secret}
        print(json.dumps({**shown, **_account_json(found)}))
        return
    out.print(f"API key for [bold]{found.name}[/] (shown once, store it now):")
    out.print(key, highlight=False, soft_wrap=True)
    out.print(f"key id {key_id}; balance {milli_to_wire(found.balance_milli)} credits")
    out.print(f"callbacks are signed with {webhook_secret}", highlight=False)


@keys_app.command("revoke")
def keys_revoke(
    key_id: Annotated[str, typer.Argument(help="The key id (qe_<id>_… or just <id>)")],
    as_json: JsonOption = False,
) -> None:
    """Revoke a key by its id; requests with it are refused at once."""
    settings = _settings()
    key_id = key_id.removeprefix("qe_").split("_")[0]

    async def action(repo: AccountRepo) -> bool:
        return await repo.revoke_key(key_id)

    revoked = _run(lambda: _admin(settings, action))
    if as_json:
        print(json.dumps({"key_id": key_id, "revoked": revoked}))
    elif revoked:
        out.print(f"revoked {key_id}")
    if not revoked:
        raise _fail(f"no active key with id {key_id}", code=1)


@credits_app.command("grant")
def credits_grant(
    account: Annotated[str, typer.Argument(help="Account name")],
    amount: Annotated[str, typer.Argument(help="Credits (negative takes back)")],
    as_json: JsonOption = False,
) -> None:
    """Add credits to an account (ledger row 'grant')."""
    settings = _settings()
    milli = _credits(amount, "AMOUNT")

    async def action(repo: AccountRepo) -> Account:
        found = await repo.get_by_name(account)
        if found is None:
            raise ConfigError(f"no account named {account!r}")
        return await repo.grant(found.id, milli, "credits grant")

    found = _run(lambda: _admin(settings, action))
    if as_json:
        print(json.dumps(_account_json(found)))
    else:
        out.print(f"{found.name}: balance {milli_to_wire(found.balance_milli)} credits")


@credits_app.command("show")
def credits_show(
    account: Annotated[str, typer.Argument(help="Account name")],
    as_json: JsonOption = False,
) -> None:
    """Show an account's balance and group."""
    settings = _settings()

    async def action(repo: AccountRepo) -> Account | None:
        return await repo.get_by_name(account)

    found = _run(lambda: _admin(settings, action))
    if found is None:
        raise _fail(f"no account named {account!r}", code=1)
    if as_json:
        print(json.dumps(_account_json(found)))
    else:
        out.print(
            f"{found.name}: balance {milli_to_wire(found.balance_milli)} credits, "
            f"group {found.user_group}"
        )


@webhooks_app.command("rotate-secret")
def webhooks_rotate_secret(
    account: Annotated[str, typer.Argument(help="Account name")],
    as_json: JsonOption = False,
) -> None:
    """New callback signing secret; the old one also signs for the next 24 h."""
    settings = _settings()

    async def action(repo: AccountRepo) -> str:
        found = await repo.get_by_name(account)
        if found is None:
            raise ConfigError(f"no account named {account!r}")
        return await repo.rotate_webhook_secret(found.id)

    secret = _run(lambda: _admin(settings, action))
    if as_json:
        print(json.dumps({"account": account, "webhook_secret": secret}))
    else:
        out.print(f"{account}: callbacks are now signed with {secret}", highlight=False)
        out.print("the previous secret keeps signing alongside it for 24 h")


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply the Alembic migrations to the configured database."""
    settings = _settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    try:
        upgrade(settings.resolved_database_url)
    except QwenEditError as exc:
        raise _fail(str(exc)) from exc
    err.print("database is up to date")

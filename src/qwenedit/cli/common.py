"""What every command shares: the consoles, settings from flags, errors as exit codes."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console

from qwenedit.config import Settings
from qwenedit.domain.money import credits_to_milli, milli_to_wire
from qwenedit.errors import DomainError, QwenEditError
from qwenedit.store.accounts import Account, AccountRepo
from qwenedit.store.database import Database
from qwenedit.store.migrate import ensure_schema

err = Console(stderr=True, soft_wrap=True)
out = Console()
T = TypeVar("T")

JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON object")]


def settings_from(**overrides: Any) -> Settings:
    """The settings, with the flags that were given taking precedence over the environment."""
    try:
        return Settings(**{key: value for key, value in overrides.items() if value is not None})
    except ValueError as exc:
        raise fail(f"invalid settings: {exc}") from exc


def fail(message: str, code: int = 2) -> typer.Exit:
    err.print(f"[bold red]error:[/] {message}", highlight=False)
    return typer.Exit(code)


def credits_option(text: str, name: str) -> int:
    try:
        return credits_to_milli(text)
    except ValueError as exc:
        raise fail(f"{name}: {exc}") from exc


def run(main: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run ``main``; a ``DomainError`` is the command's to word, any other of ours exits 2."""
    try:
        return asyncio.run(main())
    except DomainError:
        raise
    except QwenEditError as exc:
        raise fail(str(exc)) from exc


async def with_accounts(settings: Settings, action: Callable[[AccountRepo], Awaitable[T]]) -> T:
    """Admin commands migrate an embedded SQLite themselves and work on a fresh data dir."""
    url = settings.resolved_database_url
    db = Database.connect(url)
    try:
        await ensure_schema(db, url)
        return await action(AccountRepo(db))
    finally:
        await db.close()


def account_json(account: Account) -> dict[str, Any]:
    return {
        "account": account.name,
        "balance": milli_to_wire(account.balance_milli),
        "user_group": account.user_group,
    }

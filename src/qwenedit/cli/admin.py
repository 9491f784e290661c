"""Admin commands: keys, credits, callback secrets and the schema. Each works on a fresh data
dir and never imports torch."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from qwenedit.cli.common import (
    JsonOption,
    account_json,
    credits_option,
    err,
    fail,
    out,
    run,
    settings_from,
    with_accounts,
)
from qwenedit.domain.money import credits_text, milli_to_wire
from qwenedit.errors import AccountNotFound, QuotaExceeded, QwenEditError
from qwenedit.store.accounts import Account, AccountRepo
from qwenedit.store.migrate import upgrade

keys_app = typer.Typer(help="Create and revoke API keys.", no_args_is_help=True)
credits_app = typer.Typer(help="Grant and show account credits.", no_args_is_help=True)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
webhooks_app = typer.Typer(help="Callback signing secrets.", no_args_is_help=True)


async def _named(repo: AccountRepo, name: str) -> Account:
    found = await repo.get_by_name(name)
    if found is None:
        raise AccountNotFound(name)
    return found


def _no_account(name: str) -> typer.Exit:
    return fail(f"no account named {name!r}", code=1)


@keys_app.command("create")
def keys_create(
    account: Annotated[str, typer.Option("--account", help="Account name")],
    credits: Annotated[str, typer.Option("--credits", help="Credits to add")] = "0",
    group: Annotated[str | None, typer.Option("--group", help="User group")] = None,
    as_json: JsonOption = False,
) -> None:
    """Create the account if needed, add credits, print a new key (shown once)."""
    settings = settings_from()
    milli = credits_option(credits, "--credits")
    if milli < 0:
        raise fail("--credits must not be negative")

    async def action(repo: AccountRepo) -> tuple[str, str, Account, str]:
        found = await repo.ensure(account, group)
        if milli:
            found = await repo.grant(found.id, milli, "keys create")
        key_id, key = await repo.create_key(found.id)
        return key_id, key, found, await repo.webhook_secret(found.id)

    key_id, key, found, webhook_secret = run(lambda: with_accounts(settings, action))
    if as_json:
        shown = {"api_key": key, "key_id": key_id, "webhook_secret": webhook_secret}
        print(json.dumps({**shown, **account_json(found)}))
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
    settings = settings_from()
    key_id = key_id.removeprefix("qe_").split("_")[0]

    async def action(repo: AccountRepo) -> bool:
        return await repo.revoke_key(key_id)

    revoked = run(lambda: with_accounts(settings, action))
    if as_json:
        print(json.dumps({"key_id": key_id, "revoked": revoked}))
    elif revoked:
        out.print(f"revoked {key_id}")
    if not revoked:
        raise fail(f"no active key with id {key_id}", code=1)


@credits_app.command("grant")
def credits_grant(
    account: Annotated[str, typer.Argument(help="Account name")],
    amount: Annotated[str, typer.Argument(help="Credits (negative takes back)")],
    as_json: JsonOption = False,
) -> None:
    """Add credits to an account (ledger row 'grant')."""
    settings = settings_from()
    milli = credits_option(amount, "AMOUNT")

    async def action(repo: AccountRepo) -> Account:
        found = await _named(repo, account)
        return await repo.grant(found.id, milli, "credits grant")

    try:
        found = run(lambda: with_accounts(settings, action))
    except QuotaExceeded as exc:
        raise fail(
            f"cannot take {credits_text(exc.needed_milli)} credits, "
            f"the balance is {credits_text(exc.balance_milli)}",
            code=1,
        ) from exc
    except AccountNotFound as exc:
        raise _no_account(account) from exc
    if as_json:
        print(json.dumps(account_json(found)))
    else:
        out.print(f"{found.name}: balance {milli_to_wire(found.balance_milli)} credits")


@credits_app.command("show")
def credits_show(
    account: Annotated[str, typer.Argument(help="Account name")],
    as_json: JsonOption = False,
) -> None:
    """Show an account's balance and group."""
    settings = settings_from()

    async def action(repo: AccountRepo) -> Account:
        return await _named(repo, account)

    try:
        found = run(lambda: with_accounts(settings, action))
    except AccountNotFound as exc:
        raise _no_account(account) from exc
    if as_json:
        print(json.dumps(account_json(found)))
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
    settings = settings_from()

    async def action(repo: AccountRepo) -> str:
        return await repo.rotate_webhook_secret((await _named(repo, account)).id)

    try:
        secret = run(lambda: with_accounts(settings, action))
    except AccountNotFound as exc:
        raise _no_account(account) from exc
    if as_json:
        print(json.dumps({"account": account, "webhook_secret": secret}))
    else:
        out.print(f"{account}: callbacks are now signed with {secret}", highlight=False)
        out.print("the previous secret keeps signing alongside it for 24 h")


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply the Alembic migrations to the configured database."""
    settings = settings_from()
    try:
        upgrade(settings.resolved_database_url)
    except QwenEditError as exc:
        raise fail(str(exc)) from exc
    err.print("database is up to date")

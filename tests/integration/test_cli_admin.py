"""The admin commands through the real CLI (typer's runner on ``qwenedit.cli.app``) against a
fresh SQLite data dir: revoking a key, granting credits, rotating the webhook secret."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from qwenedit.cli import app
from qwenedit.store.accounts import AccountRepo, signing_secrets
from qwenedit.store.database import Database
from qwenedit.store.migrate import ensure_schema


@pytest.fixture
def cli(tmp_path: Path) -> Any:
    runner = CliRunner()
    env = {"QWENEDIT_DATA_DIR": str(tmp_path / "data")}

    def invoke(*args: str, code: int = 0) -> Any:
        result = runner.invoke(app, list(args), env=env)
        assert result.exit_code == code, result.output
        return json.loads(result.stdout) if code == 0 and "--json" in args else result

    invoke.data_dir = tmp_path / "data"  # type: ignore[attr-defined]
    return invoke


def in_store(data_dir: Path, action: Any) -> Any:
    async def main() -> Any:
        url = f"sqlite+aiosqlite:///{(data_dir / 'qwenedit.db').resolve()}"
        db = Database.connect(url)
        try:
            await ensure_schema(db, url)
            return await action(AccountRepo(db), db)
        finally:
            await db.close()

    return asyncio.run(main())


def test_keys_revoke_refuses_the_key_at_once(cli: Any) -> None:
    created = cli("keys", "create", "--account", "acme", "--credits", "5", "--json")
    kept = cli("keys", "create", "--account", "acme", "--json")

    async def authenticated(repo: AccountRepo, _db: Database) -> list[bool]:
        return [
            await repo.authenticate(k) is not None for k in (created["api_key"], kept["api_key"])
        ]

    assert in_store(cli.data_dir, authenticated) == [True, True]
    assert cli("keys", "revoke", created["api_key"].rsplit("_", 1)[0], "--json") == {
        "key_id": created["key_id"],
        "revoked": True,
    }
    assert in_store(cli.data_dir, authenticated) == [False, True]
    again = cli("keys", "revoke", created["key_id"], code=1)
    assert "no active key" in again.output


def test_credits_grant_adds_and_takes_back_but_never_below_zero(cli: Any) -> None:
    cli("keys", "create", "--account", "acme", "--credits", "5", "--json")
    assert cli("credits", "grant", "acme", "2.5", "--json")["balance"] == 7.5
    assert cli("credits", "grant", "--json", "acme", "--", "-7")["balance"] == 0.5
    refused = cli("credits", "grant", "acme", "--", "-1", code=1)
    assert "the balance is 0.5" in refused.output
    assert cli("credits", "show", "acme", "--json")["balance"] == 0.5
    cli("credits", "grant", "nobody", "1", code=1)

    async def ledger_matches(repo: AccountRepo, _db: Database) -> bool:
        found = await repo.get_by_name("acme")
        assert found is not None
        return found.balance_milli == await repo.ledger_sum(found.id) == 500

    assert in_store(cli.data_dir, ledger_matches)


def test_webhooks_rotate_secret_signs_with_both_for_a_while(cli: Any) -> None:
    first = cli("keys", "create", "--account", "acme", "--json")["webhook_secret"]
    rotated = cli("webhooks", "rotate-secret", "acme", "--json")
    assert rotated["account"] == "acme"
    assert rotated["webhook_secret"].startswith("whsec_")
    assert rotated["webhook_secret"] != first

    async def secrets_in_use(repo: AccountRepo, db: Database) -> list[str]:
        found = await repo.get_by_name("acme")
        assert found is not None
        async with db.transaction(write=False) as connection:
            return await signing_secrets(connection, found.id, datetime.now(UTC))

    assert sorted(in_store(cli.data_dir, secrets_in_use)) == sorted(
        [first, rotated["webhook_secret"]]
    )
    cli("webhooks", "rotate-secret", "nobody", code=1)

"""Accounts, keys and grants; the balance always equals the ledger."""

from __future__ import annotations

import asyncio

import pytest

from qwenedit.errors import AccountNotFound, QuotaExceeded
from qwenedit.store.accounts import AccountRepo, Caller
from qwenedit.store.database import Database
from qwenedit.store.workers import WorkerRepo


async def test_ensure_creates_once_and_sets_the_group(accounts: AccountRepo) -> None:
    created = await accounts.ensure("acme")
    assert (created.name, created.user_group, created.balance_milli) == ("acme", "default", 0)
    assert await accounts.ensure("acme") == created
    pro = await accounts.ensure("acme", "pro")
    assert (pro.id, pro.user_group) == (created.id, "pro")
    assert await accounts.ensure("acme") == pro  # no group given: kept
    assert await accounts.get_by_name("acme") == pro
    assert await accounts.get_by_name("nobody") is None


async def test_keys_authenticate_until_revoked(accounts: AccountRepo) -> None:
    acme = await accounts.ensure("acme")
    other = await accounts.ensure("other")
    key_id, key = await accounts.create_key(acme.id)
    _, other_key = await accounts.create_key(other.id)
    assert await accounts.authenticate(key) == Caller(acme.id, "acme", "default")
    assert await accounts.authenticate(other_key) == Caller(other.id, "other", "default")
    forged = f"qe_{key_id}_{'A' * 43}"  # right id, wrong secret
    for bad in (forged, key + "x", "qe_x_y", ""):
        assert await accounts.authenticate(bad) is None
    assert await accounts.revoke_key(key_id) is True
    assert await accounts.revoke_key(key_id) is False
    assert await accounts.authenticate(key) is None
    assert await accounts.authenticate(other_key) == Caller(other.id, "other", "default")


async def test_grants_move_the_balance_and_never_below_zero(accounts: AccountRepo) -> None:
    acme = await accounts.ensure("acme")
    assert (await accounts.grant(acme.id, 2500, "top up")).balance_milli == 2500
    assert (await accounts.grant(acme.id, -1000, "take back")).balance_milli == 1500
    with pytest.raises(QuotaExceeded) as refused:
        await accounts.grant(acme.id, -1501, "too much")
    assert (refused.value.needed_milli, refused.value.balance_milli) == (1501, 1500)
    assert (await accounts.grant(acme.id, -1500, "all of it")).balance_milli == 0
    assert await accounts.ledger_sum(acme.id) == 0
    with pytest.raises(AccountNotFound):
        await accounts.grant(acme.id + 1000, 1, "nobody")


async def test_concurrent_grants_and_takes_keep_balance_equal_to_ledger(
    accounts: AccountRepo,
) -> None:
    acme = await accounts.ensure("acme")
    await accounts.grant(acme.id, 5000, "start")
    moves = [1000, -2000, -2000, -2000, 500, -3000]

    async def move(amount: int) -> int:
        try:
            await accounts.grant(acme.id, amount, "race")
        except QuotaExceeded:
            return 0
        return amount

    applied = await asyncio.gather(*(move(amount) for amount in moves))
    final = await accounts.get_by_name("acme")
    assert final is not None
    assert final.balance_milli == 5000 + sum(applied) == await accounts.ledger_sum(acme.id)
    assert final.balance_milli >= 0
    assert 0 in applied  # 5 + 1.5 credits cannot cover 11 taken


async def test_worker_presence(db: Database) -> None:
    workers = WorkerRepo(db)
    assert await workers.alive_count(30) == 0
    await workers.register("w1", "tiny")
    await workers.register("w2", "tiny")
    await workers.register("w1", "tiny")  # a restart under the same id
    await workers.beat("w1")
    assert await workers.alive_count(30) == 2
    assert await workers.alive_count(-1) == 0  # nobody beat in the future
    await workers.remove("w2")
    assert await workers.alive_count(30) == 1

"""Remembered API keys: fewer lookups, and revocation still takes effect within the memory time."""

from __future__ import annotations

from qwenedit.services.callers import CallerService
from qwenedit.store.accounts import AccountRepo, Caller
from qwenedit.store.database import Database


class Ticks:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class CountingRepo(AccountRepo):
    """The real repository, counting the key lookups that reach the database."""

    lookups = 0

    async def authenticate(self, full_key: str) -> Caller | None:
        self.lookups += 1
        return await super().authenticate(full_key)


async def test_a_revoked_key_stops_working_once_its_memory_runs_out(
    db: Database, accounts: AccountRepo
) -> None:
    repo = CountingRepo(db)
    ticks = Ticks()
    callers = CallerService(repo, memory_seconds=1.0, clock=ticks)
    acme = await accounts.ensure("acme")
    key_id, key = await accounts.create_key(acme.id)

    assert await callers.authenticate(key) == Caller(acme.id, "acme", "default")
    ticks.now += 0.5
    assert await callers.authenticate(key) == Caller(acme.id, "acme", "default")
    assert repo.lookups == 1

    await accounts.revoke_key(key_id)
    ticks.now += 0.4
    assert await callers.authenticate(key) is not None  # still within its second
    ticks.now += 0.2
    assert await callers.authenticate(key) is None
    assert await callers.authenticate(key) is None
    assert repo.lookups == 3  # refusals are not remembered


async def test_the_balance_is_read_fresh_while_the_key_is_remembered(
    accounts: AccountRepo,
) -> None:
    callers = CallerService(accounts, memory_seconds=60.0)
    acme = await accounts.ensure("acme")
    _, key = await accounts.create_key(acme.id)
    caller = await callers.authenticate(key)
    assert caller is not None
    assert (await callers.credits(caller)).balance == 0
    await accounts.grant(acme.id, 2500, "top up")
    assert (await callers.authenticate(key)) == caller
    assert (await callers.credits(caller)).balance == 2.5


async def test_memory_is_bounded(db: Database, accounts: AccountRepo) -> None:
    repo = CountingRepo(db)
    callers = CallerService(repo, memory_seconds=60.0, max_entries=2)
    acme = await accounts.ensure("acme")
    keys = [(await accounts.create_key(acme.id))[1] for _ in range(3)]
    for key in keys:
        await callers.authenticate(key)
    await callers.authenticate(keys[2])
    await callers.authenticate(keys[1])
    assert repo.lookups == 3
    await callers.authenticate(keys[0])  # the least recently confirmed was forgotten
    assert repo.lookups == 4

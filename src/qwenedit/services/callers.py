"""Who is calling: API keys to accounts, and the caller's balance.

A key's owner is remembered for ``KEY_MEMORY_SECONDS`` after the database confirmed it, so a
client sending requests back to back costs one key lookup per second instead of one per
request; a revoked key stops working within that time on every node. Only the key's SHA-256
is kept, never the key; keys that were refused are not remembered (each refusal asks the
database again). The balance is never remembered: it is read when it is shown and moved by
the transactions that spend it.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

from qwenedit.domain.keys import hash_key
from qwenedit.domain.money import milli_to_wire
from qwenedit.domain.wire import Credits
from qwenedit.store.accounts import AccountRepo, Caller

KEY_MEMORY_SECONDS = 1.0
KEY_MEMORY_ENTRIES = 10_000
"""At most this many keys remembered; the least recently confirmed is forgotten first."""


class CallerService:
    def __init__(
        self,
        accounts: AccountRepo,
        *,
        memory_seconds: float = KEY_MEMORY_SECONDS,
        max_entries: int = KEY_MEMORY_ENTRIES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._accounts = accounts
        self._memory_seconds = memory_seconds
        self._max_entries = max_entries
        self._clock = clock
        self._remembered: OrderedDict[str, tuple[float, Caller]] = OrderedDict()

    async def authenticate(self, full_key: str) -> Caller | None:
        """The owner of an active key, or ``None``."""
        digest = hash_key(full_key)
        now = self._clock()
        remembered = self._remembered.get(digest)
        if remembered is not None and remembered[0] > now:
            return remembered[1]
        caller = await self._accounts.authenticate(full_key)
        if caller is None:
            self._remembered.pop(digest, None)
            return None
        self._remembered[digest] = (now + self._memory_seconds, caller)
        self._remembered.move_to_end(digest)
        while len(self._remembered) > self._max_entries:
            self._remembered.popitem(last=False)
        return caller

    async def credits(self, caller: Caller) -> Credits:
        return Credits(
            account=caller.name,
            balance=milli_to_wire(await self._accounts.balance(caller.id)),
            user_group=caller.user_group,
        )

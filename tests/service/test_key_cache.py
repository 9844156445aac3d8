"""What an instance remembers of a key: one read for many requests, and how long it still
trusts a key while its database cannot be read. On the real service database, with a
shim that counts its key reads and can fail them; time on the fake clock."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from sluicegate.backends.database import SqlDatabase
from sluicegate.errors import StorageError
from sluicegate.service.db import open_db
from sluicegate.service.tenants import (
    KEY_CACHE_SECONDS,
    KEY_TRUST_SECONDS,
    Principal,
    Refusal,
    Role,
    Tenants,
)
from sluicegate.testing import FakeClock


class Shim:
    """The database, with its key reads counted, slowed until ``gate`` opens, and failed
    while ``down``."""

    def __init__(self, db: SqlDatabase) -> None:
        self.db = db
        self.reads = 0
        self.down = False
        self.gate = asyncio.Event()
        self.gate.set()

    async def execute(self, what: str, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
        if what == "reading a key" and "token_hash" in sql:
            self.reads += 1
            await self.gate.wait()
            if self.down:
                raise StorageError("the database is away")
        return await self.db.execute(what, sql, params)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.db, name)


@pytest.fixture
async def shim(tmp_path: Path) -> AsyncIterator[Shim]:
    db = await open_db(tmp_path)
    yield Shim(db)
    await db.aclose()


async def test_requests_of_a_key_not_read_yet_share_one_read(shim: Shim, clock: FakeClock) -> None:
    """50 requests of one key arriving while it is read, and again once what was read is
    stale: one read each time, and every request gets the key's principal."""
    tenants = Tenants(shim, clock)  # type: ignore[arg-type]
    token = await tenants.create_key(org="acme", role=Role.CALLER)
    for expected_reads in (1, 2):
        shim.gate.clear()
        checks = [asyncio.create_task(tenants.check(token)) for _ in range(50)]
        await asyncio.sleep(0)
        shim.gate.set()
        found = await asyncio.gather(*checks)
        assert (expected_reads, {Principal(org="acme", role=Role.CALLER)}) == (
            shim.reads, set(found))  # fmt: skip
        await clock.advance(KEY_CACHE_SECONDS)


async def test_a_key_is_trusted_through_a_short_outage_not_a_long_one(
    shim: Shim, clock: FakeClock
) -> None:
    """With the database away, a key read before keeps acting (read again every
    KEY_CACHE_SECONDS) until KEY_TRUST_SECONDS after the database last confirmed it; then
    its requests fail with StorageError (503), so that a revocation made meanwhile
    elsewhere is not ignored for longer. Once the database is back, the key acts again."""
    tenants = Tenants(shim, clock)  # type: ignore[arg-type]
    token = await tenants.create_key(org="acme", role=Role.CALLER)
    confirmed = clock.now()
    assert isinstance(await tenants.check(token), Principal)
    shim.down = True
    for _ in range(int(KEY_TRUST_SECONDS / KEY_CACHE_SECONDS) + 2):
        await clock.advance(KEY_CACHE_SECONDS)
        try:
            await tenants.check(token)
        except StorageError:
            break
    else:
        pytest.fail("the key was trusted however long the database was away")
    assert KEY_TRUST_SECONDS <= clock.now() - confirmed <= KEY_TRUST_SECONDS + KEY_CACHE_SECONDS
    shim.down = False
    assert isinstance(await tenants.check(token), Principal)
    assert Refusal.UNKNOWN == await tenants.check("sg_unknown")

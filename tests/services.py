"""The machine's Redis and PostgreSQL, for the tests that share state through them.

Each test gets a namespace of its own: a fresh PostgreSQL schema (dropped after) and a
fresh Redis key prefix (deleted after). A service that does not answer skips its tests,
or fails them when ``SLUICEGATE_REQUIRE_SERVICES=1`` (set by CI).
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import quote

import psycopg
import pytest
from redis import asyncio as aioredis
from redis.exceptions import RedisError

from sluicegate.wiring import Shared

REDIS_URL = os.environ.get("SLUICEGATE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
POSTGRES_URL = os.environ.get(
    "SLUICEGATE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)


def _missing(what: str, exc: Exception) -> None:
    message = f"{what} is not reachable: {exc}"
    if os.environ.get("SLUICEGATE_REQUIRE_SERVICES") == "1":
        pytest.fail(message + " (SLUICEGATE_REQUIRE_SERVICES=1)", pytrace=False)
    pytest.skip(message)


@asynccontextmanager
async def postgres_schema() -> AsyncIterator[str]:
    """A PostgreSQL URL whose tables live in a new schema, dropped on exit."""
    schema = f"t_{secrets.token_hex(6)}"
    try:
        admin = await psycopg.AsyncConnection.connect(POSTGRES_URL, autocommit=True,
                                                      connect_timeout=3)  # fmt: skip
    except psycopg.Error as exc:
        _missing("PostgreSQL", exc)
    async with admin:
        await admin.execute(f"CREATE SCHEMA {schema}")
        try:
            sep = "&" if "?" in POSTGRES_URL else "?"
            yield f"{POSTGRES_URL}{sep}options={quote(f'-csearch_path={schema}')}"
        finally:
            await admin.execute(f"DROP SCHEMA {schema} CASCADE")


@asynccontextmanager
async def redis_prefix(url: str = REDIS_URL) -> AsyncIterator[str]:
    """A Redis key prefix of its own; its keys are deleted on exit."""
    prefix = f"sgt{secrets.token_hex(4)}"
    client = aioredis.from_url(url)
    try:
        await client.ping()
    except RedisError as exc:
        await client.aclose()
        _missing("Redis", exc)
    try:
        yield prefix
    finally:
        for _ in range(2):  # a Redis restarted meanwhile closed the first connection
            with contextlib.suppress(RedisError):
                keys = [key async for key in client.scan_iter(match=f"{prefix}:*", count=1000)]
                if keys:
                    await client.delete(*keys)
                break
        await client.aclose()


@asynccontextmanager
async def shared(*, server_time: bool = True) -> AsyncIterator[Shared]:
    """Storage shared through the machine's Redis and PostgreSQL, in a namespace of its own."""
    async with postgres_schema() as postgres_url, redis_prefix() as prefix:
        yield Shared(redis_url=REDIS_URL, postgres_url=postgres_url, prefix=prefix,
                     server_time=server_time)  # fmt: skip

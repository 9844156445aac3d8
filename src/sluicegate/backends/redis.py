"""The shared backend: slots, throttling queues and connection limits in Redis.

Several sluicegate instances on one Redis obey one set of windows and one FIFO per queue.
Every decision is one Lua script (``lua/`` beside this file), so it is atomic, and the
requests made meanwhile go together in one round trip. The slot store is in
:mod:`~sluicegate.backends.redis_slots`, the queue store in
:mod:`~sluicegate.backends.redis_queue`, the key names in
:mod:`~sluicegate.backends.redis_keys`; the connection limits and the backend here. Choices:

* **One clock.** By default the scripts read the time from Redis (``TIME``), never from an
  instance: windows stay exact whatever the instances' clocks say. ``server_time=False``
  takes the caller's ``now_ms`` instead (tests drive it with a fake clock).
* **Slots.** A limit is two sorted sets: reservations (``held``, scored by the end of
  their lease) and sent slots (``sent``, scored by their send time). A reservation whose
  lease ends without a stamp belongs to an instance that died: it counts as sent at the
  end of its lease, which is later than any send it could have made, so the window stays
  exact. A send is stamped with its time on Redis's clock, read through the tightest bound
  the instance has of that clock's offset (never earlier than the true time). Stamps and
  releases are sent in the background, in batches.
* **Queues.** A queue is a sorted set of call ids by push sequence, the calls in a hash;
  claimed calls are leased to their instance (renewed while it runs them) and go back to
  their place when a lease ends, so a dead instance's calls are delivered by the others
  (at least once). Queued calls cost Redis memory, not instance memory. A paused queue
  has a ``paused`` key, read by the scripts that claim from it and admit behind it.
* **Cluster.** Every key of one limit, queue or connection pool shares the hash tag
  ``{<key>}``, and no script touches two of them but a decision over two limits (a data
  source under a capping rule and the default cap); see ``docs/many-instances.md``.

Redis must keep its data for queued calls to survive its restart: run it with
``appendonly yes`` (a warning is logged at start otherwise).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import secrets
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from importlib.resources import files
from typing import Any

from redis import asyncio as aioredis
from redis.commands.core import AsyncScript
from redis.exceptions import RedisError

from sluicegate.backends.redis_keys import Keys, ask
from sluicegate.backends.redis_queue import RedisQueueStore
from sluicegate.backends.redis_slots import RedisSlotStore
from sluicegate.errors import StorageError
from sluicegate.sealing import Sealer
from sluicegate.storage import ConfigStore

#: How long a connection stays held by an instance that stopped answering.
CONNECTION_LEASE_MS = 60_000
#: Connections to Redis per instance; requests beyond them wait for one.
MAX_CONNECTIONS = 32
log = logging.getLogger(__name__)
_SCRIPTS = (
    "acquire", "settle", "pause", "in_use", "connect",
    "push", "claim", "expire", "remove", "reclaim", "renew", "head", "purge",
)  # fmt: skip


class RedisConnections:
    """Connection limits shared by every instance: a semaphore of leased holders."""

    def __init__(
        self, client: aioredis.Redis, script: AsyncScript, keys: Keys, *, instance: str
    ) -> None:
        self._client = client
        self._script = script
        self._keys = keys
        self._instance = instance
        self._holders = itertools.count(1)
        self._held: Counter[str] = Counter()
        self._releases: set[asyncio.Task[Any]] = set()

    @asynccontextmanager
    async def hold(self, key: str, limit: int) -> AsyncIterator[None]:
        holder = f"{self._instance}:{next(self._holders)}"
        name = self._keys.connections(key)
        delay = 0.002
        while not await ask(
            "taking a connection",
            self._script(keys=[name], args=[limit, holder, CONNECTION_LEASE_MS],
                         client=self._client),
        ):  # fmt: skip
            await asyncio.sleep(delay)  # the caller's deadline bounds the wait
            delay = min(delay * 2, 0.05)
        self._held[key] += 1
        try:
            yield
        finally:
            self._held[key] -= 1
            task = asyncio.create_task(self._give_back(name, holder))
            self._releases.add(task)
            task.add_done_callback(self._released)

    async def _give_back(self, name: str, holder: str) -> None:
        await self._client.zrem(name, holder)

    def _released(self, task: asyncio.Task[Any]) -> None:
        self._releases.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("a connection not given back (its lease will): %s", task.exception())

    def in_use(self, key: str) -> int:
        return self._held[key]

    async def aclose(self) -> None:
        await asyncio.gather(*self._releases, return_exceptions=True)


class RedisBackend:
    """Slots, queues and connections in Redis; configs in ``configs`` (PostgreSQL in
    production). Build with :meth:`open`."""

    def __init__(
        self,
        client: aioredis.Redis,
        configs: ConfigStore,
        *,
        prefix: str = "sg",
        server_time: bool = True,
        closing: Callable[[], Awaitable[None]] | None = None,
        sealer: Sealer | None = None,
    ) -> None:
        path = files("sluicegate.backends") / "lua"
        scripts = {name: client.register_script((path / f"{name}.lua").read_text())
                   for name in _SCRIPTS}  # fmt: skip
        keys = Keys(prefix)
        instance = secrets.token_hex(6)
        self.client = client
        self.slots = RedisSlotStore(client, scripts, keys, instance=instance,
                                    server_time=server_time)  # fmt: skip
        self.queue = RedisQueueStore(client, scripts, keys, sealer)
        self.connections = RedisConnections(client, scripts["connect"], keys, instance=instance)
        self.configs = configs
        self._closing = closing

    @classmethod
    async def open(cls, url: str, configs: ConfigStore, **options: Any) -> RedisBackend:
        """Connect to ``url`` (``redis://``, ``rediss://``, ``unix://``; a Sentinel or a
        managed Redis through redis-py's own URL support) and check it answers."""
        pool = aioredis.BlockingConnectionPool.from_url(
            url, decode_responses=True, socket_timeout=2.0, socket_connect_timeout=2.0,
            health_check_interval=5, max_connections=MAX_CONNECTIONS, timeout=2.0,
        )  # fmt: skip
        client = aioredis.Redis.from_pool(pool)
        try:
            await ask(f"connecting to {url}", client.ping())
        except StorageError:
            await client.aclose()
            raise
        with contextlib.suppress(RedisError):  # managed Redis may refuse CONFIG
            found = await client.config_get("appendonly")
            if found.get("appendonly") == "no":
                log.warning("Redis at %s keeps no append-only file: a Redis restart loses "
                            "queued calls and windows (set appendonly yes)", url)  # fmt: skip
        return cls(client, configs, **options)

    async def recover(self, now_ms: int) -> None:
        await self.queue.reclaim()

    async def aclose(self) -> None:
        try:
            await self.slots.aclose()
            await self.queue.aclose()
            await self.connections.aclose()
            await self.client.aclose()
        finally:
            if self._closing is not None:
                await self._closing()

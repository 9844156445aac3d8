"""The shared backend: slots, throttling queues and connection limits in Redis.

Several sluicegate instances on one Redis obey one set of windows and one FIFO per queue.
Every decision is one Lua script (``lua/`` beside this file), so it is atomic and one
round trip. Choices:

* **One clock.** By default the scripts read the time from Redis (``TIME``), never from an
  instance: windows stay exact whatever the instances' clocks say. ``server_time=False``
  takes the caller's ``now_ms`` instead (tests drive it with a fake clock).
* **Slots.** A limit is two sorted sets: reservations (``held``, scored by the end of
  their lease) and sent slots (``sent``, scored by their send time). A reservation whose
  lease ends without a stamp belongs to an instance that died: it counts as sent at the
  end of its lease, which is later than any send it could have made, so the window stays
  exact. A send is stamped at the Redis time of its grant plus the time that passed on the
  instance until it left. Stamps and releases are sent in the background, in batches.
* **Queues.** A queue is a sorted set of call ids by push sequence, the calls in a hash;
  claimed calls are leased to their instance (renewed while it runs them) and go back to
  their place when a lease ends, so a dead instance's calls are delivered by the others
  (at least once). Queued calls cost Redis memory, not instance memory.
* **Cluster.** Every key of one limit, queue or connection pool shares the hash tag
  ``{<key>}``, and no script touches two of them but a decision over two limits (a data
  source under a capping rule and the default cap); see ``docs/many-instances.md``.

Redis must keep its data for queued calls to survive its restart: run it with
``appendonly yes`` (a warning is logged at start otherwise).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import logging
import secrets
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from importlib.resources import files
from typing import Any, NamedTuple, TypeVar

from redis import asyncio as aioredis
from redis.asyncio.client import Pipeline
from redis.commands.core import AsyncScript
from redis.exceptions import RedisError

from sluicegate.call import Call, Service
from sluicegate.errors import StorageError
from sluicegate.storage import ConfigStore, Grant, Limit, QueuedCall, QueueDepth, Stored, Wait

#: How long a reservation may go unstamped before it counts as sent: longer than any
#: call's budget (30 s), within which every request is sent or given up.
SLOT_LEASE_MS = 35_000
#: Seconds between two tries to write stamps while Redis is unavailable.
RETRY_WRITES_AFTER = 0.5
#: Stamps and releases kept for a retry while Redis is unavailable, at most.
MAX_UNWRITTEN = 100_000
#: How long a claimed call stays with its instance without a renewal.
CLAIM_LEASE_MS = 10_000
#: How long a connection stays held by an instance that stopped answering.
CONNECTION_LEASE_MS = 60_000
#: Pipelines of slot requests in flight at once, at most.
SENDERS = 2
#: Connections to Redis per instance; requests beyond them wait for one.
MAX_CONNECTIONS = 32
log = logging.getLogger(__name__)
_T = TypeVar("_T")
_Writes = tuple[list[tuple[Grant, str]], list[tuple[Sequence[Limit], int, int]]]
_SCRIPTS = (
    "acquire", "settle", "pause", "in_use", "connect",
    "push", "claim", "expire", "remove", "reclaim", "renew", "head",
)  # fmt: skip


async def _ask(what: str, request: Awaitable[_T]) -> _T:
    """Await a Redis request; its failure is a :class:`StorageError`."""
    try:
        return await request
    except (RedisError, OSError) as exc:
        raise StorageError(f"{what}: Redis is unavailable ({exc})") from exc


class _Keys:
    """The names of every key, each group under the hash tag of its limit or queue."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.index = f"{prefix}:calls"  # call id -> its queue
        self.queues = f"{prefix}:queues"

    def slot(self, key: str) -> tuple[str, str, str]:
        """sent, held, pause"""
        base = f"{self.prefix}:{{{key}}}"
        return f"{base}:sent", f"{base}:held", f"{base}:pause"

    def queue(self, queue: str) -> tuple[str, str, str, str, str]:
        """seq, waiting, claimed, data, meta"""
        base = f"{self.prefix}:{{{queue}}}"
        return f"{base}:seq", f"{base}:q", f"{base}:claimed", f"{base}:data", f"{base}:meta"

    def connections(self, key: str) -> str:
        return f"{self.prefix}:{{{key}}}:conns"


class _Request(NamedTuple):
    """A script to run in the next pipeline, and who waits for its answer."""

    script: str
    keys: list[str]
    args: list[Any]
    future: asyncio.Future[Any]
    lost: Callable[[Any], None] | None


class RedisSlotStore:
    """Exact sliding windows in Redis, shared by every instance (see the module doc)."""

    def __init__(
        self,
        client: aioredis.Redis,
        scripts: dict[str, AsyncScript],
        keys: _Keys,
        *,
        instance: str,
        server_time: bool = True,
    ) -> None:
        self._client = client
        self._scripts = scripts
        self._keys = keys
        self._instance = instance
        self._server_time = server_time
        self._tickets = itertools.count(1)
        self._periods: dict[str, int] = {}  # the period last seen of each key (for in_use)
        self._granted: dict[int, tuple[int, float]] = {}  # ticket -> Redis ms, monotonic s
        self._pending: list[tuple[Grant, str]] = []  # stamps ('' or ms) and releases ('-')
        self._pauses: list[tuple[Sequence[Limit], int, int]] = []
        self._requests: list[_Request] = []
        self._senders: set[asyncio.Task[None]] = set()
        self._closing = False

    def _now(self, now_ms: int) -> str:
        return "" if self._server_time else str(now_ms)

    async def acquire(
        self, limits: Sequence[Limit], now_ms: int, *, behind: str | None = None
    ) -> Grant | Wait:
        ticket = next(self._tickets)
        keys: list[str] = []
        args: list[str | int] = [self._now(now_ms), SLOT_LEASE_MS, self._member(ticket),
                                 len(limits), "1" if behind else "0"]  # fmt: skip
        for limit in limits:
            keys += self._keys.slot(limit.key)
            args += (limit.count, limit.period_ms)
            self._periods[limit.key] = limit.period_ms
        if behind is not None:
            keys.append(self._keys.queue(behind)[1])

        def lost(answer: Any) -> None:  # its caller gave up: a grant is given back
            if answer[0] == 0:
                self.release(Grant(limits, ticket))

        (wait, answer), asked = await self._run("taking a slot", "acquire", keys, args, lost)
        if wait == 0:
            if self._server_time:
                self._granted[ticket] = (int(answer), asked)
            return Grant(limits, ticket)
        return Wait(int(wait), paused=bool(answer))

    def _member(self, ticket: int) -> str:
        return f"{self._instance}:{ticket}"

    async def recorded(self, grant: Grant) -> None:
        return None  # the reservation was written by the script that granted it

    def sent(self, grant: Grant, sent_ms: int) -> None:
        if not self._server_time:
            self._settle(grant, str(sent_ms))
            return
        # Redis's time of the grant, plus the time since it was asked for on this host: no
        # earlier than when the request left, on Redis's clock (the grant came after the
        # asking), and later only by the request's trip to Redis.
        granted = self._granted.pop(grant.ticket, None)
        if granted is None:
            self._settle(grant, "")  # the time the stamp arrives: later, hence safe
            return
        at, then = granted
        self._settle(grant, str(at + int((time.monotonic() - then) * 1000)))

    def release(self, grant: Grant) -> None:
        self._granted.pop(grant.ticket, None)
        self._settle(grant, "-")

    def pause(self, limits: Sequence[Limit], ms: int, now_ms: int) -> None:
        self._pauses.append((limits, ms, now_ms))
        self._kick()

    async def in_use(self, key: str, now_ms: int) -> int:
        sent, held, _ = self._keys.slot(key)
        args = [self._now(now_ms), self._periods.get(key, 0)]
        count, _ = await self._run("counting slots", "in_use", [sent, held], args)
        return int(count)

    async def _run(
        self,
        what: str,
        script: str,
        keys: list[str],
        args: list[Any],
        lost: Callable[[Any], None] | None = None,
    ) -> Any:
        """Run ``script`` in the next pipeline: the requests made while one is in flight
        go together, after the stamps, releases and pauses gathered before them. Returns
        its answer, and when (``time.monotonic()``) the pipeline was sent; the answer to a
        caller that gave up meanwhile goes to ``lost``."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._requests.append(_Request(script, keys, args, future, lost))
        self._kick()
        try:
            return await future
        except StorageError as exc:
            raise StorageError(f"{what}: {exc}") from exc

    def _settle(self, grant: Grant, at: str) -> None:
        self._pending.append((grant, at))
        self._kick()

    def _kick(self) -> None:
        if len(self._senders) < SENDERS:
            sender = asyncio.create_task(self._send_loop(), name="redis slot requests")
            self._senders.add(sender)
            sender.add_done_callback(self._senders.discard)

    async def _send_loop(self) -> None:
        """Send everything gathered, one pipeline at a time (so that what was asked first
        is done first), until nothing is left. While Redis is unavailable, requests fail
        at once and stamps are tried again every :data:`RETRY_WRITES_AFTER` seconds (a
        stamp never written only holds its slot until its lease ends)."""
        while self._requests or self._pending or self._pauses:
            requests, self._requests = self._requests, []
            writes = self._take()
            pipe = await self._pipeline(writes)
            for request in requests:
                await self._scripts[request.script](keys=request.keys, args=request.args,
                                                    client=pipe)  # fmt: skip
            try:
                asked = time.monotonic()
                answers = await pipe.execute(raise_on_error=False)
            except (RedisError, OSError) as exc:
                error = StorageError(f"Redis is unavailable ({exc})")
                for request in requests:
                    if not request.future.done():
                        request.future.set_exception(error)
                if self._closing:
                    log.warning("slot stamps not written at close: %s", exc)
                    return
                self._put_back(writes)
                if not requests:  # stamps alone: wait before trying again
                    log.warning("slot stamps not written yet: %s", exc)
                    await asyncio.sleep(RETRY_WRITES_AFTER)
                continue
            for request, answer in zip(requests, answers[len(answers) - len(requests) :],
                                       strict=True):  # fmt: skip
                if isinstance(answer, Exception):
                    if not request.future.done():
                        request.future.set_exception(StorageError(f"Redis answered {answer}"))
                elif not request.future.done():
                    request.future.set_result((answer, asked))
                elif request.lost is not None:
                    request.lost(answer)

    def _take(self) -> _Writes:
        writes = (self._pending, self._pauses)
        self._pending, self._pauses = [], []
        return writes

    def _put_back(self, writes: _Writes) -> None:
        """Keep writes that failed for the next try; past :data:`MAX_UNWRITTEN`, the
        oldest are dropped (their leases end them)."""
        pending, pauses = writes
        self._pending[:0] = pending[-MAX_UNWRITTEN:]
        self._pauses[:0] = pauses[-MAX_UNWRITTEN:]
        del self._pending[:-MAX_UNWRITTEN]

    async def _pipeline(self, writes: _Writes) -> Pipeline:
        """A pipeline of ``writes``: stamps and releases grouped by limit, then pauses."""
        pending, pauses = writes
        pipe: Pipeline = self._client.pipeline(transaction=False)
        by_key: dict[str, tuple[int, list[str]]] = {}
        for grant, at in pending:
            member = self._member(grant.ticket)
            for limit in grant.limits:
                entry = by_key.setdefault(limit.key, (limit.period_ms, []))
                entry[1].extend((member, at))
        for key, (period, entries) in by_key.items():
            sent, held, _ = self._keys.slot(key)
            await self._scripts["settle"](keys=[sent, held], args=["", period, *entries],
                                          client=pipe)  # fmt: skip
        for limits, ms, now_ms in pauses:
            for limit in limits:  # one key each: they may live on different shards
                pause_key = self._keys.slot(limit.key)[2]
                await self._scripts["pause"](
                    keys=[pause_key], args=[self._now(now_ms), ms], client=pipe
                )
        return pipe

    async def aclose(self) -> None:
        """Write what is gathered, then stop (not by cancelling: redis-py may swallow a
        cancellation in the middle of a request)."""
        self._closing = True
        await asyncio.gather(*self._senders)


def _encode(item: QueuedCall) -> str:
    call = item.call
    return json.dumps({
        "org": call.org, "sandbox": call.sandbox, "journey": call.journey,
        "service": str(call.service), "method": call.method, "url": call.url,
        "headers": dict(call.headers), "timeout": call.timeout_seconds,
        "body": base64.b64encode(call.body).decode(),
    }, separators=(",", ":"))  # fmt: skip


def _decode(queue: str, call_id: str, text: str | None, meta: str | None) -> QueuedCall:
    try:
        if text is None or not meta:
            raise ValueError("its data is missing")
        _, enqueued_at, rate = meta.split(" ")
        doc = json.loads(text)
        call = Call(
            org=doc["org"], sandbox=doc["sandbox"], journey=doc["journey"],
            service=Service(doc["service"]), method=doc["method"], url=doc["url"],
            headers=doc["headers"], body=base64.b64decode(doc["body"]),
            timeout_seconds=doc["timeout"],
        )  # fmt: skip
    except (ValueError, KeyError, TypeError) as exc:
        raise StorageError(f"queued call {call_id!r} cannot be read back: {exc}") from exc
    return QueuedCall(call_id=call_id, queue=queue, call=call, enqueued_at=float(enqueued_at),
                      rate=int(rate))  # fmt: skip


class RedisQueueStore:
    """One FIFO per queue in Redis for every instance (see the module doc). ``depth`` is
    the last depth this instance saw; the dispatchers of every instance look for work in
    :meth:`queues` regularly, so calls pushed elsewhere are never stranded."""

    shared = True

    def __init__(
        self, client: aioredis.Redis, scripts: dict[str, AsyncScript], keys: _Keys
    ) -> None:
        self._client = client
        self._scripts = scripts
        self._keys = keys
        self._depth: dict[str, int] = {}
        self._mine: dict[str, str] = {}  # call id -> queue, of the calls claimed here
        self._renewer: asyncio.Task[None] | None = None
        self._pushes: list[tuple[QueuedCall, asyncio.Future[None]]] = []
        self._pusher: asyncio.Task[None] | None = None
        self._pushing: dict[str, asyncio.Future[None]] = {}  # by call id, until written
        self._closed = asyncio.Event()

    async def push(self, item: QueuedCall) -> None:
        """Pushes made while others are being written go together in one pipeline, in
        the order they were made."""
        queue = item.queue
        self._depth[queue] = self._depth.get(queue, 0) + 1  # counted from the call on
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pushes.append((item, done))
        self._pushing[item.call_id] = done
        done.add_done_callback(lambda _: self._pushing.pop(item.call_id, None))
        if self._pusher is None or self._pusher.done():
            self._pusher = asyncio.create_task(self._push_loop(), name="redis pushes")
        try:
            await asyncio.shield(done)
        except StorageError:
            self._depth[queue] -= 1
            raise

    async def _push_loop(self) -> None:
        while self._pushes:
            batch, self._pushes = self._pushes, []
            pipe: Pipeline = self._client.pipeline(transaction=False)
            for item, _ in batch:
                seq, waiting, _, data, meta = self._keys.queue(item.queue)
                pipe.hset(self._keys.index, item.call_id, item.queue)
                pipe.sadd(self._keys.queues, item.queue)
                await self._scripts["push"](
                    keys=[seq, waiting, data, meta],
                    args=[item.call_id, _encode(item), repr(item.enqueued_at), item.rate],
                    client=pipe,
                )
            try:
                answers = await _ask("queueing calls", pipe.execute())
            except StorageError as exc:
                for _, done in batch:
                    done.set_exception(exc)
                continue
            for (item, done), depth in zip(batch, answers[2::3], strict=True):
                self._depth[item.queue] = int(depth)
                done.set_result(None)

    async def claim(self, queue: str, count: int) -> list[QueuedCall]:
        _, waiting, claimed, data, meta = self._keys.queue(queue)
        request = self._scripts["claim"](
            keys=[waiting, claimed, data, meta], args=[count, CLAIM_LEASE_MS], client=self._client
        )
        found = await _ask("claiming calls", request)
        self._depth[queue] = int(found[0])
        items = [_decode(queue, *found[i : i + 3]) for i in range(1, len(found), 3)]
        for item in items:
            self._mine[item.call_id] = queue
        if items and (self._renewer is None or self._renewer.done()):
            self._renewer = asyncio.create_task(self._renew(), name="redis claim leases")
        return items

    async def expire(self, queue: str, cutoff: float) -> tuple[list[QueuedCall], float | None]:
        _, waiting, _, data, meta = self._keys.queue(queue)
        request = self._scripts["expire"](
            keys=[waiting, data, meta], args=[repr(cutoff)], client=self._client
        )
        found = await _ask("expiring calls", request)
        self._depth[queue] = int(found[0])
        expired = [found[i] for i in range(2, len(found), 3)]
        if expired:
            await _ask("expiring calls", self._client.hdel(self._keys.index, *expired))
        items = [_decode(queue, *found[i : i + 3]) for i in range(2, len(found), 3)]
        return items, float(found[1]) if found[1] else None

    async def remove(self, call_id: str) -> None:
        if (pushing := self._pushing.get(call_id)) is not None:  # its push goes first
            await asyncio.gather(pushing, return_exceptions=True)
        queue = self._mine.pop(call_id, None) or await self._where(call_id)
        if queue is None:
            return
        _, waiting, claimed, data, meta = self._keys.queue(queue)
        request = self._scripts["remove"](
            keys=[waiting, claimed, data, meta], args=[call_id], client=self._client
        )
        self._depth[queue] = int(await _ask("removing a call", request))
        await _ask("removing a call", self._client.hdel(self._keys.index, call_id))

    async def unclaim(self, call_id: str) -> None:
        queue = self._mine.pop(call_id, None)
        if queue is not None:
            _, waiting, claimed, _, meta = self._keys.queue(queue)
            request = self._scripts["reclaim"](
                keys=[waiting, claimed, meta], args=[call_id], client=self._client
            )
            self._depth[queue] = int(await _ask("putting a call back", request))

    async def reclaim(self) -> None:
        """Put back the calls claimed here, and every call whose lease ended (its
        instance died)."""
        mine: dict[str, list[str]] = defaultdict(list)
        for call_id, queue in self._mine.items():
            mine[queue].append(call_id)
        self._mine.clear()
        for queue in await self._names():
            _, waiting, claimed, _, meta = self._keys.queue(queue)
            request = self._scripts["reclaim"](
                keys=[waiting, claimed, meta], args=mine.get(queue, []), client=self._client
            )
            self._depth[queue] = int(await _ask("reclaiming calls", request))

    def depth(self, queue: str) -> int:
        return self._depth.get(queue, 0)

    async def queues(self) -> list[QueueDepth]:
        names = await self._names()
        pipe: Pipeline = self._client.pipeline(transaction=False)
        for queue in names:
            _, waiting, _, _, meta = self._keys.queue(queue)
            await self._scripts["head"](keys=[waiting, meta], client=pipe)
        found = []
        for queue, (depth, head) in zip(names, await _ask("reading queues", pipe.execute()),
                                        strict=True):  # fmt: skip
            self._depth[queue] = int(depth)
            if depth and head:
                _, oldest, rate = head.split(" ")
                found.append(QueueDepth(queue=queue, depth=int(depth), oldest=float(oldest),
                                        rate=int(rate)))  # fmt: skip
        return found

    async def find(self, call_id: str) -> Stored | None:
        queue = await self._where(call_id)
        if queue is None:
            return None
        _, waiting, claimed, _, _ = self._keys.queue(queue)
        pipe: Pipeline = self._client.pipeline(transaction=False)
        pipe.zscore(waiting, call_id)
        pipe.zscore(claimed, call_id)
        is_waiting, is_claimed = await _ask("finding a call", pipe.execute())
        if is_waiting is not None:
            return "queued"
        return "claimed" if is_claimed is not None else None

    async def _where(self, call_id: str) -> str | None:
        """The queue of a stored call, from the index."""
        found = await _ask("finding a call", self._client.hget(self._keys.index, call_id))
        return None if found is None else str(found)

    async def _names(self) -> list[str]:
        """Every queue that ever held a call."""
        found = await _ask("listing queues", self._client.smembers(self._keys.queues))
        return sorted(str(name) for name in found)

    async def _renew(self) -> None:
        """Keep the leases of the calls this instance runs, while it runs them."""
        while self._mine:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closed.wait(), CLAIM_LEASE_MS / 3000)
                return
            mine: dict[str, list[str]] = defaultdict(list)
            for call_id, queue in list(self._mine.items()):
                mine[queue].append(call_id)
            try:
                for queue, ids in mine.items():
                    claimed = self._keys.queue(queue)[2]
                    await self._scripts["renew"](
                        keys=[claimed], args=[CLAIM_LEASE_MS, *ids], client=self._client
                    )
            except (RedisError, OSError) as exc:
                log.warning("claim leases not renewed: %s", exc)

    async def aclose(self) -> None:
        if self._pusher is not None:
            await asyncio.gather(self._pusher, return_exceptions=True)
        self._closed.set()  # not a cancellation: redis-py may swallow one mid-request
        if self._renewer is not None:
            await asyncio.gather(self._renewer, return_exceptions=True)


class RedisConnections:
    """Connection limits shared by every instance: a semaphore of leased holders."""

    def __init__(
        self, client: aioredis.Redis, script: AsyncScript, keys: _Keys, *, instance: str
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
        while not await _ask(
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
    ) -> None:
        path = files("sluicegate.backends") / "lua"
        scripts = {name: client.register_script((path / f"{name}.lua").read_text())
                   for name in _SCRIPTS}  # fmt: skip
        keys = _Keys(prefix)
        instance = secrets.token_hex(6)
        self.client = client
        self.slots = RedisSlotStore(client, scripts, keys, instance=instance,
                                    server_time=server_time)  # fmt: skip
        self.queue = RedisQueueStore(client, scripts, keys)
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
            await _ask(f"connecting to {url}", client.ping())
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

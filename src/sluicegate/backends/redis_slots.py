"""Exact sliding windows in Redis, shared by every instance: the slot store of
:mod:`sluicegate.backends.redis` (see its docstring for the choices)."""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from redis import asyncio as aioredis
from redis.asyncio.client import Pipeline
from redis.commands.core import AsyncScript
from redis.exceptions import RedisError

from sluicegate.backends.redis_keys import Keys
from sluicegate.errors import StorageError
from sluicegate.storage import Grant, Limit, Wait

#: How long a reservation may go unstamped before it counts as sent: longer than any
#: call's budget (30 s), within which every request is sent or given up.
SLOT_LEASE_MS = 35_000
#: Seconds between two tries to write stamps while Redis is unavailable.
RETRY_WRITES_AFTER = 0.5
#: Stamps and releases kept for a retry while Redis is unavailable, at most.
MAX_UNWRITTEN = 100_000
#: Seconds a bound on the offset of Redis's clock is kept before a new one replaces it.
OFFSET_FOR = 5.0
#: Pipelines of slot requests in flight at once, at most.
SENDERS = 2
log = logging.getLogger(__name__)
_Writes = tuple[list[tuple[Grant, str]], list[tuple[Sequence[Limit], int, int]]]


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
        keys: Keys,
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
        # Redis's clock minus this host's monotonic one (ms), at most: see _clock_from.
        self._offset: float | None = None
        self._offset_since = 0.0
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
            keys += (self._keys.queue(behind)[1], self._keys.paused(behind))

        def lost(answer: Any) -> None:  # its caller gave up: a grant is given back
            if answer[0] == 0:
                self.release(Grant(limits, ticket))

        (wait, answer), asked = await self._run("taking a slot", "acquire", keys, args, lost)
        if wait == 0:
            if self._server_time:
                self._clock_from(int(answer), asked)
            return Grant(limits, ticket)
        return Wait(int(wait), paused=bool(answer))

    def _member(self, ticket: int) -> str:
        return f"{self._instance}:{ticket}"

    async def recorded(self, grant: Grant) -> None:
        return None  # the reservation was written by the script that granted it

    def _clock_from(self, redis_ms: int, asked: float) -> None:
        """Learn Redis's clock from a grant made at ``redis_ms``, asked for at ``asked``
        (monotonic). Redis ran the script after it was asked for, so ``redis_ms - asked``
        is at least the true offset; the least of those seen lately (the fastest trip) is
        the tightest such bound. It is renewed every :data:`OFFSET_FOR` seconds, so that a
        clock adjusted meanwhile is followed."""
        now = time.monotonic()
        seen = redis_ms - asked * 1000
        if self._offset is None or seen < self._offset or now - self._offset_since > OFFSET_FOR:
            self._offset, self._offset_since = seen, now

    def sent(self, grant: Grant, sent_ms: int) -> None:
        if not self._server_time:
            self._settle(grant, str(sent_ms))
        elif self._offset is None:
            self._settle(grant, "")  # the time the stamp reaches Redis: later, hence safe
        else:  # when it left, on Redis's clock: never earlier, later by a fast trip at most
            self._settle(grant, str(int(time.monotonic() * 1000 + self._offset) + 1))

    def release(self, grant: Grant) -> None:
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

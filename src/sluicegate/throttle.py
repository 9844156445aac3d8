"""Throttling queues: calls over the rate wait, in arrival order, for the next free slot.

One :class:`ThrottleQueue` per throttling config, drained by one task at the config's
``maxThroughput`` (the exact sliding window over 1000 ms of the slot store). Retries of
calls already running are served ahead of first attempts. A first attempt still waiting
``max_age`` after it was queued (6 hours) leaves with ``expired``. The queue keeps its
last rate, so calls queued before an undeploy drain at the last deployed rate.

Durability is the gate's business (it journals a call before queueing it); this module
only orders waiters and hands out slots.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass

from sluicegate.clock import Clock
from sluicegate.storage import Limit, SlotStore

PERIOD_MS = 1_000
#: Grants handed out in a row before the drain task lets other tasks run.
BURST = 64


@dataclass(slots=True)
class _Waiter:
    enqueued_at: float
    future: asyncio.Future[bool]


class ThrottleQueue:
    """The FIFO of one throttling config."""

    def __init__(self, *, key: str, rate: int, clock: Clock, slots: SlotStore, max_age: float):
        self.key = key
        self.rate = rate
        self._clock = clock
        self._slots = slots
        self._max_age = max_age
        self._first: deque[_Waiter] = deque()
        self._retries: deque[_Waiter] = deque()
        self._drain: asyncio.Task[None] | None = None

    @property
    def limit(self) -> Limit:
        return Limit(key=self.key, count=self.rate, period_ms=PERIOD_MS)

    def __len__(self) -> int:
        return len(self._first) + len(self._retries)

    def oldest(self) -> float | None:
        """Enqueue time of the oldest first attempt still waiting."""
        return self._first[0].enqueued_at if self._first else None

    async def try_now(self) -> bool:
        """Take a slot at once if nobody is waiting and one is free (no queueing)."""
        if self._first or self._retries:
            return False
        return await self._slots.acquire((self.limit,), _ms(self._clock.now())) == 0

    def enqueue(self, enqueued_at: float) -> asyncio.Future[bool]:
        """Queue a first attempt; the future turns True with a slot, False when expired."""
        return self._push(self._first, enqueued_at)

    async def wait_retry(self) -> None:
        """Wait, ahead of first attempts, for a slot for a retry. Cancel to give up."""
        future = self._push(self._retries, self._clock.now())
        await future

    def _push(self, line: deque[_Waiter], enqueued_at: float) -> asyncio.Future[bool]:
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        line.append(_Waiter(enqueued_at, future))
        if self._drain is None or self._drain.done():
            self._drain = asyncio.create_task(self._run(), name=f"drain {self.key}")
        return future

    def _next(self) -> deque[_Waiter] | None:
        """The line to serve next, after dropping waiters that gave up."""
        for line in (self._retries, self._first):
            while line and line[0].future.done():
                line.popleft()
            if line:
                return line
        return None

    def _expire(self, now: float) -> float | None:
        """End first attempts older than the maximum age; return when the next one expires."""
        first = self._first
        while first:
            head = first[0]
            if head.future.done():
                first.popleft()
            elif now - head.enqueued_at >= self._max_age:
                first.popleft().future.set_result(False)
            else:
                return head.enqueued_at + self._max_age
        return None

    async def _run(self) -> None:
        granted = 0
        while True:
            now = self._clock.now()
            expires = self._expire(now)
            line = self._next()
            if line is None:
                return
            wait_ms = await self._slots.acquire((self.limit,), _ms(now))
            if wait_ms == 0:
                line.popleft().future.set_result(True)
                granted += 1
                if granted % BURST == 0:
                    await asyncio.sleep(0)
                continue
            wait = wait_ms / 1000
            if expires is not None:
                wait = min(wait, max(0.0, expires - now))
            await self._clock.sleep(wait)

    async def aclose(self) -> None:
        """Stop draining; waiters are cancelled (their calls stay journaled)."""
        if self._drain is not None:
            self._drain.cancel()
            await asyncio.gather(self._drain, return_exceptions=True)
        for line in (self._first, self._retries):
            while line:
                line.popleft().future.cancel()


def _ms(seconds: float) -> int:
    return int(seconds * 1000)

"""Throttling queues: calls over the rate wait, in arrival order, for the next free slot.

One :class:`ThrottleQueue` per throttling config, drained by one task at the config's
``maxThroughput`` (the exact sliding window over 1000 ms of the slot store). Retries of
calls already running are served ahead of first attempts. A first attempt still waiting
``max_age`` after it was queued (6 hours) leaves with ``expired``. The queue keeps its
last rate, so calls queued before an undeploy drain at the last deployed rate.

:class:`Throttling` holds a gate's queues and makes them durable: a call is journaled
before it waits, forgotten when it ends, and queued again in order after a restart.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass

from sluicegate.call import Call
from sluicegate.clock import Clock
from sluicegate.matching import ThrottleTarget, throttle_key
from sluicegate.records import ConfigKind, ConfigRecord
from sluicegate.rules import ThrottlingRule
from sluicegate.storage import Limit, QueuedCall, QueueStore, SlotStore

PERIOD_MS = 1_000
#: Grants handed out in a row before the drain task lets other tasks run.
BURST = 64


@dataclass(frozen=True, slots=True, kw_only=True)
class QueueState:
    """A throttling queue as reports show it."""

    key: str
    rate: int
    depth: int
    oldest_age: float | None


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

    def state(self, now: float) -> QueueState:
        """Depth and oldest age (of first attempts still waiting) at ``now``."""
        oldest = now - self._first[0].enqueued_at if self._first else None
        return QueueState(key=self.key, rate=self.rate, depth=len(self), oldest_age=oldest)

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


@dataclass(frozen=True, slots=True)
class Admission:
    """A first attempt waiting in a queue: when it arrived, and its turn (True) or its
    expiry (False)."""

    enqueued_at: float
    granted: asyncio.Future[bool]


class Throttling:
    """Every throttling queue of a gate, and the journal that makes them durable."""

    def __init__(self, *, clock: Clock, slots: SlotStore, journal: QueueStore, max_age: float):
        self._clock = clock
        self._slots = slots
        self._journal = journal
        self._max_age = max_age
        self._queues: dict[str, ThrottleQueue] = {}

    def queue(self, key: str, rate: int) -> ThrottleQueue:
        """The queue of ``key``, now draining at ``rate``."""
        queue = self._queues.get(key)
        if queue is None:
            queue = self._queues[key] = ThrottleQueue(
                key=key, rate=rate, clock=self._clock, slots=self._slots, max_age=self._max_age
            )
        queue.rate = rate
        return queue

    async def admit(
        self, call_id: str, call: Call, target: ThrottleTarget
    ) -> tuple[ThrottleQueue, Admission | None]:
        """A slot now if nobody waits and one is free (no admission); otherwise journal
        the call durably and queue it."""
        queue = self.queue(target.key, target.rate)
        if await queue.try_now():
            return queue, None
        now = self._clock.now()
        item = QueuedCall(call_id=call_id, queue=queue.key, call=call, enqueued_at=now,
                          rate=queue.rate)  # fmt: skip
        await self._journal.push(item)
        return queue, Admission(now, queue.enqueue(now))

    async def forget(self, call_id: str) -> None:
        """Drop an ended call from the journal."""
        await self._journal.remove(call_id)

    async def recover(self) -> list[tuple[QueuedCall, ThrottleQueue, Admission]]:
        """Queue again, in their original order, the calls journaled before a restart,
        each at the rate it was queued at (the last deployed rate)."""
        recovered = []
        for item in await self._journal.pending():
            queue = self.queue(item.queue, item.rate)
            admission = Admission(item.enqueued_at, queue.enqueue(item.enqueued_at))
            recovered.append((item, queue, admission))
        return recovered

    def rule_changed(self, record: ConfigRecord | None) -> None:
        """A deployed throttling edit takes effect at once on its queue."""
        if record is None or record.kind is not ConfigKind.THROTTLING:
            return
        queue = self._queues.get(throttle_key(record.org, record.uid))
        if isinstance(record.deployed_rule, ThrottlingRule) and queue is not None:
            queue.rate = record.deployed_rule.max_throughput

    def states(self) -> list[QueueState]:
        now = self._clock.now()
        return [queue.state(now) for queue in self._queues.values()]

    async def aclose(self) -> None:
        for queue in self._queues.values():
            await queue.aclose()


def _ms(seconds: float) -> int:
    return int(seconds * 1000)

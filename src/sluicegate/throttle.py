"""Throttling queues: calls over the rate wait in the store, in arrival order, for a slot.

A queue lives in the :class:`~sluicegate.storage.QueueStore`, not in memory: a waiting
call is a stored row and holds no task, future or frame here, so a million of them cost
the store, and a restart resumes the queue without reading it. One dispatcher per queue
with calls in it takes a slot of the config's window (``maxThroughput`` per 1000 ms,
:func:`~sluicegate.matching.throttle_limit`) whenever one is free, claims the head of the
queue and hands both to the gate, which runs the call.

Calls already running that need a slot for a retry or a redirect hop wait in memory
(they are in memory anyway), and are served ahead of the queue. A call still waiting
``max_age`` (6 hours) after it was queued is removed from the store and leaves with
``expired``. A queue drains at its config's current rate, and keeps its last rate once
the config is undeployed or gone (the rate stored with its head call, after a restart).
A paused queue (:mod:`sluicegate.queues`) dispatches nothing but retries; its dispatcher
still expires its calls.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from sluicegate.call import Call
from sluicegate.clock import Clock
from sluicegate.matching import ThrottleTarget, throttle_limit, throttle_owner
from sluicegate.storage import Grant, Limit, QueuedCall, QueueStore, SlotStore, Wait

#: Slots taken, and calls claimed, in one round of a dispatcher.
BATCH = 64
#: Seconds before a dispatcher that failed tries again, doubled after each failure in a
#: row, up to MAX_RETRY_AFTER.
RETRY_AFTER = 1.0
MAX_RETRY_AFTER = 30.0
#: Seconds between two looks at a shared store's queues.
SCAN_EVERY = 1.0
#: Seconds a dispatcher on a shared store waits for a slot before it asks again.
SHARED_LOOK_AGAIN = 0.05
log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class QueueState:
    """A throttling queue as reports show it: the org and config it belongs to, its drain
    rate (0: unknown), calls waiting, the age of the oldest one, and if it is paused."""

    key: str
    org: str
    uid: str
    rate: int
    depth: int
    oldest_age: float | None
    paused: bool = False


Dispatched = Callable[[QueuedCall, Grant], None]
Expired = Callable[[QueuedCall], None]


class Throttling:
    """Every throttling queue of a gate.

    ``dispatched(item, grant)`` runs a call taken from a queue with its slot;
    ``expired(item)`` ends one that waited too long. Both must not raise.
    """

    def __init__(
        self,
        *,
        clock: Clock,
        slots: SlotStore,
        store: QueueStore,
        max_age: float,
        guard_ms: int,
        dispatched: Dispatched,
        expired: Expired,
    ) -> None:
        self._clock = clock
        self._slots = slots
        self._store = store
        self._max_age = max_age
        self._guard_ms = guard_ms
        self._dispatched = dispatched
        self._expired = expired
        # The current (or last) rate of each queue: set by the rules (set_rate), and by a
        # call only for a queue never seen (a call may carry a rate older than an edit).
        self._rates: dict[str, int] = {}
        self._of_org: dict[str, set[str]] = {}  # org -> its queues among those of _rates
        self._dispatchers: dict[str, _Dispatcher] = {}
        self._deployed: Callable[[str], int | None] = lambda key: None
        self._scanner: asyncio.Task[None] | None = None
        self._closed = False
        self.failures = 0  # dispatches and scans that failed (a metrics series)

    def limit(self, key: str) -> Limit:
        return throttle_limit(key, self._rates[key], self._guard_ms)

    def queued(self, org: str) -> int:
        """Calls of ``org`` waiting in the queues this process knows (the depth it last
        saw of a shared one)."""
        return sum(self._store.depth(key) for key in self._of_org.get(org, ()))

    def _rate(self, key: str, rate: int, *, first: bool = False) -> None:
        """Set the rate of queue ``key`` (``first``: only if it has none yet)."""
        if key not in self._rates:
            self._of_org.setdefault(throttle_owner(key)[0], set()).add(key)
        elif first:
            return
        self._rates[key] = rate

    def set_rate(self, key: str, rate: int) -> None:
        """A deployed throttling config's rate: it applies at once, to waiting calls too."""
        self._rate(key, rate)
        if (dispatcher := self._dispatchers.get(key)) is not None:
            dispatcher.poke()

    async def admit(self, call_id: str, call: Call, target: ThrottleTarget) -> Grant | None:
        """A slot at once when nobody waits and one is free, recorded; otherwise store the
        call (durably, when this returns) for its queue's dispatcher and return ``None``.
        :class:`~sluicegate.errors.StorageError` when neither can be recorded: the call is
        refused, never let in to be dropped. A caller cancelled before the call is stored
        takes it out of the queue again."""
        key = target.key
        self._rate(key, target.rate, first=True)
        dispatcher = self._dispatchers.get(key)
        if dispatcher is None or not dispatcher.waiting():  # the store checks the queue
            found = await self._slots.acquire((self.limit(key),), self._now_ms(), behind=key)
            if isinstance(found, Grant):
                try:  # a store that cannot record it refuses the call rather than drop it
                    await self._slots.recorded(found)
                except BaseException:
                    self._slots.release(found)
                    raise
                return found
        now = self._clock.now()
        item = QueuedCall(call_id=call_id, queue=key, call=call, enqueued_at=now,
                          rate=target.rate)  # fmt: skip
        try:
            await self._store.push(item)
        except asyncio.CancelledError:
            await asyncio.shield(self._store.remove(call_id))  # its row is being written
            raise
        if not self._closed:  # else it waits, stored, for the next start
            self._dispatcher(key).pushed()
        return None

    async def wait_retry(self, target: ThrottleTarget) -> Grant:
        """Wait, ahead of the queue's first attempts, for a slot. Cancel to give up; once
        the throttling is closed, this is cancelled at once."""
        if self._closed:
            raise asyncio.CancelledError
        self._rate(target.key, target.rate, first=True)
        dispatcher = self._dispatch(target.key)
        waiter: asyncio.Future[Grant] = asyncio.get_running_loop().create_future()
        dispatcher.retries.append(waiter)
        try:
            return await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():  # granted as it was cancelled
                self._slots.release(waiter.result())
            raise

    def freed(self, grant: Grant) -> None:
        """A throttling slot was given back unused: its queue may go on at once."""
        dispatcher = self._dispatchers.get(grant.limits[0].key)
        if dispatcher is not None and not self._closed:
            dispatcher.poke()

    async def start(self, deployed_rate: Callable[[str], int | None]) -> None:
        """Start dispatching the queues the store holds (after a restart), each at its
        config's rate, or the rate stored with its head when the config is not deployed.
        A shared store is looked at again every :data:`SCAN_EVERY` seconds: calls pushed
        by other instances (one that died, say), and queues they resumed, are dispatched
        here too."""
        self._deployed = deployed_rate
        await self._resume()
        if self._store.shared:
            self._scanner = asyncio.create_task(self._scan(), name="queue scan")

    async def _resume(self) -> None:
        for queue in await self._store.queues():
            if not queue.depth:  # paused and empty: nothing to dispatch
                continue
            self._rate(queue.queue, self._deployed(queue.queue) or queue.rate)
            dispatcher = self._dispatchers.get(queue.queue)
            if dispatcher is None or not dispatcher.active():
                self._dispatch(queue.queue)

    async def _scan(self) -> None:
        while not self._closed:  # a Redis client may swallow the cancellation of a scan
            await self._clock.sleep(SCAN_EVERY)
            try:
                await self._resume()
            except Exception as exc:  # the store unavailable: look again later
                self.failures += 1
                log.warning("throttling queues not scanned: %s", exc)

    async def states(self) -> list[QueueState]:
        """Every queue with calls waiting, or paused."""
        now = self._clock.now()
        found = []
        for queue in await self._store.queues():
            org, uid = throttle_owner(queue.queue)
            age = None if queue.oldest is None else max(0.0, now - queue.oldest)
            found.append(QueueState(key=queue.queue, org=org, uid=uid,
                                    rate=self.rate(queue.queue) or queue.rate, depth=queue.depth,
                                    oldest_age=age, paused=queue.paused))  # fmt: skip
        return found

    def rate(self, key: str) -> int:
        """The current rate of queue ``key``, else its config's; 0 when neither is known."""
        return self._rates.get(key) or self._deployed(key) or 0

    def poke(self, key: str) -> None:
        """Queue ``key`` was paused or resumed: its dispatcher looks again at once (one
        of unknown rate, its config gone, is started when the queue is next seen)."""
        if key not in self._rates and (rate := self._deployed(key)):
            self._rate(key, rate)
        if key in self._rates and not self._closed:
            self._dispatch(key)

    def _dispatch(self, key: str) -> _Dispatcher:
        """Make sure the dispatcher of ``key`` looks at its queue again."""
        dispatcher = self._dispatcher(key)
        dispatcher.poke()
        return dispatcher

    def _dispatcher(self, key: str) -> _Dispatcher:
        dispatcher = self._dispatchers.get(key)
        if dispatcher is None:
            dispatcher = self._dispatchers[key] = _Dispatcher(key, self)
        return dispatcher

    def _now_ms(self) -> int:
        return int(self._clock.now() * 1000)

    async def aclose(self) -> None:
        """Stop dispatching; waiting calls stay stored, retry waiters are cancelled."""
        self._closed = True
        if self._scanner is not None:
            self._scanner.cancel()
            await asyncio.gather(self._scanner, return_exceptions=True)
        while self._dispatchers:  # a retry may still come in while one closes
            _, dispatcher = self._dispatchers.popitem()
            await dispatcher.aclose()


class _Dispatcher:
    """Feeds one queue's calls to the gate, one free slot at a time."""

    def __init__(self, key: str, throttling: Throttling) -> None:
        self.key = key
        self.retries: deque[asyncio.Future[Grant]] = deque()
        self._throttling = throttling
        self._task: asyncio.Task[None] | None = None
        self._poked = False
        self._wake = asyncio.Event()

    def poke(self) -> None:
        """Something changed (a retry waiting, a slot freed, the rate): look again at
        once, starting if stopped."""
        self._wake.set()
        self._start()

    def pushed(self) -> None:
        """A call was stored: drain, starting if stopped. In process, look again at once
        (cheap, and a window full of reservations learns sooner when they free); on a
        shared store, a dispatcher waiting for a slot goes on waiting (it asks again within
        SHARED_LOOK_AGAIN), rather than a round trip to the store at every push, and one
        of a paused queue stays stopped (the scan starts it, to expire calls or resumed)."""
        store = self._throttling._store
        if not store.shared:
            self._wake.set()
        elif store.paused(self.key):
            return
        self._start()

    def _start(self) -> None:
        self._poked = True
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name=f"dispatch {self.key}")

    def active(self) -> bool:
        """Whether it is draining its queue right now."""
        return self._task is not None and not self._task.done()

    def waiting(self) -> bool:
        """Whether retries wait for a slot (those that gave up are dropped here)."""
        if any(waiter.done() for waiter in self.retries):
            self.retries = deque(waiter for waiter in self.retries if not waiter.done())
        return bool(self.retries)

    async def _run(self) -> None:
        """Drain; a failure (the store unavailable, say) is logged and the drain tried
        again a little later: a dispatcher that died would leave its queue stuck."""
        streak = 0
        while True:
            try:
                return await self._drain()
            except Exception:
                self._throttling.failures += 1
                streak += 1
                delay = min(RETRY_AFTER * 2 ** (streak - 1), MAX_RETRY_AFTER)
                log.exception("throttling queue %s: dispatching failed; trying again in %g s",
                              self.key, delay)  # fmt: skip
                await self._throttling._clock.sleep(delay)

    async def _drain(self) -> None:
        t = self._throttling
        clock, slots, store = t._clock, t._slots, t._store
        expires: float | None = None  # when the head call expires (None: look now)
        while not t._closed:  # as for the scan
            self._poked = False
            self._wake.clear()
            now = clock.now()
            if expires is None or now >= expires:
                expired, head = await store.expire(self.key, now - t._max_age)
                for item in expired:
                    t._expired(item)
                expires = None if head is None else head + t._max_age
            self.waiting()  # drops the retries that gave up
            paused = store.paused(self.key)  # retries of running calls go on
            wanted = len(self.retries) + (0 if paused else min(store.depth(self.key), BATCH))
            grants, wait = await self._slots(wanted)
            try:
                handed = await self._hand_over(grants)
            except BaseException:
                for grant in grants:  # not handed over: nothing left with them
                    slots.release(grant)
                raise
            if handed is not None:
                if handed is False and not (self.retries or self._poked or store.paused(self.key)):
                    return  # the depth counted calls not written yet: their push pokes
                await asyncio.sleep(0)  # let the dispatched calls and the others run
            elif wait is not None:
                pause = wait.ms / 1000
                if store.shared:  # another instance's slot given back is not announced
                    pause = min(pause, SHARED_LOOK_AGAIN)
                if expires is not None:
                    pause = min(pause, max(0.0, expires - now))
                await self._nap(pause)
            elif not wanted and not self._poked:
                if not paused or expires is None or store.shared:
                    return  # a shared store's paused queue is started again by the scan
                await self._nap(expires - clock.now())  # paused: until its head expires

    async def _slots(self, wanted: int) -> tuple[list[Grant], Wait | None]:
        """Up to ``wanted`` slots of the queue's window, and the wait for more if fewer.
        A shared store is asked for all at once (one round trip), others one by one."""
        t = self._throttling
        limit = (t.limit(self.key),)
        if t._store.shared:
            asked = [t._slots.acquire(limit, t._now_ms()) for _ in range(wanted)]
            found = await asyncio.gather(*asked, return_exceptions=True)
            grants = [grant for grant in found if isinstance(grant, Grant)]
            error = next((e for e in found if isinstance(e, BaseException)), None)
            if error is not None:
                for grant in grants:
                    t._slots.release(grant)
                raise error
            return grants, next((wait for wait in found if isinstance(wait, Wait)), None)
        grants = []
        while len(grants) < wanted:
            got = await t._slots.acquire(limit, t._now_ms())
            if isinstance(got, Wait):
                return grants, got
            grants.append(got)
        return grants, None

    async def _hand_over(self, grants: list[Grant]) -> bool | None:
        """Give ``grants`` to the retries waiting, then to the head of the queue. ``None``
        when there were none; False when the queue had no call to take those left. A grant
        leaves ``grants`` when it is handed over or given back."""
        if not grants:
            return None
        t = self._throttling
        for grant in grants:  # durable before its call starts: starts keep their order
            await t._slots.recorded(grant)
        while grants and self.retries:
            waiter = self.retries.popleft()
            if not waiter.done():
                waiter.set_result(grants.pop())
        if not grants:
            return True
        items = await t._store.claim(self.key, len(grants))
        for item in items:
            t._dispatched(item, grants.pop(0))
        while grants:
            t._slots.release(grants.pop())
        return bool(items)

    async def _nap(self, seconds: float) -> None:
        """Wait ``seconds``, or less when poked."""
        clock = self._throttling._clock
        if self._throttling._closed:
            return
        with contextlib.suppress(TimeoutError):
            async with clock.deadline(clock.now() + seconds):
                await self._wake.wait()

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        while self.retries:
            self.retries.popleft().cancel()

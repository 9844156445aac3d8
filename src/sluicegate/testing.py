"""Test doubles that ship with sluicegate: a clock you move by hand, a transport you script.

    clock = FakeClock()
    transport = MockTransport(lambda request: Response(status=200))
    async with Gate.open(None, clock=clock, transport=transport) as gate:
        task = asyncio.create_task(gate.call(...))
        await clock.advance(5.0)   # timers due in the next 5 s fire, in order

No test needs to sleep: every wait in sluicegate goes through the clock.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from sluicegate.transport import Request, Response, Sending


class _Timer:
    __slots__ = ("callback", "cancelled", "seq", "when")

    def __init__(self, when: float, seq: int, callback: Callable[[], None]) -> None:
        self.when = when
        self.seq = seq
        self.callback = callback
        self.cancelled = False

    def __lt__(self, other: _Timer) -> bool:
        return (self.when, self.seq) < (other.when, other.seq)


class FakeClock:
    """A clock that moves only when told to.

    :meth:`advance` walks through the due timers in time order, letting the tasks they
    wake run before the next one fires, so code observes the same sequence of instants it
    would under real time.
    """

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self._now = start
        self._timers: list[_Timer] = []
        self._seq = itertools.count()

    def now(self) -> float:
        return self._now

    def _schedule(self, when: float, callback: Callable[[], None]) -> _Timer:
        timer = _Timer(when, next(self._seq), callback)
        heapq.heappush(self._timers, timer)
        return timer

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def wake() -> None:
            if not future.done():
                future.set_result(None)

        timer = self._schedule(self._now + seconds, wake)
        try:
            await future
        finally:
            timer.cancelled = True

    def deadline(self, when: float) -> AbstractAsyncContextManager[object]:
        return self._deadline(when)

    @asynccontextmanager
    async def _deadline(self, when: float) -> AsyncIterator[None]:
        loop = asyncio.get_running_loop()
        # asyncio's Timeout does the cancelling and the TimeoutError; we only decide when.
        async with asyncio.timeout(None) as timeout:
            if when <= self._now:
                timeout.reschedule(loop.time())
                timer = None
            else:
                timer = self._schedule(when, lambda: timeout.reschedule(loop.time()))
            try:
                yield
            finally:
                if timer is not None:
                    timer.cancelled = True

    async def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds``, firing due timers in order."""
        target = self._now + seconds
        await settle()
        while self._timers and self._timers[0].when <= target:
            timer = heapq.heappop(self._timers)
            if timer.cancelled:
                continue
            self._now = max(self._now, timer.when)
            timer.callback()
            await settle()
        self._now = target
        await settle()

    async def run_until(self, awaitable: Awaitable[object], *, step: float, limit: float) -> None:
        """Advance in ``step`` increments until ``awaitable`` is done or ``limit`` passed."""
        task = asyncio.ensure_future(awaitable)
        elapsed = 0.0
        while not task.done() and elapsed < limit:
            await self.advance(step)
            elapsed += step
        await settle()

    @property
    def pending_timers(self) -> int:
        return sum(not timer.cancelled for timer in self._timers)


def most_in_window(times: Iterable[float], period: float) -> int:
    """The most of ``times`` in any half-open window ``[s, s + period)``, wherever ``s``
    lies: how a rate is judged, from the arrival times an external system recorded."""
    ordered = sorted(times)
    most = start = 0
    for end, at in enumerate(ordered):
        while ordered[start] + period <= at:
            start += 1
        most = max(most, end - start + 1)
    return most


async def settle(rounds: int = 200) -> None:
    """Let every runnable task run until all of them wait on something.

    On asyncio's default loop this stops as soon as the ready queue is empty; elsewhere
    it yields ``rounds`` times.
    """
    loop = asyncio.get_running_loop()
    ready = getattr(loop, "_ready", None)  # asyncio.BaseEventLoop keeps its run queue here
    for _ in range(rounds):
        await asyncio.sleep(0)
        if ready is not None and not ready:
            return


class MockTransport:
    """A transport that answers from a function instead of the network.

    Each request "leaves" at once (``sending.start()``, then ``sending.done()``), then the
    handler gets the :class:`Request` and returns a :class:`Response` (or an awaitable of
    one), or raises :class:`~sluicegate.errors.TransportError` to simulate a network
    failure. Every request sent is kept in :attr:`requests`.
    """

    def __init__(self, handler: Callable[[Request], Response | Awaitable[Response]]) -> None:
        self._handler = handler
        self.requests: list[Request] = []

    async def send(self, request: Request, sending: Sending) -> Response:
        await sending.start()
        sending.done()
        self.requests.append(request)
        response = self._handler(request)
        if isinstance(response, Response):
            return response
        return await response

    async def aclose(self) -> None:
        return None

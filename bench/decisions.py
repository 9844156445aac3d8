"""Limiter decisions per second, in process, on a simulated clock.

Every contender answers ``n`` requests for a slot of one rate of 1000 per 1000 ms while
time advances 500 µs per decision: 2000 requests per window for 1000 slots, so about
half are granted and half denied, the mix a limiter under pressure sees. A simulated
clock keeps the runs deterministic and leaves the cost of reading a real clock out of
every contender alike.

- ``SlidingWindow.acquire`` + ``stamp``: sluicegate's exact window, bare; a granted slot
  is stamped as sent at once (every granted request is stamped when it leaves);
- ``MemorySlotStore.acquire_now`` + ``sent``: the same behind the slot store the gate
  uses (one :class:`Limit`, looked up by key, as a capped call takes it);
- ``aiolimiter``: ``has_capacity()``, then ``await acquire()`` for the granted ones, which
  is how a non-blocking check is written with it. It reads the time from its event
  loop, so its loop is replaced by an object whose ``time()`` is the simulated clock.

aiolimiter is a leaky bucket, not an exact window: after a burst it lets up to about
twice the limit through in one window. :func:`max_in_window` measures that on each
contender, outside the timed runs.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

from aiolimiter import AsyncLimiter

from measure import Series
from sluicegate.backends.memory import MemorySlotStore
from sluicegate.storage import Grant, Limit
from sluicegate.window import SlidingWindow

LIMIT = 1000
PERIOD_MS = 1000
STEP_US = 500  # time between two decisions
EXACTNESS_DECISIONS = 20_000


@dataclass(frozen=True, slots=True)
class Contender:
    """One limiter's figures."""

    name: str
    rate: Series  # decisions per second
    granted: float  # fraction of the decisions that were grants
    max_in_window: int  # most grants in any PERIOD_MS window (LIMIT when exact)


class _SimulatedLoop:
    """What aiolimiter reads from its event loop: the time, and whether it is closed."""

    __slots__ = ("now",)

    def __init__(self) -> None:
        self.now = 0.0

    def time(self) -> float:
        return self.now

    def is_closed(self) -> bool:
        return False


def _limiter() -> tuple[AsyncLimiter, _SimulatedLoop]:
    limiter = AsyncLimiter(LIMIT, PERIOD_MS / 1000)
    loop = _SimulatedLoop()
    limiter._event_loop = loop  # type: ignore[assignment]  # its clock is its loop's
    return limiter, loop


def _limit() -> Limit:
    return Limit(key="bench", count=LIMIT, period_ms=PERIOD_MS)


def run_window(n: int) -> int:
    """``n`` decisions of a bare :class:`SlidingWindow`; the number granted."""
    window = SlidingWindow(limit=LIMIT, period_ms=PERIOD_MS)
    acquire, stamp = window.acquire, window.stamp
    granted = 0
    for i in range(n):
        now_ms = i * STEP_US // 1000
        if acquire(now_ms) == 0:
            stamp(now_ms)
            granted += 1
    return granted


def run_store(n: int) -> int:
    """``n`` decisions of :meth:`MemorySlotStore.acquire_now` with one limit."""
    store = MemorySlotStore()
    acquire, sent = store.acquire_now, store.sent
    limits = (_limit(),)
    granted = 0
    for i in range(n):
        now_ms = i * STEP_US // 1000
        found = acquire(limits, now_ms)
        if isinstance(found, Grant):
            sent(found, now_ms)
            granted += 1
    return granted


async def run_aiolimiter(n: int) -> int:
    """``n`` decisions of aiolimiter: check, then acquire what is free."""
    limiter, loop = _limiter()
    has_capacity, acquire = limiter.has_capacity, limiter.acquire
    granted = 0
    for i in range(n):
        loop.now = i * STEP_US / 1e6
        if has_capacity():
            await acquire()
            granted += 1
    return granted


def max_in_window(grant_times_us: list[int]) -> int:
    """The most grants in any half-open window ``[s, s + PERIOD_MS)``, wherever ``s`` is."""
    best = start = 0
    for end, stamp in enumerate(grant_times_us):
        while stamp - grant_times_us[start] >= PERIOD_MS * 1000:
            start += 1
        best = max(best, end - start + 1)
    return best


def _grant_times(decide: Callable[[int], bool]) -> list[int]:
    """The times (µs) of the grants among the decisions made every STEP_US."""
    return [i * STEP_US for i in range(EXACTNESS_DECISIONS) if decide(i)]


def _exactness() -> dict[str, int]:
    window = SlidingWindow(limit=LIMIT, period_ms=PERIOD_MS)
    store, limits = MemorySlotStore(), (_limit(),)
    limiter, loop = _limiter()

    def aiolimiter_decides(i: int) -> bool:
        loop.now = i * STEP_US / 1e6
        if not limiter.has_capacity():
            return False
        # acquire() does not suspend when there is capacity: drive the coroutine by hand.
        try:
            limiter.acquire().send(None)
        except StopIteration:
            return True
        raise RuntimeError("aiolimiter waited although it had capacity")

    def window_decides(i: int) -> bool:
        now_ms = i * STEP_US // 1000
        if window.acquire(now_ms):
            return False
        window.stamp(now_ms)
        return True

    def store_decides(i: int) -> bool:
        now_ms = i * STEP_US // 1000
        found = store.acquire_now(limits, now_ms)
        if isinstance(found, Grant):
            store.sent(found, now_ms)
        return isinstance(found, Grant)

    return {
        "window": max_in_window(_grant_times(window_decides)),
        "store": max_in_window(_grant_times(store_decides)),
        "aiolimiter": max_in_window(_grant_times(aiolimiter_decides)),
    }


def _timed(run: Callable[[int], int], n: int) -> tuple[float, int]:
    start = time.perf_counter()
    granted = run(n)
    return n / (time.perf_counter() - start), granted


async def _timed_async(n: int) -> tuple[float, int]:
    start = time.perf_counter()
    granted = await run_aiolimiter(n)
    return n / (time.perf_counter() - start), granted


def measure(runner: asyncio.Runner, n: int, repeats: int) -> list[Contender]:
    """A warm-up, then ``repeats`` rounds of ``n`` decisions per contender, interleaved."""
    exact = _exactness()
    rates: dict[str, list[float]] = {"window": [], "store": [], "aiolimiter": []}
    grants: dict[str, int] = {}
    for round_ in range(repeats + 1):
        timings = {
            "window": _timed(run_window, n),
            "store": _timed(run_store, n),
            "aiolimiter": runner.run(_timed_async(n)),
        }
        if round_ == 0:
            continue  # the warm-up
        for key, (rate, granted) in timings.items():
            rates[key].append(rate)
            grants[key] = granted
    names = {
        "window": "sluicegate SlidingWindow.acquire + stamp",
        "store": "sluicegate MemorySlotStore.acquire_now + sent",
        "aiolimiter": "aiolimiter has_capacity + acquire",
    }
    return [
        Contender(
            name=names[key],
            rate=Series(tuple(rates[key])),
            granted=grants[key] / n,
            max_in_window=exact[key],
        )
        for key in names
    ]

"""The throttling queue on its own: order, priority of retries, rate changes."""

from __future__ import annotations

import asyncio

from sluicegate.backends.memory import MemorySlotStore
from sluicegate.settings import HOUR
from sluicegate.testing import FakeClock, settle
from sluicegate.throttle import ThrottleQueue


def full_queue(clock: FakeClock, rate: int = 2) -> ThrottleQueue:
    return ThrottleQueue(key="thr", rate=rate, clock=clock, slots=MemorySlotStore(),
                         max_age=6 * HOUR)  # fmt: skip


async def test_retries_are_served_ahead_of_queued_first_attempts() -> None:
    """A retry that starts waiting after first attempts were queued gets the next slot."""
    clock = FakeClock()
    queue = full_queue(clock)
    assert await queue.try_now()
    assert await queue.try_now()  # the window (2 per second) is now full
    firsts = [queue.enqueue(clock.now()) for _ in range(2)]
    retry = asyncio.create_task(queue.wait_retry())
    await settle()
    assert (False, False, False) == (retry.done(), firsts[0].done(), firsts[1].done())
    await clock.advance(1.0)  # two slots free: the retry's and the oldest first attempt's
    assert (True, True, False) == (retry.done(), firsts[0].done(), firsts[1].done())
    await clock.advance(1.0)
    assert firsts[1].done()
    await queue.aclose()


async def test_a_raised_rate_drains_faster_at_once() -> None:
    """A throttling edit takes effect on calls already queued."""
    clock = FakeClock()
    queue = full_queue(clock, rate=1)
    assert await queue.try_now()
    waiting = [queue.enqueue(clock.now()) for _ in range(3)]
    queue.rate = 3
    await settle()
    assert 2 == sum(f.done() for f in waiting)  # 3 per second: two more now
    await clock.advance(1.0)
    assert all(f.done() and f.result() for f in waiting)
    await queue.aclose()

"""Throttling on its own: the queue in the store, its dispatcher, retries ahead, expiry."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from conftest import GUARD_MS
from sluicegate.backends.memory import MemoryQueueStore, MemorySlotStore
from sluicegate.call import Call, Service
from sluicegate.matching import ThrottleTarget
from sluicegate.settings import HOUR
from sluicegate.storage import Grant, QueuedCall, Wait
from sluicegate.testing import FakeClock, settle
from sluicegate.throttle import Throttling

TARGET = ThrottleTarget(key="thr:o:u", uid="u", rate=2)
CALL = Call(org="o", sandbox="s", journey="j", service=Service.ACTION, method="POST",
            url="https://api.example.org/x")  # fmt: skip
PERIOD = 1 + GUARD_MS / 1000  # a throttling slot is held a second and the guard band


@dataclass
class Seen:
    """What a throttling handed to its gate: calls dispatched (with their slot), expired."""

    clock: FakeClock = field(default_factory=FakeClock)
    slots: MemorySlotStore = field(default_factory=MemorySlotStore)
    store: MemoryQueueStore = field(default_factory=MemoryQueueStore)
    dispatched: list[str] = field(default_factory=list)
    expired: list[str] = field(default_factory=list)

    def run(self, item: QueuedCall, grant: Grant) -> None:
        self.dispatched.append(item.call_id)
        self.slots.sent(grant, int(self.clock.now() * 1000))  # sent at once

    def throttling(self) -> Throttling:
        return Throttling(
            clock=self.clock, slots=self.slots, store=self.store, max_age=6 * HOUR,
            guard_ms=GUARD_MS, dispatched=self.run,
            expired=lambda item: self.expired.append(item.call_id),
        )  # fmt: skip


class FullSlots(MemorySlotStore):
    """A window that never has a free slot."""

    async def acquire(
        self, limits: object, now_ms: int, *, behind: str | None = None
    ) -> Grant | Wait:
        return Wait(1_000)


async def admit(throttling: Throttling, n: int) -> bool:
    """Admit call ``c<n>``; whether it got a slot at once (True, and is sent) or was queued."""
    grant = await throttling.admit(f"c{n}", CALL, TARGET)
    if grant is not None:
        throttling._slots.sent(grant, throttling._now_ms())
    return grant is not None


async def test_calls_over_the_rate_are_dispatched_in_arrival_order() -> None:
    """Two per second: two go at once, the others wait in the store and leave in order,
    two per period."""
    seen = Seen()
    clock, throttling = seen.clock, seen.throttling()
    assert [True, True, False, False, False] == [await admit(throttling, n) for n in range(5)]
    await settle()
    assert ([], 3) == (seen.dispatched, seen.store.depth(TARGET.key))
    await clock.advance(PERIOD)
    assert ["c2", "c3"] == seen.dispatched
    await clock.advance(PERIOD)
    assert (["c2", "c3", "c4"], 0) == (seen.dispatched, seen.store.depth(TARGET.key))
    await throttling.aclose()


async def test_a_waiting_queue_is_never_overtaken() -> None:
    """While calls wait, a newcomer queues behind them even when a slot is free."""
    seen = Seen()
    clock, throttling = seen.clock, seen.throttling()
    for n in range(3):
        await admit(throttling, n)
    await clock.advance(PERIOD - 0.001)
    assert False is await admit(throttling, 3)
    await clock.advance(0.001)
    assert ["c2", "c3"] == seen.dispatched
    await throttling.aclose()


async def test_retries_are_served_ahead_of_queued_first_attempts() -> None:
    """A retry that starts waiting after first attempts were queued gets the next slot."""
    seen = Seen()
    clock, throttling = seen.clock, seen.throttling()
    for n in range(4):
        await admit(throttling, n)
    retry = asyncio.create_task(throttling.wait_retry(TARGET))
    await settle()
    assert not retry.done()
    await clock.advance(PERIOD)  # two slots free: the retry's and the oldest first attempt's
    assert (True, ["c2"]) == (retry.done(), seen.dispatched)
    await throttling.aclose()


async def test_a_raised_rate_drains_faster_at_once() -> None:
    """A throttling edit takes effect at once on calls already queued, while their
    dispatcher waits for the next free slot."""
    seen = Seen()
    clock, throttling = seen.clock, seen.throttling()
    for n in range(5):
        await admit(throttling, n)
    await clock.advance(PERIOD / 2)  # the dispatcher waits for a slot of the old rate
    throttling.set_rate(TARGET.key, 4)
    await settle()
    assert ["c2", "c3"] == seen.dispatched  # 4 per second: two more now
    await clock.advance(PERIOD)
    assert ["c2", "c3", "c4"] == seen.dispatched
    await throttling.aclose()


async def test_queued_call_expires_at_six_hours_exactly() -> None:
    """The 6-hour limit is exact: waiting 6 h minus 1 ms is still queued, 6 h is expired."""
    seen = Seen(slots=FullSlots())
    clock, throttling = seen.clock, seen.throttling()
    assert False is await admit(throttling, 0)
    await clock.advance(6 * HOUR - 0.001)
    assert ([], 1) == (seen.expired, seen.store.depth(TARGET.key))
    await clock.advance(0.001)
    assert (["c0"], 0) == (seen.expired, seen.store.depth(TARGET.key))
    await throttling.aclose()


async def test_queued_calls_hold_no_task() -> None:
    """A thousand calls waiting in a queue run no task each: one dispatcher serves them."""
    seen = Seen()
    throttling = seen.throttling()
    before = len(asyncio.all_tasks())
    for n in range(1000):
        await admit(throttling, n)
    await settle()
    assert (998, 1) == (seen.store.depth(TARGET.key), len(asyncio.all_tasks()) - before)
    await throttling.aclose()


async def test_a_queue_whose_slots_all_went_to_retries_keeps_draining() -> None:
    """When retries take every slot that frees, the queued calls wait for the next ones,
    and get them: the dispatcher does not stop while calls are queued."""
    seen = Seen()
    clock, throttling = seen.clock, seen.throttling()
    for n in range(4):
        await admit(throttling, n)
    retries = [asyncio.create_task(throttling.wait_retry(TARGET)) for _ in range(2)]
    await settle()
    await clock.advance(PERIOD)
    assert ([True, True], []) == ([r.done() for r in retries], seen.dispatched)
    for retry in retries:
        seen.slots.sent(retry.result(), int(clock.now() * 1000))
    await clock.advance(PERIOD)
    assert ["c2", "c3"] == seen.dispatched
    await throttling.aclose()


async def test_closing_with_a_retry_coming_in_stops_every_dispatcher() -> None:
    """A retry that asks for a slot while the throttling closes is cancelled, and no
    dispatcher is left running to dispatch queued calls after the close."""
    seen = Seen()
    clock, throttling = seen.clock, seen.throttling()
    for n in range(3):
        await admit(throttling, n)
    other = ThrottleTarget(key="thr:o:other", uid="other", rate=2)
    closing = asyncio.create_task(throttling.aclose())
    retry = asyncio.create_task(throttling.wait_retry(other))
    await closing
    await settle()
    await clock.advance(2 * PERIOD)
    assert (True, []) == (retry.cancelled(), seen.dispatched)

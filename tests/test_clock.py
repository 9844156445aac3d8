"""The system clock's deadlines: shared timers that still cancel exactly what they must.

These exercise the real clock, so they take real milliseconds; they assert what was
cancelled and that a deadline never fires early, never how late it fires.
"""

from __future__ import annotations

import asyncio

import pytest

from sluicegate.clock import SystemClock


async def test_a_block_still_running_at_its_deadline_is_cancelled() -> None:
    """The block is cancelled with TimeoutError, not before its deadline."""
    clock = SystemClock()
    start = clock.now()
    with pytest.raises(TimeoutError):
        async with clock.deadline(start + 0.02):
            await asyncio.sleep(10)
    assert clock.now() >= start + 0.02


async def test_a_block_that_ended_is_never_cancelled_later() -> None:
    """Leaving the block withdraws its deadline: the task goes on untouched after it."""
    clock = SystemClock()
    async with clock.deadline(clock.now() + 0.01):
        pass
    await asyncio.sleep(0.03)  # past the deadline: nothing may cancel us now
    assert asyncio.current_task() is not None
    assert not asyncio.current_task().cancelling()  # type: ignore[union-attr]


async def test_deadlines_sharing_a_slice_cancel_only_the_late_ones() -> None:
    """Of many calls whose deadlines share timers, only those still running are cut."""
    clock = SystemClock()
    deadline = clock.now() + 0.02

    async def call(work: float) -> str:
        try:
            async with clock.deadline(deadline):
                await asyncio.sleep(work)
        except TimeoutError:
            return "timedout"
        return "done"

    results = await asyncio.gather(*(call(0.0 if i % 2 else 10.0) for i in range(20)))
    assert ["timedout", "done"] * 10 == results


async def test_a_deadline_already_past_cancels_at_once() -> None:
    """A deadline in the past cancels the block at its first wait."""
    clock = SystemClock()
    with pytest.raises(TimeoutError):
        async with clock.deadline(clock.now() - 1):
            await asyncio.sleep(10)


async def test_a_cancel_from_outside_is_not_turned_into_a_timeout() -> None:
    """A task cancelled by someone else inside the block gets CancelledError: only the
    deadline's own cancellation becomes a timeout."""
    clock = SystemClock()
    entered = asyncio.Event()

    async def blocked() -> None:
        async with clock.deadline(clock.now() + 0.02):
            entered.set()
            await asyncio.sleep(10)

    task = asyncio.create_task(blocked())
    await entered.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

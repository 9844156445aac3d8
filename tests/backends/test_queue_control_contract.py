"""The QueueStore contract of an operator's controls: pause, resume and purge.

A paused queue gives no claim and admits nobody ahead of it, yet takes pushes and expires;
a purge takes the waiting calls (never a claimed one), atomically with claims. On stores
that outlive a process, a pause is seen by the next one to open the store, and on a
shared store by every other instance at once.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from pathlib import Path

import pytest
from tests.services import shared

from sluicegate.storage import Backend, Grant, Limit, QueuedCall, QueueDepth, Wait
from sluicegate.wiring import Storage, open_backend

MakeQueued = Callable[..., QueuedCall]
ALL = 1_000_000
LIMIT = Limit(key="q", count=10, period_ms=1000)


async def ids(backend: Backend, queue: str = "q", count: int = ALL) -> list[str]:
    """Claim up to ``count`` calls of ``queue``; their ids, in the order claimed."""
    return [item.call_id for item in await backend.queue.claim(queue, count)]


async def purged(backend: Backend, queue: str = "q", count: int = ALL) -> list[str]:
    """Purge up to ``count`` calls of ``queue``; their ids, in the order purged."""
    return [item.call_id for item in await backend.queue.purge(queue, count)]


async def test_a_paused_queue_gives_no_claim_until_resumed(
    backend: Backend, queued: MakeQueued
) -> None:
    """While paused, a queue keeps its calls (and takes new ones) and gives none to a
    claim; other queues go on; once resumed, its calls come out in push order."""
    await backend.queue.push(queued(0))
    await backend.queue.pause("q")
    for n, queue in ((1, "q"), (2, "other")):
        await backend.queue.push(queued(n, queue=queue))
    assert ([], ["call-2"], 2, True) == (
        await ids(backend), await ids(backend, "other"), backend.queue.depth("q"),
        backend.queue.paused("q"),
    )  # fmt: skip
    await backend.queue.resume("q")
    assert (False, ["call-0", "call-1"]) == (backend.queue.paused("q"), await ids(backend))


async def test_pausing_twice_is_pausing_once(backend: Backend) -> None:
    """Pause is a state, not a count: one resume ends two pauses; resuming a queue that
    is not paused changes nothing."""
    await backend.queue.resume("q")
    await backend.queue.pause("q")
    await backend.queue.pause("q")
    await backend.queue.resume("q")
    assert (False, []) == (backend.queue.paused("q"), await backend.queue.queues())


async def test_a_paused_queue_admits_nobody_ahead_of_it(backend: Backend) -> None:
    """A slot asked for behind a paused queue, empty or not, is refused with a wait; the
    same slot is granted once the queue is resumed."""
    await backend.queue.pause("q")
    refused = await backend.slots.acquire((LIMIT,), 1000, behind="q")
    await backend.queue.resume("q")
    granted = await backend.slots.acquire((LIMIT,), 1000, behind="q")
    assert (Wait, Grant) == (type(refused), type(granted))
    assert isinstance(granted, Grant)
    backend.slots.release(granted)


async def test_paused_queues_are_listed_even_when_empty(
    backend: Backend, queued: MakeQueued
) -> None:
    """``queues`` lists a paused queue with its calls, a paused empty one (rate 0: no call
    tells it), and a running one; a resumed empty queue leaves the list."""
    await backend.queue.push(queued(0, queue="a"))
    await backend.queue.push(queued(1, queue="b"))
    await backend.queue.pause("a")
    await backend.queue.pause("empty")
    found = sorted(await backend.queue.queues(), key=lambda queue: queue.queue)
    assert [
        QueueDepth(queue="a", depth=1, oldest=1.7e9, rate=200, paused=True),
        QueueDepth(queue="b", depth=1, oldest=1.7e9 + 1, rate=200, paused=False),
        QueueDepth(queue="empty", depth=0, oldest=None, rate=0, paused=True),
    ] == found
    await backend.queue.resume("empty")
    assert ["a", "b"] == sorted(queue.queue for queue in await backend.queue.queues())


async def test_a_paused_queue_still_expires(backend: Backend, queued: MakeQueued) -> None:
    """Expiry goes on while a queue is paused: time paused counts toward the 6 hours."""
    for n in range(3):
        await backend.queue.push(queued(n))
    await backend.queue.pause("q")
    expired, head = await backend.queue.expire("q", 1.7e9 + 1)
    assert (["call-0", "call-1"], 1.7e9 + 2) == ([item.call_id for item in expired], head)


async def test_purge_takes_waiting_calls_from_the_head_and_leaves_claimed_ones(
    backend: Backend, queued: MakeQueued
) -> None:
    """A purge returns waiting calls oldest first, ``count`` at a time, and forgets them;
    claimed calls stay claimed (a reclaim brings them back, not the purged ones)."""
    for n in range(5):
        await backend.queue.push(queued(n))
    await backend.queue.claim("q", 2)
    first, rest = await purged(backend, count=2), await purged(backend)
    assert (["call-2", "call-3"], ["call-4"]) == (first, rest)
    assert (0, None, "claimed") == (backend.queue.depth("q"), await backend.queue.find("call-3"),
                                    await backend.queue.find("call-0"))  # fmt: skip
    await backend.queue.reclaim()
    assert ["call-0", "call-1"] == await ids(backend)


async def test_purge_returns_calls_whole_and_works_while_paused(
    backend: Backend, queued: MakeQueued
) -> None:
    """A paused queue can be purged (and stays paused); a call put back by ``unclaim``
    is purged first, at its place; each purged call comes back as it was pushed."""
    items = [queued(n) for n in range(3)]
    for item in items:
        await backend.queue.push(item)
    await backend.queue.claim("q", 1)
    await backend.queue.unclaim("call-0")
    await backend.queue.pause("q")
    assert (items, True, []) == (await backend.queue.purge("q", ALL), backend.queue.paused("q"),
                                 await purged(backend))  # fmt: skip


async def test_purges_and_claims_racing_never_share_a_call(
    backend: Backend, queued: MakeQueued
) -> None:
    """Claims and purges made at once each take a call at most once between them, and
    every call is taken by one of them: a purged call is never dispatched."""
    await asyncio.gather(*(backend.queue.push(queued(n)) for n in range(300)))

    async def take(step: Callable[[str, int], Awaitable[list[QueuedCall]]]) -> list[str]:
        taken: list[str] = []
        while found := await step("q", 7):
            taken += [item.call_id for item in found]
        return taken

    claimed, purged_ids = await asyncio.gather(take(backend.queue.claim), take(backend.queue.purge))
    assert set() == set(claimed) & set(purged_ids)
    assert {f"call-{n}" for n in range(300)} == set(claimed) | set(purged_ids)
    assert len(claimed) + len(purged_ids) == 300


# A store that outlives a process, or serves several: a pause is in the store.


@pytest.fixture(params=["sqlite", "shared"])
async def reopen(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[Callable[[], Awaitable[Backend]]]:
    """Opens backends on one store: on SQLite each after the last one closed (a data
    directory is held by one process at a time), on Redis + PostgreSQL side by side."""
    opened: list[Backend] = []
    async with contextlib.AsyncExitStack() as stack:
        where: Storage = tmp_path / "data"
        if request.param == "shared":
            where = replace(await stack.enter_async_context(shared()), server_time=False)

        async def open_one() -> Backend:
            if request.param == "sqlite" and opened:
                await opened.pop().aclose()
            backend = await open_backend(where)
            opened.append(backend)
            await backend.recover(0)
            return backend

        try:
            yield open_one
        finally:
            for backend in opened:
                await backend.aclose()


async def test_a_pause_is_in_the_store(
    reopen: Callable[[], Awaitable[Backend]], queued: MakeQueued
) -> None:
    """A pause made by one process holds for the next one to open the store (or another
    instance on it): it lists the queue paused, claims nothing, admits nobody ahead; its
    resume is seen in turn by the next one."""
    first = await reopen()
    await first.queue.push(queued(0))
    await first.queue.pause("q")
    second = await reopen()
    listed = await second.queue.queues()
    assert ([True], []) == ([queue.paused for queue in listed], await ids(second))
    assert isinstance(await second.slots.acquire((LIMIT,), 1000, behind="q"), Wait)
    await second.queue.resume("q")
    third = await reopen()
    await third.queue.queues()
    assert (False, ["call-0"]) == (third.queue.paused("q"), await ids(third))


async def test_a_paused_queue_is_seen_by_the_claims_of_another_instance(
    queued: MakeQueued,
) -> None:
    """On a shared store, a pause holds at once for an instance that has not looked at
    the queue since: its claim is refused, and teaches it the queue is paused."""
    async with shared() as where:
        where = replace(where, server_time=False)
        one, other = await open_backend(where), await open_backend(where)
        try:
            await one.queue.push(queued(0))
            assert False is other.queue.paused("q")
            await one.queue.pause("q")
            assert ([], True) == (await ids(other), other.queue.paused("q"))
            await one.queue.resume("q")
            assert ["call-0"] == await ids(other)
        finally:
            await one.aclose()
            await other.aclose()


async def test_a_purge_takes_the_calls_of_a_claimer_that_died(queued: MakeQueued) -> None:
    """On a shared store, a call claimed by an instance whose lease then ended (it died)
    is waiting again, so a purge takes it too, in its place at the head; a call claimed
    under a live lease stays claimed."""
    import redis.asyncio

    async with shared() as where:
        one = await open_backend(where)
        client = redis.asyncio.Redis.from_url(where.redis_url)
        try:
            for n in range(4):
                await one.queue.push(queued(n))
            assert ["call-0", "call-1"] == await ids(one, count=2)
            claimed = f"{where.prefix}:{{q}}:claimed"
            await client.zadd(claimed, {"call-0": 0})  # its claimer died long ago
            assert ["call-0", "call-2", "call-3"] == await purged(one)
            assert "claimed" == await one.queue.find("call-1")
        finally:
            await client.aclose()
            await one.aclose()

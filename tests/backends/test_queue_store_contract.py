"""The QueueStore contract: FIFO queues in the store, claimed from the head, reclaimed
after a restart, expired from the head."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from sluicegate.call import Call, Service
from sluicegate.storage import Backend, QueuedCall, QueueDepth

MakeQueued = Callable[..., QueuedCall]
ALL = 1_000_000


async def ids(backend: Backend, queue: str = "q", count: int = ALL) -> list[str]:
    """Claim up to ``count`` calls of ``queue``; their ids, in the order claimed."""
    return [item.call_id for item in await backend.queue.claim(queue, count)]


async def test_an_empty_store_has_nothing_to_claim(backend: Backend) -> None:
    """A fresh store holds no call and no queue."""
    assert ([], [], 0) == (await ids(backend), await backend.queue.queues(),
                           backend.queue.depth("q"))  # fmt: skip


async def test_claims_come_from_the_head_in_push_order(
    backend: Backend, queued: MakeQueued
) -> None:
    """Calls are claimed oldest first, ``count`` at a time, each queue on its own."""
    for n, queue in enumerate("abab"):
        await backend.queue.push(queued(n, queue=queue))
    claimed = [await ids(backend, "a", 1), await ids(backend, "b", 5), await ids(backend, "a", 5)]
    assert [["call-0"], ["call-1", "call-3"], ["call-2"]] == claimed


async def test_depth_counts_waiting_calls_from_the_push_on(
    backend: Backend, queued: MakeQueued
) -> None:
    """The depth counts a call as soon as its push starts, and no longer once claimed."""
    pushing = [asyncio.create_task(backend.queue.push(queued(n))) for n in range(3)]
    await asyncio.sleep(0)
    assert 3 == backend.queue.depth("q")
    await asyncio.gather(*pushing)
    await backend.queue.claim("q", 2)
    assert (1, 0) == (backend.queue.depth("q"), backend.queue.depth("other"))


async def test_claimed_calls_come_back_after_a_reclaim(
    backend: Backend, queued: MakeQueued
) -> None:
    """Calls claimed and not removed return at their place, ahead of the waiting ones."""
    for n in range(4):
        await backend.queue.push(queued(n))
    await backend.queue.claim("q", 3)
    await backend.queue.remove("call-1")
    await backend.queue.reclaim()
    assert (3, ["call-0", "call-2", "call-3"]) == (backend.queue.depth("q"), await ids(backend))


async def test_removed_calls_are_gone_waiting_or_claimed(
    backend: Backend, queued: MakeQueued
) -> None:
    """``remove`` forgets a waiting call (the depth drops) or a claimed one; an unknown or
    already removed id changes nothing."""
    for n in range(4):
        await backend.queue.push(queued(n))
    await backend.queue.claim("q", 1)
    for call_id in ("call-0", "call-2", "call-2", "never-pushed"):
        await backend.queue.remove(call_id)
    assert 2 == backend.queue.depth("q")
    await backend.queue.reclaim()
    assert ["call-1", "call-3"] == await ids(backend)


async def test_remove_right_after_an_unfinished_push_wins(
    backend: Backend, queued: MakeQueued
) -> None:
    """A removal made while its push is still being written is applied after the push."""
    pushing = asyncio.create_task(backend.queue.push(queued(0)))
    await asyncio.sleep(0)  # the push has started, and may not be written yet
    await backend.queue.remove("call-0")
    await pushing
    assert ([], 0) == (await ids(backend), backend.queue.depth("q"))


async def test_expire_removes_old_waiting_calls_from_the_head(
    backend: Backend, queued: MakeQueued
) -> None:
    """Waiting calls enqueued at or before the cutoff leave; the answer names the new head.
    Claimed calls are not expired."""
    for n in range(5):  # enqueued at 1.7e9 + n
        await backend.queue.push(queued(n))
    await backend.queue.claim("q", 1)
    expired, head = await backend.queue.expire("q", 1.7e9 + 2)
    assert (["call-1", "call-2"], 1.7e9 + 3) == ([i.call_id for i in expired], head)
    assert ([], None) == await backend.queue.expire("other", 1.7e9 + 2)
    expired, head = await backend.queue.expire("q", 1.7e9 + 9)
    assert (2, None, 0) == (len(expired), head, backend.queue.depth("q"))


async def test_queues_tell_depth_oldest_and_head_rate(backend: Backend, queued: MakeQueued) -> None:
    """Each queue with waiting calls: its depth, oldest enqueue time and head's rate."""
    for n, queue in enumerate("aab"):
        await backend.queue.push(queued(n, queue=queue))
    await backend.queue.claim("b", 1)
    assert [QueueDepth(queue="a", depth=2, oldest=1.7e9, rate=200)] == (
        await backend.queue.queues()
    )


async def test_find_tells_where_a_call_stands(backend: Backend, queued: MakeQueued) -> None:
    """A call is queued, then claimed, then unknown once removed."""
    for n in range(2):
        await backend.queue.push(queued(n))
    await backend.queue.claim("q", 1)
    found = [await backend.queue.find(i) for i in ("call-0", "call-1", "nope")]
    await backend.queue.remove("call-0")
    assert (["claimed", "queued", None], None) == (found, await backend.queue.find("call-0"))


async def test_concurrent_pushes_are_stored_in_call_order(
    backend: Backend, queued: MakeQueued
) -> None:
    """500 pushes gathered at once are all stored, in the order the push calls were made."""
    items = [queued(n) for n in range(500)]
    await asyncio.gather(*(backend.queue.push(item) for item in items))
    assert items == await backend.queue.claim("q", ALL)


async def test_pushes_and_removes_interleaved_under_load(
    backend: Backend, queued: MakeQueued
) -> None:
    """Removals among concurrent pushes never show up in a claim."""

    async def push_then_maybe_remove(n: int) -> None:
        await backend.queue.push(queued(n))
        if n % 3 == 0:
            await backend.queue.remove(f"call-{n}")

    await asyncio.gather(*(push_then_maybe_remove(n) for n in range(300)))
    expected = [f"call-{n}" for n in range(300) if n % 3]
    assert (expected, 0) == (await ids(backend), backend.queue.depth("q"))


async def test_call_fields_round_trip_exactly(backend: Backend) -> None:
    """Every field comes back equal: binary body, unicode headers, floats, service, rate."""
    call = Call(
        org="org-ü",
        sandbox="dev-沙盒",
        journey="journey ✓",
        service=Service.DATA_SOURCE,
        method="PATCH",
        url="https://api.example.com/p/ä?q=1&r=✓",
        headers={"x-naïve": "日本語 ✓", "Content-Type": "application/octet-stream", "x-e": ""},
        body=bytes(range(256)) + b"\x00\xff",
        timeout_seconds=2.5,
    )
    item = QueuedCall(
        call_id="id-ß", queue="q-é", call=call, enqueued_at=1.7e9 + 0.123456, rate=5000
    )
    await backend.queue.push(item)
    [stored] = await backend.queue.claim("q-é", 1)
    assert item == stored
    assert call.body == stored.call.body
    assert list(call.headers.items()) == list(stored.call.headers.items())
    assert Service.DATA_SOURCE is stored.call.service


async def test_empty_body_and_headers_round_trip(backend: Backend) -> None:
    """A call with no headers and an empty body comes back with both empty."""
    call = Call(org="o", sandbox="s", journey="j", service=Service.ACTION, method="GET",
                url="http://example.com/")  # fmt: skip
    item = QueuedCall(call_id="c", queue="q", call=call, enqueued_at=0.0, rate=200)
    await backend.queue.push(item)
    assert [item] == await backend.queue.claim("q", 1)


async def test_an_unclaimed_call_goes_back_to_its_place(
    backend: Backend, queued: MakeQueued
) -> None:
    """A claimed call that could not start is put back at its place: waiting again (the
    depth counts it), and claimed again ahead of the calls pushed after it."""
    for n in range(4):
        await backend.queue.push(queued(n))
    await backend.queue.claim("q", 2)
    await backend.queue.unclaim("call-1")
    assert (3, "queued") == (backend.queue.depth("q"), await backend.queue.find("call-1"))
    assert ["call-1", "call-2"] == [i.call_id for i in await backend.queue.claim("q", 2)]
    await backend.queue.remove("call-1")
    await backend.queue.unclaim("call-2")
    await backend.queue.remove("call-2")
    assert (1, None) == (backend.queue.depth("q"), await backend.queue.find("call-2"))

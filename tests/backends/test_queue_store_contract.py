"""The QueueStore contract: a journal of queued calls that keeps push order."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from sluicegate.call import Call, Service
from sluicegate.storage import Backend, QueuedCall

MakeQueued = Callable[..., QueuedCall]


async def ids(backend: Backend) -> list[str]:
    return [item.call_id for item in await backend.queue.pending()]


async def test_empty_store_has_nothing_pending(backend: Backend) -> None:
    """A fresh store holds no call."""
    expected: list[QueuedCall] = []
    assert expected == await backend.queue.pending()


async def test_pending_returns_calls_in_push_order(backend: Backend, queued: MakeQueued) -> None:
    """Calls come back in the order they were pushed, across queues."""
    items = [queued(3, queue="b"), queued(1, queue="a"), queued(2, queue="b")]
    for item in items:
        await backend.queue.push(item)
    assert items == await backend.queue.pending()


async def test_removed_call_is_not_pending(backend: Backend, queued: MakeQueued) -> None:
    """``remove`` forgets one call and keeps the order of the others."""
    for n in range(4):
        await backend.queue.push(queued(n))
    await backend.queue.remove("call-1")
    await backend.queue.remove("call-3")
    expected = ["call-0", "call-2"]
    assert expected == await ids(backend)


async def test_removing_an_unknown_call_is_a_no_op(backend: Backend, queued: MakeQueued) -> None:
    """Removing a call id never pushed (or removed twice) changes nothing."""
    await backend.queue.push(queued(0))
    await backend.queue.remove("call-0")
    await backend.queue.remove("call-0")
    await backend.queue.remove("never-pushed")
    expected: list[str] = []
    assert expected == await ids(backend)


async def test_remove_right_after_an_unfinished_push_wins(
    backend: Backend, queued: MakeQueued
) -> None:
    """A removal made while its push is still being written is applied after the push."""
    pushing = asyncio.create_task(backend.queue.push(queued(0)))
    await asyncio.sleep(0)  # the push has started, and may not be written yet
    await backend.queue.remove("call-0")
    await pushing
    expected: list[str] = []
    assert expected == await ids(backend)


async def test_push_after_remove_goes_to_the_back(backend: Backend, queued: MakeQueued) -> None:
    """A call pushed again after its removal is queued behind the others."""
    for n in range(3):
        await backend.queue.push(queued(n))
    await backend.queue.remove("call-0")
    await backend.queue.push(queued(0))
    expected = ["call-1", "call-2", "call-0"]
    assert expected == await ids(backend)


async def test_repush_keeps_the_place_and_takes_the_new_content(
    backend: Backend, queued: MakeQueued
) -> None:
    """Pushing a call id still stored keeps one entry, at its first place, with the new value."""
    for n in range(3):
        await backend.queue.push(queued(n))
    updated = queued(0, queue="other", body=b"new")
    await backend.queue.push(updated)
    assert [updated, queued(1), queued(2)] == await backend.queue.pending()


async def test_concurrent_pushes_are_stored_in_call_order(
    backend: Backend, queued: MakeQueued
) -> None:
    """500 pushes gathered at once are all stored, in the order the push calls were made."""
    items = [queued(n) for n in range(500)]
    await asyncio.gather(*(backend.queue.push(item) for item in items))
    assert items == await backend.queue.pending()


async def test_pushes_and_removes_interleaved_under_load(
    backend: Backend, queued: MakeQueued
) -> None:
    """Removals buffered among concurrent pushes never show up in ``pending``."""

    async def push_then_maybe_remove(n: int) -> None:
        await backend.queue.push(queued(n))
        if n % 3 == 0:
            await backend.queue.remove(f"call-{n}")

    await asyncio.gather(*(push_then_maybe_remove(n) for n in range(300)))
    expected = [f"call-{n}" for n in range(300) if n % 3]
    assert expected == await ids(backend)


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
    [stored] = await backend.queue.pending()
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
    assert [item] == await backend.queue.pending()

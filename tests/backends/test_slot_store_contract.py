"""The SlotStore contract: exact sliding windows counted from the send, all-or-nothing.

Each script step is ``(limits, now_ms)``: acquire at ``now_ms`` and, when granted, send at
once. Its answer is 0 for a grant, otherwise the milliseconds until a slot may free.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from sluicegate.storage import Backend, Grant, Limit, QueuedCall, Wait

PERIOD = 1000


def limit(key: str = "rule", count: int = 3) -> Limit:
    return Limit(key=key, count=count, period_ms=PERIOD)


async def play(backend: Backend, script: Sequence[tuple[Sequence[Limit], int]]) -> list[int]:
    """The answers of each step of ``script``, in order."""
    answers = []
    for limits, now_ms in script:
        found = await backend.slots.acquire(limits, now_ms)
        if isinstance(found, Grant):
            await backend.slots.recorded(found)
            backend.slots.sent(found, now_ms)
            answers.append(0)
        else:
            answers.append(found.ms)
    return answers


async def test_grants_count_slots_then_waits_a_full_period(backend: Backend) -> None:
    """``count`` grants at one instant, then the next is refused for exactly one period."""
    rule = [limit(count=3)]
    expected = [0, 0, 0, PERIOD]
    assert expected == await play(backend, [(rule, 5_000)] * 4)


async def test_slot_frees_exactly_one_period_after_its_send(backend: Backend) -> None:
    """Refused 1 ms before ``t + period`` (wait 1), granted at ``t + period`` exactly."""
    rule = [limit(count=1)]
    script = [(rule, 5_000), (rule, 5_000 + PERIOD - 1), (rule, 5_000 + PERIOD)]
    expected = [0, 1, 0, PERIOD]
    assert expected == await play(backend, [*script, (rule, 5_000 + PERIOD)])


async def test_wait_is_until_the_oldest_send_in_the_window_leaves(backend: Backend) -> None:
    """With sends at 0 and 400, the window slides: slots free at 1000 and then at 1400."""
    rule = [limit(count=2)]
    times = [0, 400, 400, 1_000, 1_000, 1_399, 1_400]
    expected = [0, 0, 600, 0, 400, 1, 0]
    assert expected == await play(backend, [(rule, t) for t in times])


async def test_refusal_by_one_limit_takes_no_slot_from_the_others(backend: Backend) -> None:
    """All or nothing: calls refused by ``a`` leave ``b``'s two slots untouched."""
    a, b = [limit("a", count=1)], [limit("b", count=2)]
    both = [*a, *b]
    expected = [0, PERIOD, PERIOD, 0, 0, PERIOD]
    assert expected == await play(backend, [(a, 0), (both, 0), (both, 0), (b, 0), (b, 0), (b, 0)])


async def test_grant_across_limits_takes_one_slot_from_each(backend: Backend) -> None:
    """A granted call counts in every limit it names."""
    a, b = [limit("a", count=2)], [limit("b", count=1)]
    expected = [0, PERIOD, 0, PERIOD]
    assert expected == await play(backend, [([*a, *b], 0), (b, 0), (a, 0), (a, 0)])


async def test_wait_across_limits_is_the_longest_one(backend: Backend) -> None:
    """Refused by two limits, the wait lasts until both have a free slot."""
    a, b = [limit("a", count=1)], [limit("b", count=1)]
    both = [*a, *b]
    expected = [0, 0, 900, 1, 0]
    assert expected == await play(
        backend, [(a, 0), (b, 500), (both, 600), (both, 1_499), (both, 1_500)]
    )


async def test_keys_are_independent(backend: Backend) -> None:
    """Exhausting one key leaves another with the same rate untouched."""
    a, b = [limit("a", count=1)], [limit("b", count=1)]
    expected = [0, PERIOD, 0, PERIOD]
    assert expected == await play(backend, [(a, 0), (a, 0), (b, 0), (b, 0)])


async def test_lowered_limit_applies_at_once(backend: Backend) -> None:
    """After sends at 0, 1, 2 ms, a limit lowered to 1 refuses until all three have left."""
    three, one = [limit(count=3)], [limit(count=1)]
    script = [(three, 0), (three, 1), (three, 2), (one, 10), (one, 1 + PERIOD), (one, 2 + PERIOD)]
    expected = [0, 0, 0, 2 + PERIOD - 10, 1, 0, PERIOD]
    assert expected == await play(backend, [*script, (one, 2 + PERIOD)])


async def test_raised_limit_applies_at_once(backend: Backend) -> None:
    """A limit raised in place grants the extra slot in the same window."""
    one, two = [limit(count=1)], [limit(count=2)]
    expected = [0, PERIOD, 0, PERIOD]
    assert expected == await play(backend, [(one, 0), (one, 0), (two, 0), (two, 0)])


async def test_a_slot_counts_from_its_send_not_its_grant(backend: Backend) -> None:
    """Granted at 0 and sent at 700, a slot is held until 1700; until sent, it is held
    with no end, and the wait said is a whole period."""
    rule = [limit(count=1)]
    grant = await backend.slots.acquire(rule, 0)
    assert isinstance(grant, Grant)
    assert Wait(PERIOD) == await backend.slots.acquire(rule, 600)
    backend.slots.sent(grant, 700)
    answers = [await backend.slots.acquire(rule, t) for t in (1_000, 1_699)]
    assert [Wait(700), Wait(1)] == answers
    assert isinstance(await backend.slots.acquire(rule, 1_700), Grant)


async def test_a_released_slot_is_free_at_once(backend: Backend) -> None:
    """A grant whose request never left gives its slot back in every limit it holds."""
    a, b = limit("a", count=1), limit("b", count=1)
    grant = await backend.slots.acquire([a, b], 0)
    assert isinstance(grant, Grant)
    backend.slots.release(grant)
    assert [0, 0] == [await backend.slots.in_use(key, 1) for key in ("a", "b")]
    assert isinstance(await backend.slots.acquire([b], 1), Grant)


async def test_in_use_counts_reserved_and_sent_slots(backend: Backend) -> None:
    """Slots in use: reserved ones, and sent ones until their window passes."""
    rule = [limit(count=3)]
    sent = await backend.slots.acquire(rule, 0)
    reserved = await backend.slots.acquire(rule, 0)
    assert isinstance(sent, Grant)
    assert isinstance(reserved, Grant)
    backend.slots.sent(sent, 100)
    counts = [await backend.slots.in_use("rule", t) for t in (100, 1_099, 1_100)]
    assert [2, 2, 1] == counts
    assert 0 == await backend.slots.in_use("never-used", 0)


async def test_a_paused_limit_grants_nothing_until_the_pause_ends(backend: Backend) -> None:
    """Paused for 500 ms at 1000 (a ``Retry-After``): every acquire of that limit, free
    slots or not, waits for the pause's end, and is told so; other limits are not held."""
    rule, other = [limit("busy", count=5)], [limit("other", count=5)]
    backend.slots.pause(rule, 500, 1_000)
    assert Wait(400, paused=True) == await backend.slots.acquire(rule, 1_100)
    assert Wait(1, paused=True) == await backend.slots.acquire([*other, *rule], 1_499)
    assert isinstance(await backend.slots.acquire(other, 1_100), Grant)
    assert isinstance(await backend.slots.acquire(rule, 1_500), Grant)


async def test_no_slot_behind_a_queue_with_calls_waiting(
    backend: Backend, queued: Callable[..., QueuedCall]
) -> None:
    """Behind a queue that holds a waiting call, a free slot is not granted (the queue
    goes first); once the queue is empty again, it is."""
    rule = [limit("q", count=5)]
    await backend.queue.push(queued(1, queue="q"))
    assert Wait(PERIOD) == await backend.slots.acquire(rule, 0, behind="q")
    assert isinstance(await backend.slots.acquire(rule, 0), Grant)  # the dispatcher's way
    await backend.queue.claim("q", 1)
    assert isinstance(await backend.slots.acquire(rule, 0, behind="q"), Grant)

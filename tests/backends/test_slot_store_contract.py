"""The SlotStore contract: exact sliding windows, all-or-nothing across limits.

Each test plays a script of ``acquire`` calls and compares the answers: 0 for a grant,
otherwise the milliseconds until a retry could succeed.
"""

from __future__ import annotations

from collections.abc import Sequence

from sluicegate.storage import Backend, Limit

PERIOD = 1000


def limit(key: str = "rule", count: int = 3) -> Limit:
    return Limit(key=key, count=count, period_ms=PERIOD)


async def play(backend: Backend, script: Sequence[tuple[Sequence[Limit], int]]) -> list[int]:
    """The answers to ``acquire(limits, now_ms)`` for each step of ``script``, in order."""
    return [await backend.slots.acquire(limits, now_ms) for limits, now_ms in script]


async def test_grants_count_slots_then_waits_a_full_period(backend: Backend) -> None:
    """``count`` grants at one instant, then the next is refused for exactly one period."""
    rule = [limit(count=3)]
    expected = [0, 0, 0, PERIOD]
    assert expected == await play(backend, [(rule, 5_000)] * 4)


async def test_slot_frees_exactly_one_period_after_its_grant(backend: Backend) -> None:
    """Refused 1 ms before ``t + period`` (wait 1), granted at ``t + period`` exactly."""
    rule = [limit(count=1)]
    script = [(rule, 5_000), (rule, 5_000 + PERIOD - 1), (rule, 5_000 + PERIOD)]
    expected = [0, 1, 0, PERIOD]
    assert expected == await play(backend, [*script, (rule, 5_000 + PERIOD)])


async def test_wait_is_until_the_oldest_grant_in_the_window_leaves(backend: Backend) -> None:
    """With grants at 0 and 400, the window slides: slots free at 1000 and then at 1400."""
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
    """After grants at 0, 1, 2 ms, a limit lowered to 1 refuses until all three have left."""
    three, one = [limit(count=3)], [limit(count=1)]
    script = [(three, 0), (three, 1), (three, 2), (one, 10), (one, 1 + PERIOD), (one, 2 + PERIOD)]
    expected = [0, 0, 0, 2 + PERIOD - 10, 1, 0, PERIOD]
    assert expected == await play(backend, [*script, (one, 2 + PERIOD)])


async def test_raised_limit_applies_at_once(backend: Backend) -> None:
    """A limit raised in place grants the extra slot in the same window."""
    one, two = [limit(count=1)], [limit(count=2)]
    expected = [0, PERIOD, 0, PERIOD]
    assert expected == await play(backend, [(one, 0), (one, 0), (two, 0), (two, 0)])

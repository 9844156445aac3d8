"""The exact sliding window: never more than N grants in any window of P ms."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from sluicegate.window import SlidingWindow


def grants_in(grants: list[int], start: int, period: int) -> int:
    return sum(start <= g < start + period for g in grants)


arrivals = st.lists(st.integers(min_value=0, max_value=50), min_size=1, max_size=300).map(
    lambda gaps: [sum(gaps[: i + 1]) for i in range(len(gaps))]
)


@settings(max_examples=300, deadline=None)
@given(
    limit=st.integers(min_value=1, max_value=12),
    period=st.integers(min_value=1, max_value=400),
    times=arrivals,
)
def test_never_more_than_limit_in_any_window(limit: int, period: int, times: list[int]) -> None:
    """Under any arrival pattern, every window of P ms, wherever it starts, holds <= N grants."""
    window = SlidingWindow(limit=limit, period_ms=period)
    grants = [t for t in times if window.acquire(t) == 0]
    starts = {g - period + 1 for g in grants} | set(grants)
    assert max(grants_in(grants, s, period) for s in starts) <= limit


@settings(max_examples=300, deadline=None)
@given(
    limit=st.integers(min_value=1, max_value=12),
    period=st.integers(min_value=1, max_value=400),
    times=arrivals,
)
def test_grants_whenever_the_window_has_room(limit: int, period: int, times: list[int]) -> None:
    """A request is refused only when the window ending at its time is already full,
    and the wait it is told is exactly the time until the oldest grant leaves."""
    window = SlidingWindow(limit=limit, period_ms=period)
    grants: list[int] = []
    for t in times:
        in_window = [g for g in grants if t - period < g <= t]
        wait = window.acquire(t)
        if wait == 0:
            assert len(in_window) < limit
            grants.append(t)
        else:
            assert limit == len(in_window)
            assert min(in_window) + period - t == wait


def test_slot_frees_exactly_one_period_after_grant() -> None:
    """N grants at t leave the window full until t + P, and free at t + P exactly."""
    window = SlidingWindow(limit=3, period_ms=1000)
    assert [0, 0, 0] == [window.acquire(5_000) for _ in range(3)]
    assert 1 == window.acquire(5_999)
    assert 0 == window.acquire(6_000)


def test_lowered_limit_applies_at_once() -> None:
    """Lowering the limit of a full window refuses until enough old grants leave."""
    window = SlidingWindow(limit=4, period_ms=100)
    for t in (0, 10, 20, 30):
        assert 0 == window.acquire(t)
    window.limit = 2
    assert 20 + 100 - 50 == window.wait_ms(50)
    assert 0 == window.acquire(120)


def test_memory_is_bounded_by_distinct_milliseconds() -> None:
    """Grants in the same millisecond share one entry, so a window of 300,000 per
    minute keeps at most one entry per millisecond."""
    window = SlidingWindow(limit=300_000, period_ms=60_000)
    for i in range(100_000):
        window.acquire(i // 10)
    assert 10_000 == len(window._entries)
    assert 100_000 == window.in_use(9_999)

"""The exact sliding window: never more than N requests sent in any window of P ms."""

from __future__ import annotations

import heapq

from hypothesis import given, settings
from hypothesis import strategies as st

from sluicegate.testing import most_in_window
from sluicegate.window import SlidingWindow


def take(window: SlidingWindow, now_ms: int) -> int:
    """Acquire at ``now_ms`` and, when granted, send at once."""
    wait = window.acquire(now_ms)
    if wait == 0:
        window.stamp(now_ms)
    return wait


arrivals = st.lists(st.integers(min_value=0, max_value=50), min_size=1, max_size=300).map(
    lambda gaps: [sum(gaps[: i + 1]) for i in range(len(gaps))]
)
limits = st.integers(min_value=1, max_value=12)
periods = st.integers(min_value=1, max_value=400)


@settings(max_examples=300, deadline=None)
@given(limit=limits, period=periods, times=arrivals)
def test_never_more_than_limit_in_any_window(limit: int, period: int, times: list[int]) -> None:
    """Sent at their grant, every window of P ms, wherever it starts, holds <= N requests."""
    window = SlidingWindow(limit=limit, period_ms=period)
    sends = [t for t in times if take(window, t) == 0]
    assert most_in_window(sends, period) <= limit


@settings(max_examples=300, deadline=None)
@given(
    limit=limits,
    period=periods,
    requests=st.lists(
        st.tuples(
            st.integers(min_value=0, max_value=50),  # gap since the previous request
            st.integers(min_value=0, max_value=600),  # delay from grant to send
            st.booleans(),  # never sent: released instead
        ),
        min_size=1,
        max_size=200,
    ),
)
def test_late_sends_never_exceed_the_limit(
    limit: int, period: int, requests: list[tuple[int, int, bool]]
) -> None:
    """However late a granted request is sent, or if it never is, the sends in any window
    of P ms never exceed N: a slot is held from its grant until P after its send."""
    window = SlidingWindow(limit=limit, period_ms=period)
    due: list[tuple[int, int, bool]] = []  # (send time, order, released)
    sends: list[int] = []
    now = 0

    def settle(until: int) -> None:
        while due and due[0][0] <= until:
            at, _, released = heapq.heappop(due)
            if released:
                window.release()
            else:
                window.stamp(at)
                sends.append(at)

    for n, (gap, delay, released) in enumerate(requests):
        now += gap
        settle(now)
        if window.acquire(now) == 0:
            heapq.heappush(due, (now + delay, n, released))
    settle(now + 10_000)
    assert most_in_window(sends, period) <= limit
    assert 0 == window.in_use(now + 10_000 + period)


@settings(max_examples=300, deadline=None)
@given(limit=limits, period=periods, times=arrivals)
def test_grants_whenever_the_window_has_room(limit: int, period: int, times: list[int]) -> None:
    """A request is refused only when the window ending at its time is already full,
    and the wait it is told is exactly the time until the oldest send leaves."""
    window = SlidingWindow(limit=limit, period_ms=period)
    sends: list[int] = []
    for t in times:
        in_window = [s for s in sends if t - period < s <= t]
        wait = take(window, t)
        if wait == 0:
            assert len(in_window) < limit
            sends.append(t)
        else:
            assert limit == len(in_window)
            assert min(in_window) + period - t == wait


def test_slot_frees_exactly_one_period_after_its_send() -> None:
    """A slot granted at t and sent at t + 300 frees at t + 300 + P, not at t + P."""
    window = SlidingWindow(limit=1, period_ms=1000)
    assert 0 == window.acquire(5_000)
    window.stamp(5_300)
    assert (301, 1) == (window.wait_ms(5_999), window.wait_ms(6_299))
    assert 0 == window.acquire(6_300)


def test_a_reservation_holds_its_slot_until_sent() -> None:
    """While a granted request has not been sent, its slot is held and the wait said is a
    whole period (when it frees is not known yet)."""
    window = SlidingWindow(limit=1, period_ms=1000)
    assert 0 == window.acquire(0)
    assert (1000, 1000, 1) == (window.wait_ms(0), window.wait_ms(50_000), window.in_use(50_000))
    window.stamp(50_000)
    assert (1, 0) == (window.wait_ms(50_999), window.wait_ms(51_000))


def test_a_released_reservation_frees_its_slot_at_once() -> None:
    """A granted request that is never sent gives its slot back: the next is granted."""
    window = SlidingWindow(limit=1, period_ms=1000)
    assert 0 == window.acquire(0)
    assert 1000 == window.acquire(1)
    window.release()
    assert (0, 1) == (window.acquire(2), window.in_use(2))


def test_lowered_limit_applies_at_once() -> None:
    """Lowering the limit of a full window refuses until enough old sends leave."""
    window = SlidingWindow(limit=4, period_ms=100)
    for t in (0, 10, 20, 30):
        assert 0 == take(window, t)
    window.limit = 2
    assert 20 + 100 - 50 == window.wait_ms(50)
    assert 0 == take(window, 120)


def test_memory_is_bounded_by_distinct_milliseconds() -> None:
    """Sends in the same millisecond share one entry, so a window of 300,000 per
    minute keeps at most one entry per millisecond."""
    window = SlidingWindow(limit=300_000, period_ms=60_000)
    for i in range(100_000):
        take(window, i // 10)
    assert 10_000 == len(window._entries)
    assert 100_000 == window.in_use(9_999)

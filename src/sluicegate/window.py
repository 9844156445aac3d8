"""The exact sliding window: the reference arithmetic of every rate rule.

Contract: of the grants made by one window, never more than ``limit`` fall in any
half-open interval ``[s, s + period_ms)`` of milliseconds, wherever ``s`` lies; and a
request is granted whenever fewer than ``limit`` grants fall in ``(now - period_ms, now]``.
That is the sliding log, exact by construction. To keep it O(1) amortised per decision
and bounded in memory, grants made in the same millisecond share one entry
``[ms, count]``, so a window holds at most ``min(limit, period_ms)`` entries and each
entry is appended once and popped once.
"""

from __future__ import annotations

from collections import deque


class SlidingWindow:
    """Grants slots of one rate rule: at most ``limit`` per ``period_ms`` window."""

    __slots__ = ("_entries", "_granted", "limit", "period_ms")

    def __init__(self, *, limit: int, period_ms: int) -> None:
        self.limit = limit
        self.period_ms = period_ms
        self._entries: deque[list[int]] = deque()
        self._granted = 0

    def _expire(self, now_ms: int) -> None:
        horizon = now_ms - self.period_ms
        entries = self._entries
        while entries and entries[0][0] <= horizon:
            self._granted -= entries.popleft()[1]

    def wait_ms(self, now_ms: int) -> int:
        """0 if a slot is free at ``now_ms``, else the milliseconds until one frees."""
        self._expire(now_ms)
        excess = self._granted - self.limit
        if excess < 0:
            return 0
        # Usually one entry must leave; after the limit was lowered, possibly several.
        for stamp, count in self._entries:
            excess -= count
            if excess < 0:
                return max(1, stamp + self.period_ms - now_ms)
        return 1  # unreachable while the counts add up; kept as a safe answer

    def take(self, now_ms: int) -> None:
        """Record a grant at ``now_ms``; call only after :meth:`wait_ms` returned 0."""
        entries = self._entries
        if entries:
            last = entries[-1]
            # A clock read that went backwards (another instance) counts at the newest ms,
            # which keeps the log ordered and errs on the safe side.
            if last[0] >= now_ms:
                last[1] += 1
                self._granted += 1
                return
        entries.append([now_ms, 1])
        self._granted += 1

    def acquire(self, now_ms: int) -> int:
        """Take a slot if one is free: 0 when granted, else the milliseconds to wait."""
        wait = self.wait_ms(now_ms)
        if wait == 0:
            self.take(now_ms)
        return wait

    def entries(self) -> list[tuple[int, int]]:
        """The grants held, as ``(ms, count)`` oldest first: what a restart must keep."""
        return [(stamp, count) for stamp, count in self._entries]

    def restore(self, entries: list[tuple[int, int]]) -> None:
        """Hold ``entries`` (from :meth:`entries`) again, before any new grant."""
        for stamp, count in entries:
            self._entries.append([stamp, count])
            self._granted += count

    def in_use(self, now_ms: int) -> int:
        """Grants inside the window ending at ``now_ms``."""
        self._expire(now_ms)
        return self._granted

"""The exact sliding window: the reference arithmetic of every rate rule.

Contract: of the requests sent under one window, never more than ``limit`` are sent in any
half-open interval ``[s, s + period_ms)`` of milliseconds, wherever ``s`` lies; and a slot
is granted whenever fewer than ``limit`` slots are held at ``now``.

A slot is held in two steps, because the moment a request leaves is not the moment its
slot is granted (a connection pool, an event loop under load, a queue in between):

1. :meth:`SlidingWindow.acquire` **reserves** it: it is held, with no end yet;
2. :meth:`SlidingWindow.stamp` records when the request was sent: from then on it is held
   for ``period_ms``. :meth:`SlidingWindow.release` gives back a reservation whose request
   never left.

A slot is therefore held from its grant to ``sent + period_ms``, an interval that only
grows when the send is late; at any instant at most ``limit`` such intervals overlap, so
no ``period_ms`` window of sends can hold more than ``limit``.

To keep each decision O(1) amortised and memory bounded, slots stamped in the same
millisecond share one entry ``[ms, count]``; a window holds at most
``min(limit, period_ms)`` entries, each appended once and popped once.
"""

from __future__ import annotations

from collections import deque


class SlidingWindow:
    """Grants slots of one rate rule: at most ``limit`` per ``period_ms`` window of sends."""

    __slots__ = ("_entries", "_reserved", "_stamped", "limit", "period_ms")

    def __init__(self, *, limit: int, period_ms: int) -> None:
        self.limit = limit
        self.period_ms = period_ms
        self._entries: deque[list[int]] = deque()
        self._stamped = 0  # slots in the entries
        self._reserved = 0  # slots granted whose request has not been sent yet

    def _expire(self, now_ms: int) -> None:
        horizon = now_ms - self.period_ms
        entries = self._entries
        while entries and entries[0][0] <= horizon:
            self._stamped -= entries.popleft()[1]

    def wait_ms(self, now_ms: int) -> int:
        """0 if a slot is free at ``now_ms``, else the milliseconds until one may free.

        While reservations alone fill the window, when they free is not known yet (it
        depends on when their requests leave): the answer is then ``period_ms``, the
        earliest a reservation sent now would free.
        """
        self._expire(now_ms)
        excess = self._stamped + self._reserved - self.limit
        if excess < 0:
            return 0
        # Usually one entry must leave; after the limit was lowered, possibly several.
        for stamp, count in self._entries:
            excess -= count
            if excess < 0:
                return max(1, stamp + self.period_ms - now_ms)
        return self.period_ms

    def acquire(self, now_ms: int) -> int:
        """Reserve a slot if one is free: 0 when reserved, else the milliseconds to wait.

        A reservation must end with :meth:`stamp` (its request was sent) or
        :meth:`release` (it never was).
        """
        entries = self._entries
        # Only a full window, or one with slots to expire, needs the whole decision.
        if self._stamped + self._reserved >= self.limit or (
            entries and entries[0][0] <= now_ms - self.period_ms
        ):
            wait = self.wait_ms(now_ms)
            if wait:
                return wait
        self._reserved += 1
        return 0

    def stamp(self, sent_ms: int) -> None:
        """A reserved slot's request was sent at ``sent_ms``: it is held until
        ``sent_ms + period_ms``."""
        self._reserved -= 1
        self._record(sent_ms, 1)

    def release(self) -> None:
        """A reserved slot's request was never sent: the slot is free again."""
        self._reserved -= 1

    def _record(self, sent_ms: int, count: int) -> None:
        entries = self._entries
        if entries:
            last = entries[-1]
            # A stamp older than the newest (another clock, a restored entry) counts at the
            # newest ms: that keeps the entries ordered and only holds the slot longer.
            if last[0] >= sent_ms:
                last[1] += count
                self._stamped += count
                return
        entries.append([sent_ms, count])
        self._stamped += count

    def restore(self, entries: list[tuple[int, int]]) -> None:
        """Hold ``entries`` (``(sent_ms, count)``, oldest first) again, as after a restart."""
        for stamp, count in entries:
            self._record(stamp, count)

    def in_use(self, now_ms: int) -> int:
        """Slots held at ``now_ms``: sent inside the window, or reserved."""
        self._expire(now_ms)
        return self._stamped + self._reserved

"""The in-process backend: the reference semantics every other backend must match.

Nothing here survives the process. Every operation is atomic by construction: nothing
awaits between a check and its effect, so no other task runs in between.
"""

from __future__ import annotations

import copy
import itertools
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from sluicegate.connections import ConnectionLimits
from sluicegate.storage import Grant, Limit, QueuedCall, QueueDepth, Stored, Wait
from sluicegate.window import SlidingWindow


class MemorySlotStore:
    """Sliding windows in a dict, all-or-nothing across limits. ``holds`` tells whether a
    throttling queue holds newcomers back: calls wait in it, or it is paused (``behind``)."""

    __slots__ = ("_holds", "_paused", "_windows")

    def __init__(self, holds: Callable[[str], object] = lambda queue: False) -> None:
        self._windows: dict[str, SlidingWindow] = {}
        self._holds = holds
        self._paused: dict[str, int] = {}  # key -> paused until (ms)

    def window(self, limit: Limit) -> SlidingWindow:
        """The window of ``limit``'s key, at ``limit``'s rate (a rule edited in place keeps
        its history: the new rate applies at once)."""
        window = self._windows.get(limit.key)
        if window is None:
            window = self._windows[limit.key] = SlidingWindow(
                limit=limit.count, period_ms=limit.period_ms
            )
        elif window.limit != limit.count or window.period_ms != limit.period_ms:
            window.limit, window.period_ms = limit.count, limit.period_ms
        return window

    def acquire_now(
        self, limits: Sequence[Limit], now_ms: int, behind: str | None = None
    ) -> Grant | Wait:
        """The synchronous core of :meth:`acquire`."""
        if self._paused and (paused := self._pause_left(limits, now_ms)):
            return Wait(paused, paused=True)
        if behind is not None and self._holds(behind):
            return Wait(limits[0].period_ms)
        if len(limits) == 1:
            wait = self.window(limits[0]).acquire(now_ms)
            return Wait(wait) if wait else Grant(limits)
        windows = [self.window(limit) for limit in limits]
        wait = max(window.wait_ms(now_ms) for window in windows)
        if wait:
            return Wait(wait)
        for window in windows:
            window.acquire(now_ms)
        return Grant(limits)

    async def acquire(
        self, limits: Sequence[Limit], now_ms: int, *, behind: str | None = None
    ) -> Grant | Wait:
        return self.acquire_now(limits, now_ms, behind)

    def _pause_left(self, limits: Sequence[Limit], now_ms: int) -> int:
        """Milliseconds left of the longest pause of ``limits`` (0: none)."""
        until = max(self._paused.get(limit.key, 0) for limit in limits)
        if until > now_ms:
            return until - now_ms
        for limit in limits:  # passed: forget it
            self._paused.pop(limit.key, None)
        return 0

    def pause(self, limits: Sequence[Limit], ms: int, now_ms: int) -> None:
        for limit in limits:
            self._paused[limit.key] = max(self._paused.get(limit.key, 0), now_ms + ms)

    async def recorded(self, grant: Grant) -> None:
        return None

    def sent(self, grant: Grant, sent_ms: int) -> None:
        windows = self._windows
        for limit in grant.limits:
            windows[limit.key].stamp(sent_ms)

    def release(self, grant: Grant) -> None:
        for limit in grant.limits:
            self._windows[limit.key].release()

    async def in_use(self, key: str, now_ms: int) -> int:
        window = self._windows.get(key)
        return 0 if window is None else window.in_use(now_ms)


class MemoryQueueStore:
    """Each queue an ordered dict (taking its head is O(1)); claimed calls wait aside."""

    __slots__ = ("_claimed", "_order", "_paused", "_queues", "_seq")

    shared = False

    def __init__(self) -> None:
        self._queues: dict[str, OrderedDict[str, QueuedCall]] = {}
        self._claimed: dict[str, QueuedCall] = {}
        self._order: dict[str, int] = {}  # call id -> push sequence, to reclaim in order
        self._seq = itertools.count()
        self._paused: set[str] = set()

    async def push(self, item: QueuedCall) -> None:
        self._queues.setdefault(item.queue, OrderedDict())[item.call_id] = item
        self._order[item.call_id] = next(self._seq)

    async def claim(self, queue: str, count: int) -> list[QueuedCall]:
        if queue in self._paused:
            return []
        taken = self._take(queue, count)
        for item in taken:
            self._claimed[item.call_id] = item
        return taken

    async def purge(self, queue: str, count: int) -> list[QueuedCall]:
        taken = self._take(queue, count)
        for item in taken:
            del self._order[item.call_id]
        return taken

    def _take(self, queue: str, count: int) -> list[QueuedCall]:
        """Up to ``count`` calls off the head of ``queue``."""
        waiting = self._queues.get(queue)
        taken: list[QueuedCall] = []
        while waiting and len(taken) < count:
            taken.append(waiting.popitem(last=False)[1])
        return taken

    async def pause(self, queue: str) -> None:
        self._paused.add(queue)

    async def resume(self, queue: str) -> None:
        self._paused.discard(queue)

    def paused(self, queue: str) -> bool:
        return queue in self._paused

    def holds(self, queue: str) -> bool:
        """Whether ``queue`` holds newcomers back: calls wait in it, or it is paused."""
        return bool(self._queues.get(queue)) or queue in self._paused

    async def expire(self, queue: str, cutoff: float) -> tuple[list[QueuedCall], float | None]:
        waiting = self._queues.get(queue, OrderedDict())
        expired: list[QueuedCall] = []
        while waiting:
            head = next(iter(waiting.values()))
            if head.enqueued_at > cutoff:
                return expired, head.enqueued_at
            waiting.popitem(last=False)
            del self._order[head.call_id]
            expired.append(head)
        return expired, None

    async def remove(self, call_id: str) -> None:
        if self._order.pop(call_id, None) is None:
            return
        if self._claimed.pop(call_id, None) is None:
            for waiting in self._queues.values():
                if waiting.pop(call_id, None) is not None:
                    return

    async def unclaim(self, call_id: str) -> None:
        item = self._claimed.pop(call_id, None)
        if item is not None:
            waiting = self._queues.setdefault(item.queue, OrderedDict())
            ordered = sorted((*waiting.values(), item), key=lambda i: self._order[i.call_id])
            self._queues[item.queue] = OrderedDict((i.call_id, i) for i in ordered)

    async def reclaim(self) -> None:
        for item in self._claimed.values():
            self._queues.setdefault(item.queue, OrderedDict())[item.call_id] = item
        self._claimed.clear()
        for queue, waiting in self._queues.items():
            ordered = sorted(waiting.values(), key=lambda item: self._order[item.call_id])
            self._queues[queue] = OrderedDict((item.call_id, item) for item in ordered)

    def depth(self, queue: str) -> int:
        return len(self._queues.get(queue, ()))

    async def queues(self) -> list[QueueDepth]:
        names = [queue for queue, waiting in self._queues.items() if waiting]
        names += sorted(self._paused.difference(names))
        found = []
        for queue in names:
            waiting = self._queues.get(queue) or OrderedDict()
            head = next(iter(waiting.values()), None)
            found.append(QueueDepth(
                queue=queue, depth=len(waiting), oldest=head.enqueued_at if head else None,
                rate=head.rate if head else 0, paused=queue in self._paused,
            ))  # fmt: skip
        return found

    async def find(self, call_id: str) -> Stored | None:
        if call_id in self._claimed:
            return "claimed"
        return "queued" if call_id in self._order else None


class MemoryConfigStore:
    """Config documents in a dict, deep-copied in and out so callers cannot alias them."""

    __slots__ = ("_docs",)

    def __init__(self) -> None:
        self._docs: dict[tuple[str, str], dict[str, Any]] = {}

    async def save(self, kind: str, uid: str, doc: Mapping[str, Any]) -> None:
        self._docs[(kind, uid)] = copy.deepcopy(dict(doc))

    async def delete(self, kind: str, uid: str) -> None:
        self._docs.pop((kind, uid), None)

    async def load(self) -> list[tuple[str, dict[str, Any]]]:
        return [(kind, copy.deepcopy(doc)) for (kind, _), doc in self._docs.items()]

    async def follow(self, changed: Callable[[], Awaitable[None]]) -> None:
        return None  # nobody else writes it


class MemoryBackend:
    """Everything in process memory."""

    def __init__(self) -> None:
        self.queue = MemoryQueueStore()
        self.slots = MemorySlotStore(self.queue.holds)
        self.configs = MemoryConfigStore()
        self.connections = ConnectionLimits()

    async def recover(self, now_ms: int) -> None:
        await self.queue.reclaim()

    async def aclose(self) -> None:
        return None

"""The in-process backend: the reference semantics every other backend must match.

Nothing here survives the process; the SQLite backend adds durability for queues and
configs while keeping this slot store (one process owns its limiter).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

from sluicegate.storage import Limit, QueuedCall
from sluicegate.window import SlidingWindow


class MemorySlotStore:
    """Sliding windows in a dict. All-or-nothing across limits, atomic by construction:
    nothing here awaits, so no other task runs between the check and the grant."""

    __slots__ = ("_windows",)

    def __init__(self) -> None:
        self._windows: dict[str, SlidingWindow] = {}

    def _window(self, limit: Limit) -> SlidingWindow:
        window = self._windows.get(limit.key)
        if window is None:
            window = self._windows[limit.key] = SlidingWindow(
                limit=limit.count, period_ms=limit.period_ms
            )
        elif window.limit != limit.count or window.period_ms != limit.period_ms:
            # A rule edited in place keeps its history: the new rate applies at once.
            window.limit, window.period_ms = limit.count, limit.period_ms
        return window

    def acquire_now(self, limits: Sequence[Limit], now_ms: int) -> int:
        """The synchronous core of :meth:`acquire`, for callers already on the hot path."""
        if len(limits) == 1:
            return self._window(limits[0]).acquire(now_ms)
        windows = [self._window(limit) for limit in limits]
        wait = max(window.wait_ms(now_ms) for window in windows)
        if wait == 0:
            for window in windows:
                window.take(now_ms)
        return wait

    async def acquire(self, limits: Sequence[Limit], now_ms: int) -> int:
        return self.acquire_now(limits, now_ms)

    def snapshot(self) -> list[tuple[str, int, int, list[tuple[int, int]]]]:
        """Every window with grants: key, limit, period, grants. Grants already out of
        their window are dropped by the window's first decision after a restore."""
        return [
            (key, window.limit, window.period_ms, entries)
            for key, window in self._windows.items()
            if (entries := window.entries())
        ]

    def restore(self, windows: list[tuple[str, int, int, list[tuple[int, int]]]]) -> None:
        """Take back windows from :meth:`snapshot`, so a restart does not forget grants."""
        for key, limit, period_ms, entries in windows:
            window = self._windows[key] = SlidingWindow(limit=limit, period_ms=period_ms)
            window.restore(entries)

    def in_use(self, key: str, now_ms: int) -> int:
        """Grants in the current window of ``key`` (0 for a key never used)."""
        window = self._windows.get(key)
        return 0 if window is None else window.in_use(now_ms)


class MemoryQueueStore:
    """A dict in insertion order: durable for as long as the process lives."""

    __slots__ = ("_items",)

    def __init__(self) -> None:
        self._items: dict[str, QueuedCall] = {}

    async def push(self, item: QueuedCall) -> None:
        self._items[item.call_id] = item

    async def remove(self, call_id: str) -> None:
        self._items.pop(call_id, None)

    async def pending(self) -> list[QueuedCall]:
        return list(self._items.values())


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


class MemoryBackend:
    """Everything in process memory."""

    def __init__(self) -> None:
        self.slots = MemorySlotStore()
        self.queue = MemoryQueueStore()
        self.configs = MemoryConfigStore()

    async def aclose(self) -> None:
        return None

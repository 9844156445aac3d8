"""A call submitted without waiting for its end: its id, where it stands, its result.

Handles are what a caller keeps while calls wait in a throttling queue (possibly a great
many of them), so each costs the gate few objects: its future, one weak reference and the
handle itself. Every one of those is tracked by the garbage collector, whose full
collections walk them all.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable, Container, Iterable
from typing import Literal

from sluicegate.outcomes import CallResult

#: Where a call stands: waiting in a throttling queue (stored, so it survives a restart),
#: running (it has its slots), or done.
CallState = Literal["queued", "running", "done"]


class CallHandle:
    """The caller's view of a call that runs in the background.

    The handle holds the future of the call's result; the gate keeps only a weak reference
    to it, so a call whose handle is dropped (a caller that does not wait) holds nothing in
    memory while it waits in a queue.
    """

    __slots__ = ("_future", "_queued", "_running", "call_id")

    def __init__(
        self,
        call_id: str,
        future: asyncio.Future[CallResult],
        *,
        queued: bool,
        running: Container[str],
    ) -> None:
        self.call_id = call_id
        self._future = future
        self._queued = queued
        self._running = running

    @property
    def state(self) -> CallState:
        if self._future.done():
            return "done"
        if not self._queued or self.call_id in self._running:
            return "running"
        return "queued"

    def done(self) -> bool:
        return self._future.done()

    async def result(self) -> CallResult:
        """Wait for the call to end; cancelling this wait does not cancel the call."""
        return await asyncio.shield(self._future)


async def ended(handles: Iterable[CallHandle]) -> None:
    """Wait until every one of ``handles`` has ended. Cancelling this wait cancels none of
    the calls, and it takes no task per call: a batch waits for hundreds at once."""
    futures = {handle._future for handle in handles if not handle.done()}
    if futures:
        await asyncio.wait(futures)


class _Ref(weakref.ref[asyncio.Future[CallResult]]):
    """A weak reference to the future of a call's result that names the call: one shared
    callback serves them all (a callback per call would be two more objects per call)."""

    __slots__ = ("call_id",)
    call_id: str


class Waiters:
    """The futures of the results someone waits for, by call id, held weakly: a dropped
    handle frees its own (and its entry here). One future per call, shared."""

    __slots__ = ("_dropped", "_refs")

    def __init__(self) -> None:
        self._refs: dict[str, _Ref] = {}
        self._dropped: Callable[[_Ref], None] = self._forget  # bound once, for every ref

    def __bool__(self) -> bool:
        return bool(self._refs)

    def future(self, call_id: str) -> asyncio.Future[CallResult]:
        """The future of ``call_id``'s result, shared by everyone who waits for it."""
        ref = self._refs.get(call_id)
        future = None if ref is None else ref()
        if future is None:
            future = asyncio.get_running_loop().create_future()
            ref = self._refs[call_id] = _Ref(future, self._dropped)
            ref.call_id = call_id
        return future

    def pop(self, call_id: str) -> asyncio.Future[CallResult] | None:
        """The future of ``call_id`` if someone holds it; it is forgotten either way."""
        ref = self._refs.pop(call_id, None)
        return None if ref is None else ref()

    def cancel(self) -> None:
        """Cancel every future still held (the gate is closing), and forget them."""
        for ref in self._refs.values():
            if (future := ref()) is not None and not future.done():
                future.cancel()
        self._refs.clear()

    def _forget(self, ref: _Ref) -> None:
        """Nobody holds the future of ``ref.call_id`` any more: forget it."""
        if self._refs.get(ref.call_id) is ref:
            del self._refs[ref.call_id]

"""A call submitted without waiting for its end: its id, where it stands, its result."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
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
        running: Callable[[str], bool],
    ) -> None:
        self.call_id = call_id
        self._future = future
        self._queued = queued
        self._running = running

    @property
    def state(self) -> CallState:
        if self._future.done():
            return "done"
        if not self._queued or self._running(self.call_id):
            return "running"
        return "queued"

    def done(self) -> bool:
        return self._future.done()

    async def result(self) -> CallResult:
        """Wait for the call to end; cancelling this wait does not cancel the call."""
        return await asyncio.shield(self._future)

"""A call submitted without waiting for its end: its id, its state, its result."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, Literal

from sluicegate.outcomes import CallResult

State = Literal["queued", "running", "done"]


class CallHandle:
    """The caller's view of a call that runs in the background.

    ``state`` is ``queued`` while the call waits in a throttling queue (already journaled,
    so it survives a restart), ``running`` once it has its slots, ``done`` at the end.
    """

    def __init__(self, call_id: str) -> None:
        self.call_id = call_id
        self.state: State = "queued"
        self._accepted = asyncio.Event()
        self._result: asyncio.Future[CallResult] = asyncio.get_running_loop().create_future()

    def done(self) -> bool:
        return self._result.done()

    async def result(self) -> CallResult:
        """Wait for the call to end; cancelling this wait does not cancel the call."""
        return await asyncio.shield(self._result)

    async def accepted(self) -> None:
        """Wait until the call is journaled in a queue, running, or over."""
        await self._accepted.wait()

    def accept(self, state: State) -> None:
        """Record progress; the first change lets :meth:`accepted` return."""
        self.state = state
        self._accepted.set()

    def run(self, work: Coroutine[Any, Any, CallResult]) -> asyncio.Task[CallResult]:
        """Run ``work`` as this call; its result, error or cancellation becomes the handle's."""
        task = asyncio.create_task(work, name=f"call {self.call_id}")

        def ended(task: asyncio.Task[CallResult]) -> None:
            self.accept("done")
            if task.cancelled():
                self._result.cancel()
            elif (exc := task.exception()) is not None:
                self._result.set_exception(exc)
            else:
                self._result.set_result(task.result())

        task.add_done_callback(ended)
        return task

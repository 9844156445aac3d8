"""Time as a parameter.

Everything that reads the time or waits takes a :class:`Clock`. The real one is
:class:`SystemClock`; :class:`sluicegate.testing.FakeClock` lets tests move time by hand,
so no test sleeps to make time pass.

Times are seconds since the Unix epoch, as floats. Queued calls are stored with their
enqueue time and must expire 6 hours later even across a restart, so the clock has to be
wall-clock based; :class:`SystemClock` anchors the epoch once and then advances with the
monotonic clock, so a wall-clock step never makes time run backwards inside a process.
"""

from __future__ import annotations

import asyncio
import time
from contextlib import AbstractAsyncContextManager
from typing import Protocol


class Clock(Protocol):
    """The source of time and of waiting."""

    def now(self) -> float:
        """Seconds since the epoch; never decreases within a process."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` of this clock's time."""
        ...

    def deadline(self, when: float) -> AbstractAsyncContextManager[object]:
        """Cancel the enclosed block at ``when`` (clock time) and raise ``TimeoutError``."""
        ...


class SystemClock:
    """The real clock: the epoch read once, then the monotonic clock."""

    __slots__ = ("_offset",)

    def __init__(self) -> None:
        self._offset = time.time() - time.monotonic()

    def now(self) -> float:
        return self._offset + time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))

    def deadline(self, when: float) -> AbstractAsyncContextManager[object]:
        # asyncio's timeouts run on the loop's monotonic clock; translate once.
        loop = asyncio.get_running_loop()
        return asyncio.timeout_at(loop.time() + (when - self.now()))

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
import math
import time
from contextlib import AbstractAsyncContextManager
from types import TracebackType
from typing import Protocol

#: Deadlines of the system clock fire within this many seconds after they pass.
RESOLUTION = 0.005


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

    __slots__ = ("_offset", "_wheel")

    def __init__(self) -> None:
        self._offset = time.time() - time.monotonic()
        self._wheel: _Wheel | None = None

    def now(self) -> float:
        return self._offset + time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))

    def deadline(self, when: float) -> AbstractAsyncContextManager[object]:
        loop = asyncio.get_running_loop()
        wheel = self._wheel
        if wheel is None or wheel.loop is not loop:
            wheel = self._wheel = _Wheel(loop)
        # asyncio's loop runs on the monotonic clock; translate once.
        return _Deadline(wheel, loop.time() + (when - self.now()))


class _Wheel:
    """The deadlines of one event loop, in slices of :data:`RESOLUTION` seconds.

    Every call has a deadline and most end long before it. One loop timer per call
    costs several microseconds (it is scheduled, then cancelled); one timer per slice
    shared by every deadline in it makes that cost vanish at high call rates, for a
    deadline that fires up to one slice late.
    """

    __slots__ = ("_slices", "loop")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._slices: dict[int, set[_Deadline]] = {}

    def add(self, when: float, deadline: _Deadline) -> int:
        index = math.ceil(when / RESOLUTION)
        members = self._slices.get(index)
        if members is None:
            members = self._slices[index] = set()
            self.loop.call_at(index * RESOLUTION, self._fire, index)
        members.add(deadline)
        return index

    def discard(self, index: int, deadline: _Deadline) -> None:
        members = self._slices.get(index)
        if members is not None:
            members.discard(deadline)

    def _fire(self, index: int) -> None:
        for deadline in self._slices.pop(index, ()):
            deadline.expire()


class _Deadline:
    """``asyncio.timeout`` as the wheel needs it: no timer of its own, and no more than a
    deadline's work (it is entered and left on every call).

    As with ``asyncio.timeout``: at expiry the task is cancelled; leaving the block with
    that cancellation, and no other request to cancel since it was entered, raises
    ``TimeoutError`` instead.
    """

    __slots__ = ("_cancelling", "_expired", "_index", "_task", "_wheel", "_when")

    def __init__(self, wheel: _Wheel, when: float) -> None:
        self._wheel = wheel
        self._when = when
        self._expired = False

    async def __aenter__(self) -> None:
        task = asyncio.current_task()
        if task is None:
            raise RuntimeError("a deadline must be entered inside a task")
        self._task = task
        self._cancelling = task.cancelling()
        self._index = self._wheel.add(self._when, self)

    def expire(self) -> None:
        self._expired = True
        self._task.cancel()

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._wheel.discard(self._index, self)
        # uncancel() once for our own cancel, whatever ends the block; then no other
        # cancel request since the entry: the cancellation was ours, a timeout.
        expired = self._expired and self._task.uncancel() <= self._cancelling
        if expired and kind is asyncio.CancelledError:
            raise TimeoutError from exc

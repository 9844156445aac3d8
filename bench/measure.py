"""Repeated measurements and the event loop every benchmark runs on."""

from __future__ import annotations

import asyncio
import signal
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata


@dataclass(frozen=True, slots=True)
class Series:
    """The values of one quantity over the timed repetitions (warm-up excluded)."""

    values: tuple[float, ...]

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    @property
    def low(self) -> float:
        return min(self.values)

    @property
    def high(self) -> float:
        return max(self.values)


def _uvloop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        import uvloop
    except ImportError:  # not built for every platform: the default loop then
        return None
    return uvloop.new_event_loop


def runner() -> asyncio.Runner:
    """A runner on uvloop when it is installed, as a production client would use."""
    return asyncio.Runner(loop_factory=_uvloop_factory())


def uvloop_version() -> str | None:
    """The version of the uvloop :func:`runner` uses, or None when it uses asyncio's loop."""
    return None if _uvloop_factory() is None else metadata.version("uvloop")


def interruptible() -> None:
    """Make SIGTERM, and SIGINT even in a process started in the background (which ignores
    it), raise KeyboardInterrupt: a benchmark stopped either way leaves through the blocks
    that stop the processes it started."""
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    signal.signal(signal.SIGINT, signal.default_int_handler)

"""Repeated measurements and the event loop every benchmark runs on."""

from __future__ import annotations

import asyncio
import statistics
from collections.abc import Callable
from dataclasses import dataclass

try:
    import uvloop
except ImportError:  # uvloop is not built for every platform; the default loop then
    uvloop = None


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


def runner() -> asyncio.Runner:
    """A runner on uvloop when it is installed, as a production client would use."""
    factory: Callable[[], asyncio.AbstractEventLoop] | None = None
    if uvloop is not None:
        factory = uvloop.new_event_loop
    return asyncio.Runner(loop_factory=factory)


def uvloop_version() -> str | None:
    return None if uvloop is None else str(uvloop.__version__)

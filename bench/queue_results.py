"""What the queue at scale yields, and how its drain is judged.

Both ways in (:mod:`queue_library`, :mod:`queue_service`) queue calls behind the same
throttling rule (:func:`rule`, :data:`RATE` per :data:`PERIOD`) in the same org, and
report the same figures: a :class:`Side`. The judgement of what reached the external
system, :func:`drain`, is pure code over ``(time, call number)`` arrivals and the order
read from the stopped gate's file (:func:`read_store`), so that both sides are judged alike
and the judgement can be checked without a run.
"""

from __future__ import annotations

import bisect
import sqlite3
from collections.abc import Sequence
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from machine import Interference
from sluicegate.matching import CACHE_SIZE
from sluicegate.settings import Settings
from sluicegate.testing import most_in_window

RATE = 200  # maxThroughput of the rule: the lowest a throttling rule may have
PERIOD = 1.0  # seconds: a throttling rule's window
ORG, SANDBOX, JOURNEY = "demo", "prod", "bench"  # the service's development org
#: Wait after a stop before restarting: the slots taken before the stop (restored at the
#: start) have left their window, so the time to the first call is the restart's own.
QUIET = PERIOD + Settings().send_guard_ms / 1000 + 0.1
#: The in-memory design's figure: bytes still held per queued call (its task, coroutine
#: frames, handle and journal entry), by tracemalloc, memory backend, 10,000 calls
#: (bench/queue_memory.py, since removed), in the run of 2026-11-26 01:02 UTC at commit
#: e9e22fc, published in docs/benchmarks.md by commit 52e82bc. It cannot be measured
#: again: that design is gone.
IN_MEMORY_BYTES = 3_862
IN_MEMORY_SOURCE = (
    "measured by bench/queue_memory.py with tracemalloc on the memory backend, 10,000 "
    "calls, in the run of 2026-11-26 01:02 UTC at commit e9e22fc"
)
#: Calls before the first memory reading. The first RATE go straight out, the others queue;
#: and every call here has a URL of its own, so they also fill the engine's bounded caches
#: keyed by URL (rule resolution keeps the last CACHE_SIZE): a fixed cost, paid once,
#: which the growth per queued call measured after it leaves out.
WARMUP = 2 * CACHE_SIZE


def rule(base: str) -> dict[str, Any]:
    """The throttling config every side deploys: POST on ``<base>/ok/*``, RATE per second."""
    return {"name": "bench", "urlPattern": f"{base}/ok/*", "methods": ["POST"],
            "maxThroughput": RATE}  # fmt: skip


def warmup(calls: int) -> int:
    """Calls made before the first memory reading (at most half of them): WARMUP."""
    return min(calls // 2, WARMUP)


def head(seconds: float) -> int:
    """Stored calls whose order is read: more than can leave the queue after a restart."""
    return int(RATE * (seconds + 60))


@dataclass(frozen=True, slots=True)
class Enqueue:
    """The timed part of an enqueue (after a warm-up), and the enqueuing process's CPU."""

    calls: int
    seconds: float
    cpu_seconds: float  # of the process that holds the gate

    @property
    def rate(self) -> float:
        return self.calls / self.seconds

    @property
    def load(self) -> float:
        """CPU seconds per wall second of the gate's process (1.0: one busy core)."""
        return self.cpu_seconds / self.seconds


@dataclass(frozen=True, slots=True)
class Memory:
    """Resident memory of the gate's process around the timed enqueue, and the store."""

    rss_open: int  # bytes, the gate open and its rule deployed, before any call
    rss_before: int  # bytes, after the warm-up
    rss_after: int  # bytes, with every call queued
    peak: int  # bytes, the process's highest RSS (see machine.Peak)
    queued_before: int  # calls waiting when rss_before was read
    queued_after: int
    stored: int  # calls in the data directory after the graceful stop
    disk: int  # bytes of the data directory then

    @property
    def per_call(self) -> float:
        """RSS growth per call added to the queue."""
        return (self.rss_after - self.rss_before) / (self.queued_after - self.queued_before)

    @property
    def disk_per_call(self) -> float:
        return self.disk / self.stored


@dataclass(frozen=True, slots=True)
class Restart:
    """A graceful stop with every call queued, then a new process on the same directory."""

    stop_seconds: float  # the graceful stop
    queued: int  # calls stored when the new process started
    ready_seconds: float  # process start -> gate open (library) / first answer (service)
    start_seconds: float | None  # process start -> its main() runs: Python and imports
    open_seconds: float | None  # the Gate.open call alone (library)
    first_seconds: float  # process start -> the first queued call at the external system
    rss: int  # bytes, the new process once ready, every call still queued


@dataclass(frozen=True, slots=True)
class Drain:
    """What reached the external system after the restart."""

    arrivals: int  # in the `seconds` from the first one
    seconds: float
    period: float  # the mean time from an arrival to the RATE-th after it
    closest: float  # the shortest such time: >= PERIOD when no window held more than RATE
    most_in_window: int  # in any 1000 ms window, over the whole run (before the restart too)
    inversions: int  # pairs of calls that arrived in the opposite order to their queue's
    late: int  # calls that arrived after one queued behind them
    late_by: float  # the most seconds by which one of those did
    skipped: int  # calls not arrived although one queued behind them did
    foreign: int  # arrivals that were not among the head of the stored queue
    repeated: int  # calls delivered again after the restart (at least once)

    @property
    def rate(self) -> float:
        """Calls per second in the long run: RATE every ``period``."""
        return RATE / self.period

    @property
    def utilisation(self) -> float:
        """The drain rate over the rule's rate."""
        return self.rate * PERIOD / RATE


@dataclass(frozen=True, slots=True)
class Side:
    """One way in: ``gate.submit`` in process, or ``POST /v1/calls`` of the service."""

    name: str
    calls: int  # enqueued in all, warm-up included
    concurrency: int
    enqueue: Enqueue
    memory: Memory
    restart: Restart
    drain: Drain


@dataclass(frozen=True, slots=True)
class Scale:
    library: Side
    service: Side
    seconds: float
    interference: Interference | None


# ---- what reached the external system ----------------------------------------------------


def inversions(ranks: Sequence[int]) -> int:
    """Pairs ``i < j`` with ``ranks[i] > ranks[j]``."""
    seen: list[int] = []
    found = 0
    for rank in ranks:
        found += len(seen) - bisect.bisect_right(seen, rank)
        bisect.insort(seen, rank)
    return found


@dataclass(frozen=True, slots=True)
class Stored:
    """The queue a gate left in its data directory when it stopped."""

    calls: int
    disk: int  # bytes of every file in the directory
    rank: dict[int, int]  # call number -> place in the queue, for the head of the queue


def read_store(data: Path, head: int) -> Stored:
    """Count the stored calls and read the order of the first ``head`` (no gate open)."""
    disk = sum(path.stat().st_size for path in data.iterdir() if path.is_file())
    with closing(sqlite3.connect(data / "sluicegate.db")) as conn:
        (calls,) = conn.execute("SELECT count(*) FROM queued_calls").fetchone()
        rows = conn.execute("SELECT url FROM queued_calls ORDER BY seq LIMIT ?", (head,))
        rank = {int(url.rsplit("/", 1)[1]): i for i, (url,) in enumerate(rows)}
    return Stored(calls=calls, disk=disk, rank=rank)


def drain(
    before: Sequence[tuple[float, int]],
    after: Sequence[tuple[float, int]],
    rank: dict[int, int],
    seconds: float,
) -> Drain:
    """Judge the arrivals ``after`` a restart (``before`` it: the same run, earlier), each
    ``(time, call number)``, against the queue's order ``rank`` (call number -> place)."""
    after = sorted(after)
    times = [at for at, _ in after]
    first: dict[int, float] = {}  # place in the queue -> first arrival, in arrival order
    for at, n in after:
        if n in rank:
            first.setdefault(rank[n], at)
    seen: list[tuple[int, float]] = []
    highest, late, late_by = -1, 0, 0.0
    for place, at in first.items():
        if place < highest:  # a call queued behind it arrived first
            late += 1
            late_by = max(late_by, at - min(t for p, t in seen if p > place))
        highest = max(highest, place)
        seen.append((place, at))
    spans = [b - a for a, b in zip(times, times[RATE:], strict=False)]
    earlier = {n for _, n in before}
    return Drain(
        arrivals=sum(t < times[0] + seconds for t in times) if times else 0,
        seconds=seconds,
        period=sum(spans) / len(spans) if spans else float("nan"),
        closest=min(spans, default=float("nan")),
        most_in_window=most_in_window([at for at, _ in [*before, *after]], PERIOD),
        inversions=inversions(list(first)),
        late=late,
        late_by=late_by,
        skipped=highest + 1 - len(first),
        foreign=sum(n not in rank for _, n in after),
        repeated=sum(n in earlier for _, n in after),
    )

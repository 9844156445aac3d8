"""Counting every outcome: per org, sandbox, journey, service, endpoint and outcome.

A :class:`Reporter` receives each finished call exactly once. What is counted is a
:class:`Tally`: calls, attempts, retries and slots, latency and queue-time histograms
(percentiles are read from them) and the sums of both times (averages are exact). Two
choices, stated once:

* latency (``execution_ms``) is counted only for calls that made at least one attempt. A
  call capped, blocked or expired before any attempt has no latency; counting its 0 ms
  would drag the percentiles of a capped endpoint down to nothing;
* queue time is counted for every call; a call that was not queued waited 0 ms.

:class:`Counters` keeps tallies in memory; the service keeps them in time buckets.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from sluicegate.call import Call
from sluicegate.outcomes import CallResult, Outcome

#: Upper bounds of the histogram buckets, in milliseconds; the last bucket is unbounded.
BOUNDS_MS = (1, 2, 5, 10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 30_000, 60_000,
             300_000, 3_600_000, 21_600_000)  # fmt: skip
#: The same as floats, for the search: times are floats, and a float compares with a float
#: twice as fast as with an int (every call is counted in two histograms).
_FLOAT_BOUNDS = tuple(float(bound) for bound in BOUNDS_MS)


class Reporter(Protocol):
    """Receives every finished call once."""

    def record(self, call: Call, result: CallResult) -> None:
        """Keep ``result`` (at once, without awaiting: it runs where the call ends)."""
        ...

    async def written(self) -> None:
        """Return once what was recorded so far would survive a crash. A call taken from a
        queue leaves it only then, so that its result is never lost to a crash; a reporter
        that keeps nothing durable returns at once."""
        ...


@dataclass(slots=True)
class Histogram:
    """Counts per bucket of :data:`BOUNDS_MS`; percentiles read the bucket's upper bound."""

    counts: list[int] = field(default_factory=lambda: [0] * (len(BOUNDS_MS) + 1))
    total: int = 0

    def add(self, value_ms: float) -> None:
        self.counts[bisect.bisect_left(_FLOAT_BOUNDS, value_ms)] += 1
        self.total += 1

    def merge(self, other: Histogram) -> None:
        for i, count in enumerate(other.counts):
            self.counts[i] += count
        self.total += other.total

    def percentile(self, q: float) -> float | None:
        """The smallest bucket bound below which ``q`` (0..1) of the values fall."""
        if not self.total:
            return None
        rank = q * self.total
        seen = 0
        for i, count in enumerate(self.counts):
            seen += count
            if seen >= rank and count:
                return float(BOUNDS_MS[i]) if i < len(BOUNDS_MS) else float(BOUNDS_MS[-1])
        return float(BOUNDS_MS[-1])


@dataclass(frozen=True, slots=True, kw_only=True)
class Key:
    """What one row of counts is about."""

    org: str
    sandbox: str
    journey: str
    service: str
    endpoint: str
    outcome: Outcome


HISTOGRAM_SIZE = len(BOUNDS_MS) + 1
_TOTALS = ("calls", "attempts", "retries", "slots", "latency_sum_ms", "queued_sum_ms")
#: The names of a tally's counts, in the order of :meth:`Tally.values` (a stored bucket's
#: columns).
COUNT_COLUMNS: tuple[str, ...] = (
    *_TOTALS,
    *(f"latency_{i}" for i in range(HISTOGRAM_SIZE)),
    *(f"queued_{i}" for i in range(HISTOGRAM_SIZE)),
)


@dataclass(slots=True)
class Tally:
    """Counts of the calls that ended in one bucket (or in a sum of buckets)."""

    calls: int = 0
    attempts: int = 0
    retries: int = 0
    slots: int = 0
    latency_sum_ms: float = 0.0
    queued_sum_ms: float = 0.0
    latency: Histogram = field(default_factory=Histogram)
    queued: Histogram = field(default_factory=Histogram)

    def add(self, result: CallResult) -> None:
        """Count one finished call."""
        self.calls += 1
        self.attempts += result.attempts
        self.retries += result.retries
        self.slots += result.slots
        if result.attempts:
            self.latency.add(result.execution_ms)
            self.latency_sum_ms += result.execution_ms
        self.queued.add(result.queued_ms)
        self.queued_sum_ms += result.queued_ms

    def merge(self, other: Tally) -> None:
        self.calls += other.calls
        self.attempts += other.attempts
        self.retries += other.retries
        self.slots += other.slots
        self.latency_sum_ms += other.latency_sum_ms
        self.queued_sum_ms += other.queued_sum_ms
        self.latency.merge(other.latency)
        self.queued.merge(other.queued)

    def values(self) -> tuple[float, ...]:
        """The counts in :data:`COUNT_COLUMNS` order."""
        return (
            self.calls, self.attempts, self.retries, self.slots,
            self.latency_sum_ms, self.queued_sum_ms, *self.latency.counts, *self.queued.counts,
        )  # fmt: skip

    @classmethod
    def from_values(cls, values: Sequence[float]) -> Tally:
        """The tally whose :meth:`values` are ``values`` (a row of ``SUM``\\ s, say)."""
        if len(values) != len(COUNT_COLUMNS):
            raise ValueError(f"want {len(COUNT_COLUMNS)} counts, got {len(values)}")
        calls, attempts, retries, slots, latency_sum, queued_sum = values[: len(_TOTALS)]
        latency = [int(v) for v in values[len(_TOTALS) : len(_TOTALS) + HISTOGRAM_SIZE]]
        queued = [int(v) for v in values[len(_TOTALS) + HISTOGRAM_SIZE :]]
        return cls(
            calls=int(calls), attempts=int(attempts), retries=int(retries), slots=int(slots),
            latency_sum_ms=float(latency_sum), queued_sum_ms=float(queued_sum),
            latency=Histogram(counts=latency, total=sum(latency)),
            queued=Histogram(counts=queued, total=sum(queued)),
        )  # fmt: skip

    def average_latency_ms(self) -> float | None:
        return self.latency_sum_ms / self.latency.total if self.latency.total else None

    def average_queued_ms(self) -> float | None:
        return self.queued_sum_ms / self.queued.total if self.queued.total else None


class Counters:
    """The in-memory reporter: a row of counts per :class:`Key`."""

    __slots__ = ("_rows",)

    def __init__(self) -> None:
        # Keyed by plain tuples in Key's field order: recording runs once per call, and a
        # tuple hashes far faster than a frozen dataclass.
        self._rows: dict[tuple[str, str, str, str, str, Outcome], Tally] = {}

    @property
    def rows(self) -> dict[Key, Tally]:
        return {Key(org=o, sandbox=s, journey=j, service=v, endpoint=e, outcome=x): row
                for (o, s, j, v, e, x), row in self._rows.items()}  # fmt: skip

    def record(self, call: Call, result: CallResult) -> None:
        # ``_value_``, not ``value``: an enum's ``value`` is a Python-level property.
        key = (call.org, call.sandbox, call.journey, call.service._value_, result.endpoint,
               result.outcome)  # fmt: skip
        tally = self._rows.get(key)
        if tally is None:
            tally = self._rows[key] = Tally()
        tally.add(result)

    def outcomes(self, **match: str) -> dict[Outcome, int]:
        """Calls per outcome among the rows whose key fields equal ``match``."""
        totals: dict[Outcome, int] = {}
        for key, row in self._select(match):
            totals[key.outcome] = totals.get(key.outcome, 0) + row.calls
        return totals

    def total(self, **match: str) -> Tally:
        """One tally adding up every row whose key fields equal ``match``."""
        total = Tally()
        for _, row in self._select(match):
            total.merge(row)
        return total

    def _select(self, match: dict[str, str]) -> Iterable[tuple[Key, Tally]]:
        for key, row in self.rows.items():
            if all(getattr(key, name) == value for name, value in match.items()):
                yield key, row

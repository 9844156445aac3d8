"""Counting every outcome: per org, sandbox, journey, service, endpoint and outcome.

A :class:`Reporter` receives each finished call exactly once. :class:`Counters` is the
in-memory one: call, attempt, retry and slot counts plus latency and queue-time
histograms, from which percentiles are read. Persisting them comes with the service.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol

from sluicegate.call import Call
from sluicegate.outcomes import CallResult, Outcome

#: Upper bounds of the histogram buckets, in milliseconds; the last bucket is unbounded.
BOUNDS_MS = (1, 2, 5, 10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 30_000, 60_000,
             300_000, 3_600_000, 21_600_000)  # fmt: skip


class Reporter(Protocol):
    """Receives every finished call once."""

    def record(self, call: Call, result: CallResult) -> None: ...


@dataclass(slots=True)
class Histogram:
    """Counts per bucket of :data:`BOUNDS_MS`; percentiles read the bucket's upper bound."""

    counts: list[int] = field(default_factory=lambda: [0] * (len(BOUNDS_MS) + 1))
    total: int = 0

    def add(self, value_ms: float) -> None:
        self.counts[bisect.bisect_left(BOUNDS_MS, value_ms)] += 1
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


@dataclass(slots=True)
class Row:
    """Counts for one :class:`Key`."""

    calls: int = 0
    attempts: int = 0
    retries: int = 0
    slots: int = 0
    latency: Histogram = field(default_factory=Histogram)
    queued: Histogram = field(default_factory=Histogram)

    def merge(self, other: Row) -> None:
        self.calls += other.calls
        self.attempts += other.attempts
        self.retries += other.retries
        self.slots += other.slots
        self.latency.merge(other.latency)
        self.queued.merge(other.queued)


class Counters:
    """The in-memory reporter: a row of counts per :class:`Key`."""

    __slots__ = ("_rows",)

    def __init__(self) -> None:
        # Keyed by plain tuples in Key's field order: recording runs once per call, and a
        # tuple hashes far faster than a frozen dataclass.
        self._rows: dict[tuple[str, str, str, str, str, Outcome], Row] = {}

    @property
    def rows(self) -> dict[Key, Row]:
        return {Key(org=o, sandbox=s, journey=j, service=v, endpoint=e, outcome=x): row
                for (o, s, j, v, e, x), row in self._rows.items()}  # fmt: skip

    def record(self, call: Call, result: CallResult) -> None:
        key = (call.org, call.sandbox, call.journey, call.service.value, result.endpoint,
               result.outcome)  # fmt: skip
        row = self._rows.get(key)
        if row is None:
            row = self._rows[key] = Row()
        row.calls += 1
        row.attempts += result.attempts
        row.retries += result.retries
        row.slots += result.slots
        row.latency.add(result.execution_ms)
        row.queued.add(result.queued_ms)

    def outcomes(self, **match: str) -> dict[Outcome, int]:
        """Calls per outcome among the rows whose key fields equal ``match``."""
        totals: dict[Outcome, int] = {}
        for key, row in self._select(match):
            totals[key.outcome] = totals.get(key.outcome, 0) + row.calls
        return totals

    def total(self, **match: str) -> Row:
        """One row adding up every row whose key fields equal ``match``."""
        total = Row()
        for _, row in self._select(match):
            total.merge(row)
        return total

    def _select(self, match: dict[str, str]) -> Iterable[tuple[Key, Row]]:
        for key, row in self.rows.items():
            if all(getattr(key, name) == value for name, value in match.items()):
                yield key, row

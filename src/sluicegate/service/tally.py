"""What one report bucket counts: a :class:`Tally`, and its layout as database columns.

A tally holds calls, attempts, retries and slots, a latency and a queue-time histogram
(:data:`~sluicegate.reporting.BOUNDS_MS` buckets) and the sums of both times, so averages
and Prometheus ``_sum`` samples are exact while percentiles are read from the buckets.

Two choices, stated once:

* latency (``execution_ms``) is counted only for calls that made at least one attempt. A
  call capped, blocked or expired before any attempt has no latency; counting its 0 ms
  would drag the percentiles of a capped endpoint down to nothing;
* queue time is counted for every call; a call that was not queued waited 0 ms.

Every count is a column of its own (:data:`COUNT_COLUMNS`), so SQLite adds tallies up with
``SUM`` and an upsert merges a batch into a stored bucket without reading it first.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from sluicegate.outcomes import CallResult
from sluicegate.reporting import BOUNDS_MS, Histogram

HISTOGRAM_SIZE = len(BOUNDS_MS) + 1
_TOTALS = ("calls", "attempts", "retries", "slots", "latency_sum_ms", "queued_sum_ms")
#: The count columns of a stored bucket, in the order of :meth:`Tally.values`.
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

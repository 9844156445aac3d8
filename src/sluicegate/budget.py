"""The timeout budget of one call: the journey's ``timeoutSeconds`` from the slot grant on.

One budget covers every attempt and every wait between them. Time in the throttling
queue does not count: the budget starts only when the call has its slots.
"""

from __future__ import annotations

from typing import NamedTuple

from sluicegate.clock import Clock


class Budget(NamedTuple):
    """A deadline on a clock. Immutable: a call's budget never grows or shrinks.
    (A named tuple rather than a dataclass: one is made for every call.)"""

    clock: Clock
    started: float
    deadline: float

    @classmethod
    def start(cls, clock: Clock, seconds: float) -> Budget:
        now = clock.now()
        return cls(clock, now, now + seconds)

    def fits(self, wait: float) -> bool:
        """Whether waiting ``wait`` seconds still leaves time for an attempt."""
        return self.clock.now() + wait < self.deadline

    def elapsed_ms(self) -> float:
        return (self.clock.now() - self.started) * 1000.0

"""The backend protocols: small sets of atomic domain operations.

Each backend (``backends/memory.py``, ``backends/sqlite.py``, ...) implements these.
The memory backend is the reference semantics; one contract suite runs on every backend.
Backends never read the time: ``now_ms`` is passed in, so a fake clock drives them all.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from sluicegate.call import Call


@dataclass(frozen=True, slots=True, kw_only=True)
class Limit:
    """One sliding-window rate: at most ``count`` grants in any ``period_ms`` window of ``key``."""

    key: str
    count: int
    period_ms: int


class SlotStore(Protocol):
    """Grants slots of exact sliding-window rate rules."""

    async def acquire(self, limits: Sequence[Limit], now_ms: int) -> int:
        """Take one slot from every limit, or from none.

        Returns 0 when granted; otherwise the milliseconds after which a retry could
        succeed (at least 1), so a waiting queue knows when to look again.
        """
        ...


@dataclass(frozen=True, slots=True, kw_only=True)
class QueuedCall:
    """A call waiting in a throttling queue, as it is stored durably.

    ``rate`` is the queue's ``maxThroughput`` when the call was queued, so a queue whose
    config is gone after a restart still drains at its last deployed rate.
    """

    call_id: str
    queue: str
    call: Call
    enqueued_at: float
    rate: int


class QueueStore(Protocol):
    """The durable journal of throttling queues. Order is kept by the caller in memory;
    the store makes sure nothing accepted is lost across a crash."""

    async def push(self, item: QueuedCall) -> None:
        """Store ``item``; when this returns, it survives a SIGKILL. Writes may be batched."""
        ...

    async def remove(self, call_id: str) -> None:
        """Forget a call that has ended. May be batched and lost in a crash, in which case
        the call is delivered again after restart (at-least-once)."""
        ...

    async def pending(self) -> list[QueuedCall]:
        """Every stored call, in the order it was pushed."""
        ...


class ConfigStore(Protocol):
    """Keeps capping and throttling config documents (JSON-ready mappings) by kind and uid."""

    async def save(self, kind: str, uid: str, doc: Mapping[str, Any]) -> None: ...

    async def delete(self, kind: str, uid: str) -> None: ...

    async def load(self) -> list[tuple[str, dict[str, Any]]]:
        """Every stored ``(kind, doc)``, oldest first."""
        ...


class Backend(Protocol):
    """The storage a gate runs on: one object, built in :mod:`sluicegate.wiring`."""

    @property
    def slots(self) -> SlotStore: ...

    @property
    def queue(self) -> QueueStore: ...

    @property
    def configs(self) -> ConfigStore: ...

    async def aclose(self) -> None: ...

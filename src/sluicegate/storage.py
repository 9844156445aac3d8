"""The backend protocols: small sets of atomic domain operations.

Each backend (``backends/memory.py``, ``backends/sqlite.py``, ...) implements these. The
memory backend is the reference semantics; one contract suite runs on every backend.
Backends never read the time: ``now_ms`` (or ``now``) is passed in, so a fake clock drives
them all, and a store shared by several instances can be given one source of time.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple, Protocol

from sluicegate.call import Call


@dataclass(frozen=True, slots=True, kw_only=True)
class Limit:
    """One sliding-window rate: at most ``count`` requests sent in any ``period_ms`` of
    ``key``. ``period_ms`` is how long a slot is held after its request was sent: the
    rule's period plus the guard band (see :mod:`sluicegate.matching`)."""

    key: str
    count: int
    period_ms: int


class Grant(NamedTuple):
    """One slot reserved in each of ``limits``, until its request is sent or given up.
    ``ticket`` is the store's name for the reservation; 0 when the store keeps nothing
    that would need recording. (A named tuple rather than a dataclass: one is made for
    every request.)"""

    limits: Sequence[Limit]
    ticket: int = 0


class Wait(NamedTuple):
    """No slot now: one may free in ``ms`` milliseconds (at least 1), so a queue knows
    when to look again."""

    ms: int


class SlotStore(Protocol):
    """Grants slots of exact sliding-window rate rules, counted from the send.

    A slot's life: :meth:`acquire` reserves it (held, with no end yet); :meth:`recorded`
    waits until the reservation would survive a crash; the request is written;
    :meth:`sent` stamps it (held ``period_ms`` from then); or, if nothing was written,
    :meth:`release` gives it back. ``sent`` and ``release`` return at once (a remote store
    finishes them in the background): they run where a request has just left or failed.
    """

    async def acquire(self, limits: Sequence[Limit], now_ms: int) -> Grant | Wait:
        """Reserve one slot in every limit, or in none."""
        ...

    async def recorded(self, grant: Grant) -> None:
        """Return once ``grant`` is durable: after a crash, a restart counts it as sent."""
        ...

    def sent(self, grant: Grant, sent_ms: int) -> None:
        """The request holding ``grant`` was sent at ``sent_ms``."""
        ...

    def release(self, grant: Grant) -> None:
        """The request holding ``grant`` was never sent."""
        ...

    async def in_use(self, key: str, now_ms: int) -> int:
        """Slots of ``key`` held at ``now_ms`` (reserved, or sent inside the window)."""
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


@dataclass(frozen=True, slots=True, kw_only=True)
class QueueDepth:
    """What a store holds of one queue: calls waiting, the oldest one's enqueue time,
    and the rate of the call at the head."""

    queue: str
    depth: int
    oldest: float | None
    rate: int


#: Where a stored call stands: waiting in its queue, or claimed by a dispatcher.
Stored = Literal["queued", "claimed"]


class QueueStore(Protocol):
    """Throttling queues kept in the store: one FIFO per queue, nothing held in memory.

    A pushed call waits until a dispatcher :meth:`claim`\\ s it (the head first), then is
    claimed until :meth:`remove` says it ended. A claimed call whose dispatcher died is
    not lost: :meth:`reclaim` puts it back at its place at the head, so delivery is at
    least once.
    """

    async def push(self, item: QueuedCall) -> None:
        """Append ``item`` to its queue; when this returns, it survives a crash. The
        queue's depth counts it from the call on, so no later call can overtake it. Call
        ids are unique: pushing one the store holds is a caller's mistake."""
        ...

    async def claim(self, queue: str, count: int) -> list[QueuedCall]:
        """Take up to ``count`` calls from the head of ``queue``, oldest first."""
        ...

    async def expire(self, queue: str, cutoff: float) -> tuple[list[QueuedCall], float | None]:
        """Remove the waiting calls at the head of ``queue`` enqueued at or before
        ``cutoff``; return them, and the enqueue time of the new head (``None``: empty)."""
        ...

    async def remove(self, call_id: str) -> None:
        """Forget a call, waiting or claimed. May be batched and lost in a crash, in
        which case a claimed call is delivered again (at least once)."""
        ...

    async def reclaim(self) -> None:
        """Put every claimed call back at its place in its queue (after a restart)."""
        ...

    def depth(self, queue: str) -> int:
        """Calls waiting in ``queue`` (claimed ones excluded)."""
        ...

    async def queues(self) -> list[QueueDepth]:
        """Every queue that has calls waiting."""
        ...

    async def find(self, call_id: str) -> Stored | None:
        """Where the call ``call_id`` stands, or ``None`` when the store does not hold it."""
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

    async def recover(self, now_ms: int) -> None:
        """Take over from the last run: slots reserved and never stamped count as sent at
        ``now_ms``; claimed calls go back to their queues."""
        ...

    async def aclose(self) -> None: ...

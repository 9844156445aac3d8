"""The backend protocols: small sets of atomic domain operations.

Each backend (``backends/memory.py``, ``backends/sqlite.py``, ...) implements these. The
memory backend is the reference semantics; one contract suite runs on every backend.
Backends never read the time: ``now_ms`` (or ``now``) is passed in, so a fake clock drives
them all, and a store shared by several instances can be given one source of time.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple, Protocol, runtime_checkable

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
    when to look again. ``paused``: the limit is paused (see :meth:`SlotStore.pause`) for
    ``ms`` more, whatever its slots."""

    ms: int
    paused: bool = False


class SlotStore(Protocol):
    """Grants slots of exact sliding-window rate rules, counted from the send.

    A slot's life: :meth:`acquire` reserves it (held, with no end yet); :meth:`recorded`
    waits until the reservation would survive a crash; the request is written;
    :meth:`sent` stamps it (held ``period_ms`` from then); or, if nothing was written,
    :meth:`release` gives it back. ``sent`` and ``release`` return at once (a remote store
    finishes them in the background): they run where a request has just left or failed.
    """

    async def acquire(
        self, limits: Sequence[Limit], now_ms: int, *, behind: str | None = None
    ) -> Grant | Wait:
        """Reserve one slot in every limit, or in none. ``behind`` names a throttling
        queue whose waiting calls go first: while it holds any, or is paused, no slot
        (``Wait`` of the period of the first limit)."""
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

    def pause(self, limits: Sequence[Limit], ms: int, now_ms: int) -> None:
        """Grant no slot of ``limits`` for ``ms`` milliseconds from ``now_ms`` (an external
        system answered ``Retry-After``): every instance sharing the store holds back."""
        ...

    async def in_use(self, key: str, now_ms: int) -> int:
        """Slots of ``key`` held at ``now_ms`` (reserved, or sent inside the window)."""
        ...


@runtime_checkable
class LocalSlotStore(Protocol):
    """A :class:`SlotStore` that decides in this process and never waits to decide.

    ``acquire_now`` is :meth:`SlotStore.acquire` without the coroutine: the executor asks
    it directly, so the usual request (a slot at once) takes no await to get one. The two
    must decide alike: a store that changes one (a test double, say) changes both.
    """

    def acquire_now(
        self, limits: Sequence[Limit], now_ms: int, behind: str | None = None
    ) -> Grant | Wait: ...


class ConnectionStore(Protocol):
    """Connection limits: at most ``limit`` requests of one key in flight at once."""

    def hold(self, key: str, limit: int) -> AbstractAsyncContextManager[None]:
        """Hold one of ``limit`` connections of ``key`` for the enclosed request, waiting
        (within the caller's deadline) while all are held."""
        ...

    def in_use(self, key: str) -> int:
        """Connections of ``key`` held right now by this process."""
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
    """What a store holds of one queue: calls waiting, the oldest one's enqueue time, the
    rate of the call at the head (0 when none waits), and whether it is paused."""

    queue: str
    depth: int
    oldest: float | None
    rate: int
    paused: bool = False


#: Where a stored call stands: waiting in its queue, or claimed by a dispatcher.
Stored = Literal["queued", "claimed"]


class QueueStore(Protocol):
    """Throttling queues kept in the store: one FIFO per queue, nothing held in memory.

    A pushed call waits until a dispatcher :meth:`claim`\\ s it (the head first), then is
    claimed until :meth:`remove` says it ended. A claimed call whose dispatcher died is
    not lost: :meth:`reclaim` puts it back at its place at the head, so delivery is at
    least once. An operator may :meth:`pause` a queue (nothing is claimed from it until
    :meth:`resume`) or :meth:`purge` it (its waiting calls leave without being claimed).

    ``shared``: other processes push to and claim from the same queues, so a process
    must look for work it did not push itself.
    """

    shared: bool

    async def push(self, item: QueuedCall) -> None:
        """Append ``item`` to its queue; when this returns, it survives a crash. The
        queue's depth counts it from the call on, so no later call can overtake it. Call
        ids are unique: pushing one the store holds is a caller's mistake."""
        ...

    async def claim(self, queue: str, count: int) -> list[QueuedCall]:
        """Take up to ``count`` calls from the head of ``queue``, oldest first; none while
        ``queue`` is paused."""
        ...

    async def purge(self, queue: str, count: int) -> list[QueuedCall]:
        """Remove up to ``count`` calls waiting at the head of ``queue`` (claimed ones
        stay) and return them, oldest first. Atomic with :meth:`claim`: a call is claimed
        or purged, never both, whichever process asks."""
        ...

    async def pause(self, queue: str) -> None:
        """Claim nothing from ``queue`` until :meth:`resume`, in every process sharing the
        store; a slot asked for ``behind`` it is refused meanwhile (:meth:`SlotStore.acquire`),
        so new calls queue. Pushes go on, and so does :meth:`expire`. Durable: when this
        returns, the pause survives a restart. Pausing a paused queue changes nothing."""
        ...

    async def resume(self, queue: str) -> None:
        """End the pause of ``queue`` (durably); resuming a queue not paused changes nothing."""
        ...

    def paused(self, queue: str) -> bool:
        """Whether ``queue`` is paused, as this process last saw it (:meth:`claim` and
        :meth:`queues` look again in a shared store)."""
        ...

    async def expire(self, queue: str, cutoff: float) -> tuple[list[QueuedCall], float | None]:
        """Remove the waiting calls at the head of ``queue`` enqueued at or before
        ``cutoff``; return them, and the enqueue time of the new head (``None``: empty)."""
        ...

    async def remove(self, call_id: str) -> None:
        """Forget a call, waiting or claimed. May be batched and lost in a crash, in
        which case a claimed call is delivered again (at least once)."""
        ...

    async def unclaim(self, call_id: str) -> None:
        """Put one claimed call back at its place: it could not start (its first request
        got no slot decision from a shared store that was unavailable)."""
        ...

    async def reclaim(self) -> None:
        """Put every call claimed by this process back at its place in its queue (after a
        restart); in a shared store, also the calls whose claimer's lease ended."""
        ...

    def depth(self, queue: str) -> int:
        """Calls waiting in ``queue`` (claimed ones excluded)."""
        ...

    async def queues(self) -> list[QueueDepth]:
        """Every queue that has calls waiting or is paused."""
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

    async def follow(self, changed: Callable[[], Awaitable[None]]) -> None:
        """Await ``changed()`` whenever another process may have changed the stored
        configs, until cancelled. A store only this process writes returns at once."""
        ...


class Backend(Protocol):
    """The storage a gate runs on: one object, built in :mod:`sluicegate.wiring`."""

    @property
    def slots(self) -> SlotStore: ...

    @property
    def queue(self) -> QueueStore: ...

    @property
    def configs(self) -> ConfigStore: ...

    @property
    def connections(self) -> ConnectionStore: ...

    async def recover(self, now_ms: int) -> None:
        """Take over from the last run: slots reserved and never stamped count as sent at
        ``now_ms``; claimed calls go back to their queues."""
        ...

    async def aclose(self) -> None: ...

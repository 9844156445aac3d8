"""Operator control of one throttling queue: look at it, pause, resume, purge.

``gate.queue(key)`` hands out a :class:`ThrottlingQueue` (``key`` is a
:class:`~sluicegate.throttle.QueueState`'s, :func:`~sluicegate.matching.throttle_key`).
What each step does, on every instance sharing the store (``docs/api-queues.md`` tells
operators the same):

* **Pause.** The flag lives in the queue store, which refuses to claim from a paused queue:
  from the moment the pause is written, no instance dispatches a call of it. New calls are
  still accepted, and queue behind it durably (the store refuses them a slot at the door
  too). The pause survives a restart. Calls already dispatched go on, with their retries
  and redirect hops. Waiting calls still expire 6 hours after they were queued: paused
  time counts, as it does for a queue held back by its rate.
* **Resume.** The dispatchers go on at the queue's rate, oldest call first. The window
  still holds the sends made before the pause, so no burst goes over the rate. The
  instance that resumes starts at once; the others within a second (their scan of a
  shared store).
* **Purge.** Every call waiting leaves the queue without being sent, and ends ``expired``
  with the error ``purged by an operator``: an outcome callers, callbacks and reports
  already know (Adobe's vocabulary has no other word for a call that left its queue
  unsent). The store takes calls out atomically with the dispatchers' claims, so a call is
  either dispatched or purged, never both. Calls already dispatched are not affected.
"""

from __future__ import annotations

from collections.abc import Callable

from sluicegate.matching import throttle_owner
from sluicegate.storage import QueuedCall, QueueStore
from sluicegate.throttle import QueueState, Throttling

#: The error message of a purged call.
PURGED = "purged by an operator"
#: Calls a purge takes out of the store, and reports, in one step.
PURGE_BATCH = 500


class ThrottlingQueue:
    """One throttling queue of a gate. ``ended(item)`` reports a purged call."""

    __slots__ = ("_ended", "_store", "_throttling", "key")

    def __init__(
        self,
        key: str,
        *,
        throttling: Throttling,
        store: QueueStore,
        ended: Callable[[QueuedCall], None],
    ) -> None:
        self.key = key
        self._throttling = throttling
        self._store = store
        self._ended = ended

    async def state(self) -> QueueState:
        """The queue as it stands (empty and not paused when the store holds nothing of it)."""
        for found in await self._throttling.states():
            if found.key == self.key:
                return found
        org, uid = throttle_owner(self.key)
        return QueueState(key=self.key, org=org, uid=uid, rate=self._throttling.rate(self.key),
                          depth=0, oldest_age=None)  # fmt: skip

    async def pause(self) -> QueueState:
        """Dispatch none of its calls until :meth:`resume`; pausing twice is pausing once."""
        await self._store.pause(self.key)
        self._throttling.poke(self.key)
        return await self.state()

    async def resume(self) -> QueueState:
        """Dispatch its calls again; resuming a queue not paused changes nothing."""
        await self._store.resume(self.key)
        self._throttling.poke(self.key)
        return await self.state()

    async def purge(self) -> int:
        """End every call waiting in it, unsent; the number of calls purged. The first
        batch is taken at once; then at most the calls waiting after it, so that calls
        pushed while it purges are spared (a store that could not read a call drops it,
        and it counts against that number too)."""
        purged, budget = 0, None
        while budget is None or budget > 0:
            asked = PURGE_BATCH if budget is None else min(budget, PURGE_BATCH)
            items = await self._store.purge(self.key, asked)
            for item in items:
                self._ended(item)
            purged += len(items)
            if not items:
                break
            budget = (await self.state()).depth if budget is None else budget - asked
        return purged

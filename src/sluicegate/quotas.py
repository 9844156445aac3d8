"""Per-org quotas: how many calls one org may have in flight, and waiting in queues.

Capping and throttling protect the external systems; these protect the other orgs. Calls
in flight hold a task, a body, and a socket while they send; one org calling a partner
that hangs could otherwise hold them by the thousands until the process runs out of file
descriptors, and every other org's calls would fail with it. Calls waiting in queues hold
disk. Over either quota a new call is refused (:class:`~sluicegate.errors.TooManyCalls`)
before anything of it is kept; the calls already accepted go on. The counts are this
process's: with several instances each holds its own quota of calls in flight, and the
queued count is the depth each last saw of a shared queue.
"""

from __future__ import annotations

from collections.abc import Callable

from sluicegate.errors import TooManyCalls


class Quotas:
    """The calls in flight of each org in this process, and the checks of both quotas.
    ``queued(org)`` tells how many calls of ``org`` wait in queues."""

    def __init__(self, *, max_in_flight: int, max_queued: int, queued: Callable[[str], int]):
        self._max_in_flight = max_in_flight
        self._max_queued = max_queued
        self._queued = queued
        self._in_flight: dict[str, int] = {}

    def check(self, org: str, *, throttled: bool) -> None:
        """Raise :class:`TooManyCalls` when a new call of ``org`` is over a quota: its
        calls in flight, or (a call that throttling may queue) its calls waiting."""
        if self._in_flight.get(org, 0) >= self._max_in_flight:
            raise TooManyCalls("TOO_MANY_CALLS_IN_FLIGHT",
                               f"the org has {self._max_in_flight:,} calls in flight")  # fmt: skip
        if throttled and self._queued(org) >= self._max_queued:
            raise TooManyCalls("TOO_MANY_CALLS_QUEUED",
                               f"the org has {self._max_queued:,} calls queued")  # fmt: skip

    def started(self, org: str) -> None:
        self._in_flight[org] = self._in_flight.get(org, 0) + 1

    def ended(self, org: str) -> None:
        left = self._in_flight[org] - 1
        if left:
            self._in_flight[org] = left
        else:
            del self._in_flight[org]

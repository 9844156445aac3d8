"""The slot journal of the SQLite backend: the memory store's decisions, written down.

Windows are decided in memory (one process owns its limiter, :mod:`.memory`); every
reservation and send time goes to the ``slots`` table through the backend's group commit,
so that a restart holds again every slot still in its window. See :mod:`.sqlite` for the
contract, and for the *spare* that lets a few requests leave before their reservation is
written (``slot_spares``).
"""

from __future__ import annotations

import itertools
import sqlite3
from collections import defaultdict, deque
from collections.abc import Callable, Sequence
from typing import Any

from sluicegate.backends.commits import GroupCommit
from sluicegate.backends.memory import MemorySlotStore
from sluicegate.storage import Grant, Limit, Wait

_RESERVE = "INSERT INTO slots (ticket, key, count, period_ms) VALUES (?, ?, ?, ?)"
_STAMP = "UPDATE slots SET sent_ms = ?1, expires_ms = ?1 + period_ms WHERE ticket = ?2"
_RELEASE = "DELETE FROM slots WHERE ticket = ?"
_PRUNE = "DELETE FROM slots WHERE expires_ms <= ?"
_SPARE = "INSERT OR REPLACE INTO slot_spares (key, count, period_ms, spare) VALUES (?, ?, ?, ?)"
#: A limit's spare is its count divided by this (at least 1): see the module docstring.
SPARE_SHARE = 100
#: Stamps between two deletions of the slot rows whose window has passed.
PRUNE_EVERY = 1_000


def spare(limit: Limit) -> int:
    """Reservations of ``limit`` that may leave before their commit (module docstring)."""
    return max(1, limit.count // SPARE_SHARE)


class SqliteSlotStore:
    """The memory store's decisions, journaled: see the module docstring."""

    def __init__(self, commits: GroupCommit, holds: Callable[[str], object]) -> None:
        self._windows = MemorySlotStore(holds)
        self._commits = commits
        self._tickets = itertools.count(1)
        self._batches: dict[int, int] = {}  # ticket -> batch of its reservation, until recorded
        self._stamps = 0
        self._spares: dict[str, int] = {}  # key -> its spare, recorded in slot_spares
        self._recording: dict[str, tuple[int, int]] = {}  # key -> (batch, spare) on its way
        self._unwritten: dict[str, deque[int]] = defaultdict(deque)  # key -> batches
        self._failures = 0

    async def acquire(
        self, limits: Sequence[Limit], now_ms: int, *, behind: str | None = None
    ) -> Grant | Wait:
        return self.acquire_now(limits, now_ms, behind)

    def acquire_now(
        self, limits: Sequence[Limit], now_ms: int, behind: str | None = None
    ) -> Grant | Wait:
        """:meth:`acquire` without awaiting: decided in memory, the reservation buffered
        for the next group commit (:meth:`recorded` waits for it, unless it may leave
        within its limit's spare)."""
        found = self._windows.acquire_now(limits, now_ms, behind)
        if isinstance(found, Wait):
            return found
        ticket = next(self._tickets)
        for limit in limits:
            key = limit.key
            batch = self._commits.add(_RESERVE, (ticket, key, limit.count, limit.period_ms))
            wanted = spare(limit)
            if self._spares.get(key, 0) < wanted and key not in self._recording:
                self._commits.add(_SPARE, (key, limit.count, limit.period_ms, wanted))
                self._recording[key] = (batch, wanted)
            self._unwritten[key].append(batch)
        self._batches[ticket] = batch
        return Grant(limits, ticket)

    async def recorded(self, grant: Grant) -> None:
        batch = self._batches.get(grant.ticket)
        if batch is not None:
            if self._must_wait(grant.limits):
                await self._commits.committed(batch)
            del self._batches[grant.ticket]

    def _must_wait(self, limits: Sequence[Limit]) -> bool:
        """Whether a request must wait for its reservation's commit: its limits' spares
        are not recorded yet, or more reservations than a spare are still unwritten."""
        commits = self._commits
        if commits.failures != self._failures:  # a batch failed: start again, waiting
            self._failures = commits.failures
            self._spares.clear()
            self._recording.clear()
            self._unwritten.clear()
            return True
        wait = False
        for limit in limits:
            key = limit.key
            recording = self._recording.get(key)
            if recording is not None and commits.is_over(recording[0]):
                self._spares[key] = recording[1]
                del self._recording[key]
            unwritten = self._unwritten[key]
            while unwritten and commits.is_over(unwritten[0]):
                unwritten.popleft()
            wait = wait or len(unwritten) > self._spares.get(key, 0)
        return wait

    def sent(self, grant: Grant, sent_ms: int) -> None:
        self._windows.sent(grant, sent_ms)
        self._commits.add(_STAMP, (sent_ms, grant.ticket))
        self._stamps += 1
        if self._stamps % PRUNE_EVERY == 0:  # slots whose window had passed by now
            self._commits.add(_PRUNE, (sent_ms,))

    def release(self, grant: Grant) -> None:
        self._windows.release(grant)
        self._batches.pop(grant.ticket, None)
        self._commits.add(_RELEASE, (grant.ticket,))

    def pause(self, limits: Sequence[Limit], ms: int, now_ms: int) -> None:
        self._windows.pause(limits, ms, now_ms)  # one process: nobody else to tell

    async def in_use(self, key: str, now_ms: int) -> int:
        return await self._windows.in_use(key, now_ms)

    def restore(self, rows: list[tuple[str, int, int, int]], ticket: int) -> None:
        """Hold again the slots of ``rows`` (key, count, period, sent), oldest sent first."""
        for key, count, period_ms, sent_ms in rows:
            self._windows.window(Limit(key=key, count=count, period_ms=period_ms)).restore(
                [(sent_ms, 1)]
            )
        self._tickets = itertools.count(ticket + 1)


def recover_slots(now_ms: int, conn: sqlite3.Connection) -> tuple[list[Any], int]:
    """Count reservations never stamped as sent now, and the spares of a stop that did not
    clear them (a crash) as slots sent now, written as such; drop passed slots, read the
    rest."""
    with conn:
        conn.execute("UPDATE slots SET sent_ms = ?1, expires_ms = ?1 + period_ms "
                     "WHERE sent_ms IS NULL", (now_ms,))  # fmt: skip
        conn.execute(_PRUNE, (now_ms,))
        ticket = conn.execute("SELECT coalesce(max(ticket), 0) FROM slots").fetchone()[0]
        spares = conn.execute("SELECT key, count, period_ms, spare FROM slot_spares").fetchall()
        held = [(key, count, period_ms) for key, count, period_ms, n in spares for _ in range(n)]
        conn.executemany(
            "INSERT INTO slots (ticket, key, count, period_ms, sent_ms, expires_ms) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            [(ticket + i, key, count, period_ms, now_ms, now_ms + period_ms)
             for i, (key, count, period_ms) in enumerate(held, start=1)],
        )  # fmt: skip
        conn.execute("DELETE FROM slot_spares")
    rows = conn.execute(
        "SELECT key, count, period_ms, sent_ms FROM slots ORDER BY sent_ms"
    ).fetchall()
    return rows, ticket + len(held)

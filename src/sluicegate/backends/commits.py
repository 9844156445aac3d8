"""Group commit: many small writes, one transaction.

Stores on one SQLite file buffer their writes here; one task writes everything buffered in
one transaction, and whatever arrives meanwhile waits for the next one. Under load one
commit serves thousands of writes. Batches are numbered: :meth:`GroupCommit.add` tells the
number of the batch that will hold a write, and :meth:`GroupCommit.committed` waits for
exactly that batch, so a writer whose batch is already written never waits. Statements are
written in the order they were added, so a removal added after a push applies after it.

A batch no one waits for (send times, removals, reservations within a limit's spare)
gathers writes for up to :data:`LINGER` before it is written; a writer that waits for the
batch being filled has it written at once. Without the pause, calls one at a time each
paid a transaction of their own on the database thread, and that thread's share of the
interpreter lock slowed every call in flight: at concurrency 1 through the service, the
pause saves about 200 µs of the database threads' CPU a call and about as much latency
(docs/performance.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from functools import partial
from typing import Any

from sluicegate.backends.database import Database
from sluicegate.errors import StorageError

_Run = tuple[str, list[tuple[Any, ...]]]  # consecutive writes of one statement
#: Failed batches remembered, so that a writer asking after one that is over still hears.
_KEPT_FAILURES = 64
#: Seconds a batch that no one waits for gathers writes before it is written.
LINGER = 0.010
log = logging.getLogger(__name__)


async def linger(urgent: asyncio.Event) -> None:
    """Let writes gather for :data:`LINGER` seconds, or until ``urgent`` is set (something
    waits for them); then clear it."""
    if not urgent.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(urgent.wait(), LINGER)
    urgent.clear()


def _commit(runs: list[_Run], conn: sqlite3.Connection) -> None:
    with conn:
        for sql, params in runs:
            conn.executemany(sql, params)


class GroupCommit:
    """The buffered writes of one database, written by one background task."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._runs: list[_Run] = []
        self._open = 1  # the number of the batch being filled
        self._written = 0  # every batch up to this one is over
        self._waiters: dict[int, list[asyncio.Future[None]]] = {}
        self._drainer: asyncio.Task[None] | None = None  # None exactly when nothing is pending
        self._closed = False
        self._failed: dict[int, Exception] = {}  # the last failed batches, oldest first
        self._urgent = asyncio.Event()  # a writer waits for the batch being filled
        self.failures = 0  # batches that failed so far

    def add(self, sql: str, params: tuple[Any, ...]) -> int:
        """Buffer one write; return the number of the batch that will commit it."""
        if self._closed:
            raise StorageError(f"{self._db.file} is closed")
        if self._drainer is None:
            self._drainer = asyncio.create_task(self._drain(), name=f"commit {self._db.file}")
        runs = self._runs
        if runs and runs[-1][0] is sql:
            runs[-1][1].append(params)
        else:
            runs.append((sql, [params]))
        return self._open

    def is_over(self, batch: int) -> bool:
        """Whether batch ``batch`` is over: committed, or failed (see :attr:`failures`)."""
        return batch <= self._written

    async def committed(self, batch: int) -> None:
        """Return once batch ``batch`` is committed.

        Raises :class:`StorageError` when that batch failed (its writes are lost), also
        when it is asked after the failure. Cancelling this wait cancels nothing else. A
        batch already committed costs one turn of the event loop: writers woken by its
        commit, earlier in line, go first, so that what waits for its writes goes on in
        the order it waited.
        """
        if batch <= self._written:
            await asyncio.sleep(0)
            error = self._failed.get(batch)
            if error is not None:
                raise StorageError(str(error)) from error
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(batch, []).append(waiter)
        if batch == self._open:
            self._urgent.set()
        await waiter

    async def flush(self) -> None:
        """Return once every write added before this call is committed."""
        await self.committed(self._open if self._runs else self._open - 1)

    async def _drain(self) -> None:
        try:
            while self._runs:
                if not self._closed:
                    await linger(self._urgent)
                runs, self._runs = self._runs, []
                batch, self._open = self._open, self._open + 1
                error: Exception | None = None
                try:
                    await self._db.run("writing a batch", partial(_commit, runs))
                except Exception as exc:
                    log.error("a batch of %d writes failed: %s", len(runs), exc)
                    error = exc
                    self.failures += 1
                    self._failed[batch] = exc
                    if len(self._failed) > _KEPT_FAILURES:
                        del self._failed[next(iter(self._failed))]
                self._written = batch
                for waiter in self._waiters.pop(batch, ()):
                    if waiter.done():  # its writer gave up waiting
                        continue
                    if error is None:
                        waiter.set_result(None)
                    else:
                        waiter.set_exception(error)
        finally:
            # Normally a no-op; when cancelled (loop shutdown), no writer is left waiting.
            for waiters in self._waiters.values():
                for waiter in waiters:
                    waiter.cancel()
            self._waiters.clear()
            self._written = self._open - 1
            self._runs, self._drainer = [], None

    async def aclose(self) -> None:
        """Refuse new writes and wait until the buffered ones are written."""
        self._closed = True
        self._urgent.set()
        if self._drainer is not None:
            await asyncio.wait({self._drainer})

"""Calls made through the service: their rows, their results, idempotency keys, callbacks.

Every call accepted by ``POST /v1/calls`` gets a row in the ``calls`` table, and every
finished call (recovered ones included) gets its result there, as its result view (see
:mod:`~sluicegate.service.callview`). Writes are grouped: one background task writes
everything pending in one transaction, and what arrives meanwhile waits for the next, so
under load one commit serves many calls and the request path does not wait for the
disk. A write that nothing waits for gathers calls for up to
:data:`~sluicegate.backends.commits.LINGER` (10 ms) first, so that calls one at a time
share a commit too; one that something waits for (below, and :meth:`CallLog.written`)
starts at once. A request waits in one case only:

* a call with a ``callbackUrl`` or an ``idempotencyKey`` is accepted ``durable``: the
  request waits for the commit of its row before the call is submitted (and perhaps
  queued), so a call recovered after a crash still gets its callback, and a retried
  request still finds its key. Other rows go with the next commit; a graceful stop
  writes everything, a crash may lose the row of a call that had not ended (its row is
  written whole when a recovered call ends).

A result's view (JSON) is rendered once, on the event loop's thread: the request waiting
for the call needs it too, and Python run on the database thread beside the loop costs
every call in flight a share of the interpreter lock (about 50 µs a call, one at a time).

Until their row or result is written, calls are found in memory. A call queued by
throttling holds nothing here while it waits (its row says ``queued``; its callback URL
is read back from the row when it ends), like it holds nothing in the engine. Callbacks
are sent once the result is written (``callback_due`` marks those owed), and owed ones
are sent again after a restart: delivery is at least once.

A queued call leaves the engine's store only once its result is written here
(:meth:`CallLog.written`). A call whose result can no longer come ends ``network_error``,
as whether the external system received it cannot be known: at start, a call left
``accepted`` that the engine neither runs nor holds (it was running at a stop); when asked
for, a call left ``queued`` that the engine no longer holds. Such an ending never replaces
a result written meanwhile. Rows are kept :data:`RETENTION` seconds; an idempotency key
counts for :data:`IDEMPOTENCY_WINDOW`.

A call that did not succeed keeps its request with its result, for a replay
(:mod:`~sluicegate.service.replays`): sealed with the engine's data key when one is set.
Listings read the rows (:mod:`~sluicegate.service.calllist`), so a call is listed once
its result is written; a listing first has every result recorded so far written
(:meth:`CallLog.flush`), so a call that has ended on this instance is listed at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from functools import partial

from sluicegate.backends.commits import linger
from sluicegate.backends.database import SqlDatabase
from sluicegate.call import MAX_TIMEOUT_SECONDS, Call
from sluicegate.clock import Clock
from sluicegate.errors import StorageError
from sluicegate.gate import Gate
from sluicegate.handle import CallState
from sluicegate.outcomes import CallResult, Outcome
from sluicegate.sealing import Sealer
from sluicegate.service.callbacks import Callbacks, CallbackTally
from sluicegate.service.callrows import (
    ACCEPTED,
    DONE,
    QUEUED,
    Accepted,
    Batch,
    Finished,
    Found,
    RequestLine,
    interrupted,
    write_batch,
)
from sluicegate.service.replays import Kept, Original, of_call, reopen
from sluicegate.settings import HOUR

RETENTION = 7 * 24 * HOUR
IDEMPOTENCY_WINDOW = 24 * HOUR
PRUNE_EVERY = HOUR
#: Seconds before a failed write is tried again, doubled after each failure in a row.
RETRY_WRITE_AFTER = 1.0
MAX_RETRY_WRITE_AFTER = 30.0
#: Seconds after which a call accepted on a shared database, not queued and not done,
#: has outlived any budget: the instance running it died.
ABANDONED_AFTER = 2.0 * MAX_TIMEOUT_SECONDS
#: Seconds a listing waits for the results recorded before it to be written (the database
#: may be failing: it then lists what is written).
FLUSH_WAIT = 1.0
log = logging.getLogger(__name__)


class CallLog:
    """The service's record of calls; the gate's reporter feeds it every finished call."""

    def __init__(self, db: SqlDatabase, clock: Clock) -> None:
        self._db = db
        self._clock = clock
        self._gate: Gate | None = None
        self._callbacks: Callbacks | None = None
        self._sealer: Sealer | None = None  # set at start, from the engine's data keys
        self._pending = Batch()
        self._unwritten: dict[str, Accepted] = {}  # accepted, row not written yet
        self._finished: dict[str, Finished] = {}  # ended, result not written yet
        self._keys: dict[tuple[str, str, str], str] = {}  # idempotency keys not written yet
        self._direct: dict[str, str | None] = {}  # callback URLs of calls not queued
        self._queuing: set[str] = set()  # queued, and their rows may still say accepted
        self._closing = False
        self._stopping = False  # no new callbacks: the engine is stopping
        self._pruned_at = 0.0
        self._wake = asyncio.Event()
        self._urgent = asyncio.Event()  # a request waits for the next write
        self._writer: asyncio.Task[None] | None = None
        self._writing = False  # a batch is being written
        self._streak = 0  # writes failed in a row
        self.failures = 0  # writes failed since the start (a metrics series)

    @property
    def callback_counts(self) -> dict[str, int]:
        """Callbacks ``delivered``, ``failed`` (after every retry) and ``refused`` (egress)."""
        return dict(self._callbacks.counts) if self._callbacks else {}

    def callback_tallies(self, org: str) -> dict[str, CallbackTally]:
        """``org``'s callbacks by sandbox since the process started (for its metrics)."""
        return self._callbacks.tallies(org) if self._callbacks else {}

    def alive(self) -> bool:
        """Whether the writer runs (it survives any error; it ends only at close)."""
        return self._writer is not None and not self._writer.done()

    async def start(self, gate: Gate) -> None:
        """Take over from the last run: end the calls it lost, resend owed callbacks."""
        self._gate = gate
        keys = gate.settings.data_keys
        self._sealer = Sealer(keys) if keys else None
        self._callbacks = Callbacks(self._clock, gate.settings, self._settle)
        # Another instance may still run a call it accepted, unless it is too old to run.
        before = self._clock.now() - ABANDONED_AFTER if self._db.shared else float("inf")
        rows = await self._db.execute(
            "reading unfinished calls",
            "SELECT call_id, org, sandbox, journey FROM calls WHERE state = ? AND created_at < ?",
            (ACCEPTED, before),
        )
        for call_id, org, sandbox, journey in rows:
            if await gate.find(call_id) is not None:  # queued: its row was not told
                self._tell_queued(call_id)
            elif call_id not in self._finished:  # not recovered from its queue and ended
                self._interrupt(call_id, org, sandbox, journey)
        owed = await self._db.execute(
            "reading owed callbacks",
            "SELECT call_id, callback_url, result, org, sandbox FROM calls WHERE callback_due = 1",
        )
        for call_id, url, text, org, sandbox in owed:
            self._callbacks.send(call_id, url, text, org=org, sandbox=sandbox)
        self._writer = asyncio.create_task(self._write_loop(), name="call log writer")

    async def accept(self, entry: Accepted, *, durable: bool) -> str | None:
        """Record a call about to be submitted. When its idempotency key already names a
        call not yet written, return that call's id instead (and record nothing).

        A ``durable`` accept returns once the row is committed; do not cancel it halfway
        (shield it with the submission), or a row is written for a call never made.
        """
        if entry.idempotency_key is not None:
            key = (entry.org, entry.sandbox, entry.idempotency_key)
            if (first := self._keys.get(key)) is not None:
                return first
            self._keys[key] = entry.call_id
        self._unwritten[entry.call_id] = entry
        self._direct[entry.call_id] = entry.callback_url
        self._pending.accepted.append(entry)
        self._wake.set()
        if durable:
            written = asyncio.get_running_loop().create_future()
            self._pending.waiters.append((written, entry))
            self._urgent.set()
            await written  # StorageError: the entry was dropped
        return None

    def queued(self, entry: Accepted) -> None:
        """The call was queued by throttling: forget it until it ends."""
        self._direct.pop(entry.call_id, None)
        entry.queued = True  # a row not written yet is written as queued
        self._tell_queued(entry.call_id)  # a row being written, or written

    def _tell_queued(self, call_id: str) -> None:
        self._queuing.add(call_id)
        self._pending.queued.append(call_id)
        self._wake.set()

    def withdraw(self, entry: Accepted) -> None:
        """Forget a call that could not be submitted after all, its row included."""
        self._drop(entry)
        self._pending.withdrawn.append(entry.call_id)
        self._wake.set()

    def record(self, call: Call, result: CallResult) -> None:
        """Keep the result of a finished call (the gate's reporter: synchronous, cheap)."""
        known = result.call_id in self._direct  # else it waited in a queue: maybe no row
        failed = result.outcome is not Outcome.SUCCESS
        self._finish(Finished(call_id=result.call_id, org=call.org, sandbox=call.sandbox,
                              journey=call.journey, at=self._clock.now(), result=result,
                              callback=self._direct.pop(result.call_id, None),
                              known=known, line=None if known else RequestLine.of(call),
                              call=call if failed else None))  # fmt: skip

    async def written(self) -> None:
        """Return once every result recorded so far is written (the gate removes a queued
        call from the engine's store only then)."""
        if not self._pending.finished and not self._writing:
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.written.append(waiter)
        self._wake.set()
        self._urgent.set()
        await waiter

    async def flush(self) -> None:
        """Have every result recorded so far written, waiting at most FLUSH_WAIT seconds
        (a listing asks first: a call that has answered is listed, not 10 ms later)."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(FLUSH_WAIT):
                await self.written()

    def finished_json(self, call_id: str) -> str | None:
        """The result view of a call that ended and is not written yet."""
        found = self._finished.get(call_id)
        return found.json() if found is not None else None

    async def find(self, org: str, sandbox: str, call_id: str) -> Found | None:
        """The call ``call_id`` of this org and sandbox; ``None`` if unknown or another's."""
        lost = False  # seen neither running nor stored: lost, unless a read finds it ended
        for _ in range(3):  # a call may end, and its result be written, during the read
            if (done := self._finished.get(call_id)) is not None:
                mine = (done.org, done.sandbox) == (org, sandbox)
                return Found(call_id, "done", done.json()) if mine else None
            if (entry := self._unwritten.get(call_id)) is not None:
                mine = (entry.org, entry.sandbox) == (org, sandbox)
                return Found(call_id, self._state(call_id, entry.queued)) if mine else None
            rows = await self._db.execute(
                "reading a call",
                "SELECT state, result, journey, created_at FROM calls WHERE call_id = ? "
                "AND org = ? AND sandbox = ?",
                (call_id, org, sandbox),
            )
            if not rows:
                return None
            state, text, journey, created_at = rows[0]
            if state == ACCEPTED and call_id in self._queuing:  # the next write says so
                state = QUEUED
            if state == DONE:
                return Found(call_id, "done", text)
            if self._gate is not None and self._gate.running(call_id):
                return Found(call_id, self._state(call_id, queued=False))
            if state == ACCEPTED and self._alive(created_at):
                return Found(call_id, "running")
            if self._gate is not None and (where := await self._gate.find(call_id)) is not None:
                return Found(call_id, where)
            # A queued call leaves the store after its result is written: read the row once
            # more, and only a call still not ended then had its result lost in a crash.
            if lost and call_id not in self._finished:
                self._interrupt(call_id, org, sandbox, journey)
            lost = True
        return Found(call_id, "running")

    async def original(self, org: str, sandbox: str, call_id: str) -> Original | None:
        """The ended call ``call_id`` of this org and sandbox, as a replay needs it; None
        when it is unknown, another's, or has not ended."""
        done = self._finished.get(call_id)  # first: it is forgotten only once written
        if done is not None and (done.org, done.sandbox) != (org, sandbox):
            return None
        rows = await self._db.execute(
            "reading a call to replay",
            "SELECT journey, state, outcome, callback_url, request FROM calls "
            "WHERE call_id = ? AND org = ? AND sandbox = ?",
            (call_id, org, sandbox),
        )
        if done is not None:
            callback = done.callback if done.known else (rows[0][3] if rows else None)
            kept = None if done.call is None else of_call(done.call)
            return _original(done.journey, done.result.outcome.value, callback, kept)
        if not rows or rows[0][1] != DONE:
            return None
        journey, _, outcome, callback, stored = rows[0]
        if stored is None:
            return _original(journey, outcome, callback, None)
        try:
            kept = reopen(bytes(stored), call_id, self._sealer)
        except StorageError as exc:
            return Original(journey=journey, callback_url=callback, request=None,
                            missing=str(exc))  # fmt: skip
        return _original(journey, outcome, callback, kept)

    async def find_key(self, org: str, sandbox: str, key: str) -> str | None:
        """The id of the call made with idempotency ``key`` in the last 24 hours, if any."""
        if (found := self._keys.get((org, sandbox, key))) is not None:
            return found
        rows = await self._db.execute(
            "reading an idempotency key",
            "SELECT call_id FROM calls WHERE org = ? AND sandbox = ? AND idempotency_key = ? "
            "AND created_at >= ? ORDER BY created_at DESC LIMIT 1",
            (org, sandbox, key, self._clock.now() - IDEMPOTENCY_WINDOW),
        )
        return self._keys.get((org, sandbox, key)) or (rows[0][0] if rows else None)

    def _alive(self, created_at: float) -> bool:
        """Whether a call accepted at ``created_at``, running nowhere here, may still run:
        here, always (this process ends such calls at start); on a shared database, until
        no budget could last any longer (another instance accepted it, and may have died)."""
        return not self._db.shared or created_at >= self._clock.now() - ABANDONED_AFTER

    def _state(self, call_id: str, queued: bool) -> CallState:
        running = self._gate is not None and self._gate.running(call_id)
        return "queued" if queued and not running else "running"

    def _finish(self, finished: Finished) -> None:
        self._finished[finished.call_id] = finished
        self._pending.finished.append(finished)
        self._wake.set()

    def _interrupt(self, call_id: str, org: str, sandbox: str, journey: str) -> None:
        """End a call whose own result can no longer come (see the module docstring)."""
        self._finish(Finished(call_id=call_id, org=org, sandbox=sandbox, journey=journey,
                              at=self._clock.now(), result=interrupted(call_id), callback=None,
                              known=False, guarded=True))  # fmt: skip

    def _settle(self, call_id: str) -> None:
        self._pending.settled.append(call_id)
        self._wake.set()

    def _drop(self, entry: Accepted) -> None:
        """Forget ``entry`` altogether: it will never be submitted."""
        self._row_written(entry)
        self._direct.pop(entry.call_id, None)

    def _row_written(self, entry: Accepted) -> None:
        """Stop looking ``entry`` up in memory: its row is in the database (or never will be)."""
        self._unwritten.pop(entry.call_id, None)
        if entry.idempotency_key is not None:
            key = (entry.org, entry.sandbox, entry.idempotency_key)
            if self._keys.get(key) == entry.call_id:
                del self._keys[key]

    async def _write_loop(self) -> None:
        while not self._closing or self._pending:
            await self._wake.wait()
            if not self._closing:
                await linger(self._urgent)
            self._wake.clear()
            if self._pending:
                await self._write()

    async def _write(self) -> None:
        """Write everything pending in one transaction; then send the callbacks now due."""
        batch, self._pending = self._pending, Batch()
        for finished in batch.finished:  # here, not on the database thread (module docstring)
            finished.json()
            if self._gate is not None:  # else the data keys are not known: keep nothing
                finished.encode_request(self._sealer)
        now = self._clock.now()
        prune = now - RETENTION if now - self._pruned_at >= PRUNE_EVERY else None
        self._writing = True
        try:
            looked_up = await self._db.run("saving calls", partial(write_batch, batch, prune))
        except Exception as error:  # any: a writer that died would leave calls unwritten
            exc = error if isinstance(error, StorageError) else StorageError(
                f"saving calls failed: {error!r}")  # fmt: skip
            self._writing = False
            for waiter, entry in batch.waiters:  # those requests fail, their calls not made
                self._drop(entry)
                if not waiter.done():
                    waiter.set_exception(exc)
            if self._closing:
                log.error("could not save calls and results; lost at shutdown: %s", exc)
                for waiter in batch.written:
                    if not waiter.done():
                        waiter.set_exception(exc)
                self._wake.set()
                return
            self.failures += 1
            self._streak += 1
            delay = min(RETRY_WRITE_AFTER * 2 ** (self._streak - 1), MAX_RETRY_WRITE_AFTER)
            log.error("could not save calls and results (will retry in %g s): %s", delay, exc)
            self._pending.accepted[:0] = [a for a in batch.accepted if a.call_id in self._unwritten]
            self._pending.queued[:0] = batch.queued
            self._pending.finished[:0] = batch.finished
            self._pending.settled[:0] = batch.settled
            self._pending.withdrawn[:0] = batch.withdrawn
            self._pending.written[:0] = batch.written
            await self._clock.sleep(delay)
            self._wake.set()
            return
        self._writing = False
        self._streak = 0
        self._queuing.difference_update(batch.queued)
        if prune is not None:
            self._pruned_at = now
        for waiter in (*(waiter for waiter, _ in batch.waiters), *batch.written):
            if not waiter.done():
                waiter.set_result(None)
        for entry in batch.accepted:
            if self._unwritten.get(entry.call_id) is entry:
                self._row_written(entry)
        for done in batch.finished:
            if self._finished.get(done.call_id) is done:
                del self._finished[done.call_id]
            url = done.callback if done.known else looked_up.get(done.call_id)
            sending = not (self._closing or self._stopping)
            if isinstance(url, str) and self._callbacks is not None and sending:
                self._callbacks.send(
                    done.call_id, url, done.json(), org=done.org, sandbox=done.sandbox
                )  # else sent after restart

    def stopping(self) -> None:
        """The engine is about to stop: results still come (calls cut off by the stop), but
        their callbacks wait for the next start, where owed callbacks are sent. Sending
        one now could be cut off after delivery and sent twice."""
        self._stopping = True

    async def aclose(self) -> None:
        """Stop callbacks (owed ones are resent after the next start) and write the rest."""
        self._closing = True
        if self._callbacks is not None:
            await self._callbacks.aclose()
        self._wake.set()
        self._urgent.set()  # a write gathering calls goes at once
        if self._writer is not None and not self._writer.done():
            await self._writer
        elif self._pending:  # never started, or stopped: write what the gate reported anyway
            await self._write()


def _original(journey: str, outcome: str | None, callback: str | None,
              kept: Kept | None) -> Original:  # fmt: skip
    if outcome == Outcome.SUCCESS.value:
        return Original(
            journey=journey,
            callback_url=callback,
            request=None,
            missing="it succeeded; only a call that did not can be replayed",
        )
    missing = "" if kept is not None else (
        "its request was not kept (a call cut off by a crash of the service, or one that "
        "ended before the service kept requests)")  # fmt: skip
    return Original(journey=journey, callback_url=callback, request=kept, missing=missing)

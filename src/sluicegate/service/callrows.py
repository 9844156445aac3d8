"""What the call log keeps about a call, and the one transaction that writes a batch of it.

A row of the ``calls`` table is inserted in state ``accepted`` when the service accepts
a call (with its ``callback_url`` and ``idempotency_key``), becomes ``queued`` when
throttling queued it, and ``done`` with its result view (JSON) when the call ends. A call
that ends without a row (its row was lost in a crash) gets a complete row then.
``callback_due`` is 1 from the moment the result of a call with a callback is written
until the callback is settled.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from sluicegate.backends.database import Connection
from sluicegate.handle import CallState
from sluicegate.outcomes import INTERRUPTED, AttemptError, CallResult, ErrorKind, Outcome
from sluicegate.service.callview import view_json

ACCEPTED, QUEUED, DONE = "accepted", "queued", "done"


@dataclass(slots=True, kw_only=True)
class Accepted:
    """A call accepted by the service; ``queued`` once throttling queued it."""

    call_id: str
    org: str
    sandbox: str
    journey: str
    created_at: float
    callback_url: str | None = None
    idempotency_key: str | None = None
    queued: bool = False


@dataclass(slots=True, kw_only=True)
class Finished:
    """A finished call whose result is not written yet.

    ``callback`` is its callback URL when ``known``; a call that waited in a queue holds
    nothing in memory, so its callback is not known, and the write reads it from the row.
    A ``guarded`` result is one made up for a call whose own result is not known (it was
    cut off by a stop): it is written only over a row that has no result yet, and its
    callback (read from the row) is sent only then.
    """

    call_id: str
    org: str
    sandbox: str
    journey: str
    at: float
    result: CallResult
    callback: str | None
    known: bool
    guarded: bool = False
    _json: str | None = field(default=None, repr=False)

    def json(self) -> str:
        """The result view as JSON, built once (by a request or by the write)."""
        if self._json is None:
            self._json = view_json(self.result)
        return self._json


@dataclass(frozen=True, slots=True)
class Found:
    """A call as lookups see it: its state, and its result view (JSON) once done."""

    call_id: str
    state: CallState
    json: str | None = None


@dataclass(slots=True)
class Batch:
    """Everything waiting for the next write."""

    accepted: list[Accepted] = field(default_factory=list)
    queued: list[str] = field(default_factory=list)
    finished: list[Finished] = field(default_factory=list)
    settled: list[str] = field(default_factory=list)
    withdrawn: list[str] = field(default_factory=list)
    waiters: list[tuple[asyncio.Future[None], Accepted]] = field(default_factory=list)
    written: list[asyncio.Future[None]] = field(default_factory=list)  # see CallLog.written

    def __bool__(self) -> bool:
        return bool(self.accepted or self.queued or self.finished or self.settled
                    or self.withdrawn or self.written)  # fmt: skip


def interrupted(call_id: str) -> CallResult:
    """The result given to a call that was running when the engine stopped."""
    error = AttemptError(kind=ErrorKind.NETWORK, message=INTERRUPTED)
    return CallResult(call_id=call_id, outcome=Outcome.NETWORK_ERROR, attempts=0, retries=0,
                      slots=0, queued_ms=0.0, execution_ms=0.0, endpoint="",
                      error=error)  # fmt: skip


_INSERT = (
    "INSERT INTO calls (call_id, org, sandbox, journey, state, callback_url, "
    "idempotency_key, created_at, result, callback_due) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, NULL, 0) ON CONFLICT DO NOTHING"
)
_DONE = (
    "INSERT INTO calls (call_id, org, sandbox, journey, state, created_at, result, "
    "callback_due) VALUES (?, ?, ?, ?, 'done', ?, ?, 0) ON CONFLICT (call_id) DO UPDATE "
    "SET state = 'done', result = excluded.result, "
    "callback_due = CASE WHEN calls.callback_url IS NULL THEN 0 ELSE 1 END"
)
_DONE_LOOKUP = f"{_DONE} RETURNING callback_url"
_WHOLE = (
    "INSERT INTO calls (call_id, org, sandbox, journey, state, callback_url, "
    "idempotency_key, created_at, result, callback_due) "
    "VALUES (?, ?, ?, ?, 'done', ?, ?, ?, ?, ?) ON CONFLICT (call_id) DO UPDATE "
    "SET state = 'done', result = excluded.result, callback_due = excluded.callback_due"
)
_DONE_GUARDED = f"{_DONE} WHERE calls.state != 'done' RETURNING callback_url"


def write_batch(batch: Batch, prune: float | None, conn: Connection) -> dict[str, str]:
    """Write ``batch`` in one transaction (on the database thread); delete results older
    than ``prune``. Returns the callback URLs of the ended calls not ``known``.

    A call accepted and ended within one batch (most calls that run at once) is written
    once, whole: one row insert per call rather than an insert and an update. One
    accepted and withdrawn within it (refused by the engine) is not written at all."""
    found: dict[str, str] = {}
    ended = {f.call_id: f for f in batch.finished if f.known}
    withdrawn = set(batch.withdrawn)
    accepted, whole = [], []
    for a in batch.accepted:
        if a.call_id in withdrawn:  # accepted and withdrawn since the last batch: no row
            withdrawn.discard(a.call_id)
            continue
        f = ended.pop(a.call_id, None)
        if f is None:
            accepted.append(a)
        else:
            whole.append((a, f))
    with conn:
        conn.executemany(_INSERT, [
            (a.call_id, a.org, a.sandbox, a.journey, QUEUED if a.queued else ACCEPTED,
             a.callback_url, a.idempotency_key, a.created_at) for a in accepted])  # fmt: skip
        conn.executemany(_WHOLE, [
            (a.call_id, a.org, a.sandbox, a.journey, a.callback_url, a.idempotency_key,
             a.created_at, f.json(), int(a.callback_url is not None))
            for a, f in whole])  # fmt: skip
        conn.executemany("UPDATE calls SET state = 'queued' WHERE call_id = ? "
                         "AND state = 'accepted'", [(i,) for i in batch.queued])  # fmt: skip
        conn.executemany(_DONE, [(f.call_id, f.org, f.sandbox, f.journey, f.at, f.json())
                                 for f in ended.values()])  # fmt: skip
        for f in batch.finished:
            if not f.known:
                row = (f.call_id, f.org, f.sandbox, f.journey, f.at, f.json())
                written = conn.execute(_DONE_GUARDED if f.guarded else _DONE_LOOKUP, row)
                url = next(iter(written.fetchone() or ()), None)  # no row: not written
                if url is not None:
                    found[f.call_id] = url
        conn.executemany("UPDATE calls SET callback_due = 0 WHERE call_id = ?",
                         [(call_id,) for call_id in batch.settled])  # fmt: skip
        conn.executemany("DELETE FROM calls WHERE call_id = ? AND state != 'done'",
                         [(call_id,) for call_id in withdrawn])  # fmt: skip
        if prune is not None:
            conn.execute("DELETE FROM calls WHERE state = 'done' AND callback_due = 0 "
                         "AND created_at < ?", (prune,))  # fmt: skip
    return found

"""What the call log keeps about a call, and the one transaction that writes a batch of it.

A row of the ``calls`` table is inserted in state ``accepted`` when the service accepts
a call (with its ``callback_url``, ``idempotency_key`` and :class:`RequestLine`), becomes
``queued`` when throttling queued it, and ``done`` with its result view (JSON) when the
call ends. A call that ends without a row (its row was lost in a crash) gets a complete
row then. ``callback_due`` is 1 from the moment the result of a call with a callback is
written until the callback is settled.

An ended row also gets what listings filter on (``outcome``, ``status``, ``endpoint``,
``ended_at``) and ``seq``: its place in the order results were written, counted per org
and sandbox in ``call_sequences``. The counter is taken in the transaction that writes
the rows, and held until it commits, so that numbers are committed in the order they are
given, on SQLite and on a PostgreSQL that several instances write alike: a reader that
sees number ``n`` sees every smaller one, and a cursor on ``seq`` never passes a call
whose result is written later. A call that did not succeed keeps its request (``request``,
see :mod:`~sluicegate.service.replays`) for a replay.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field

from sluicegate.backends.database import Connection
from sluicegate.call import DEFAULT_PORTS, Call
from sluicegate.handle import CallState
from sluicegate.outcomes import INTERRUPTED, AttemptError, CallResult, ErrorKind, Outcome
from sluicegate.sealing import Sealer
from sluicegate.service.callview import view_json
from sluicegate.service.replays import keep

ACCEPTED, QUEUED, DONE = "accepted", "queued", "done"


@dataclass(frozen=True, slots=True, kw_only=True)
class RequestLine:
    """What listings show of a call's request: its service, method, host, and URL without
    userinfo, query or fragment (they often carry credentials or a customer's data; the
    whole request is kept only to replay a call that failed, sealed with a data key)."""

    service: str
    method: str
    url: str
    host: str

    @classmethod
    def of(cls, call: Call) -> RequestLine:
        target = call.target
        host = f"[{target.host}]" if ":" in target.host else target.host
        port = "" if DEFAULT_PORTS.get(target.scheme) == target.port else f":{target.port}"
        return cls(service=call.service.value, method=call.method, host=target.host,
                   url=f"{target.scheme}://{host}{port}{target.path}")  # fmt: skip


@dataclass(slots=True, kw_only=True)
class Accepted:
    """A call accepted by the service; ``queued`` once throttling queued it."""

    call_id: str
    org: str
    sandbox: str
    journey: str
    created_at: float
    line: RequestLine
    callback_url: str | None = None
    idempotency_key: str | None = None
    replay_of: str | None = None
    queued: bool = False


@dataclass(slots=True, kw_only=True)
class Finished:
    """A finished call whose result is not written yet.

    ``callback`` is its callback URL when ``known``; a call that waited in a queue holds
    nothing in memory, so its callback is not known, and the write reads it from the row
    (``line`` is then given, for a row lost in a crash). A ``guarded`` result is one made up
    for a call whose own result is not known (it was cut off by a stop): it is written only
    over a row that has no result yet, and its callback (read from the row) is sent only
    then. ``call`` is the request of a call that did not succeed, kept for a replay.
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
    line: RequestLine | None = None
    call: Call | None = None
    _json: str | None = field(default=None, repr=False)
    _kept: bytes | None = field(default=None, repr=False)

    def json(self) -> str:
        """The result view as JSON, built once (by a request or by the write)."""
        if self._json is None:
            self._json = view_json(self.result)
        return self._json

    def encode_request(self, sealer: Sealer | None) -> None:
        """Encode the kept request (sealed with ``sealer``), before the write reads it."""
        if self.call is not None and self._kept is None:
            self._kept = keep(self.call, self.call_id, sealer)

    @property
    def kept(self) -> bytes | None:
        return self._kept

    @property
    def status(self) -> int | None:
        response = self.result.response
        return None if response is None else response.status


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


_LINE = "service, method, url, host"
_ENDED = "seq, ended_at, outcome, status, endpoint, request"
# A call that ends again (a queued call delivered once more after a crash) keeps its place
# in the listings: a pager would otherwise skip it, and a tail show it twice.
_ENDED_SET = ", ".join(
    f"{c} = excluded.{c}"
    if c != "seq"
    else "seq = CASE WHEN calls.state = 'done' THEN calls.seq ELSE excluded.seq END"
    for c in _ENDED.split(", ")
)
_LINE_KEPT = ", ".join(f"{c} = coalesce(calls.{c}, excluded.{c})" for c in _LINE.split(", "))
_INSERT = (
    "INSERT INTO calls (call_id, org, sandbox, journey, state, callback_url, "
    f"idempotency_key, created_at, result, callback_due, replay_of, {_LINE}) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, NULL, 0, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING"
)
_DONE = (
    "INSERT INTO calls (call_id, org, sandbox, journey, state, created_at, result, "
    f"callback_due, {_LINE}, {_ENDED}) VALUES (?, ?, ?, ?, 'done', ?, ?, 0, ?, ?, ?, ?, "
    "?, ?, ?, ?, ?, ?) ON CONFLICT (call_id) DO UPDATE "
    f"SET state = 'done', result = excluded.result, {_ENDED_SET}, {_LINE_KEPT}, "
    "callback_due = CASE WHEN calls.callback_url IS NULL THEN 0 ELSE 1 END"
)
_DONE_LOOKUP = f"{_DONE} RETURNING callback_url"
_WHOLE = (
    "INSERT INTO calls (call_id, org, sandbox, journey, state, callback_url, "
    f"idempotency_key, created_at, result, callback_due, replay_of, {_LINE}, {_ENDED}) "
    "VALUES (?, ?, ?, ?, 'done', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (call_id) DO UPDATE SET state = 'done', result = excluded.result, "
    f"callback_due = excluded.callback_due, {_ENDED_SET}"
)
_DONE_GUARDED = f"{_DONE} WHERE calls.state != 'done' RETURNING callback_url"
#: Takes ``n`` numbers of an org and sandbox's counter; returns the last one taken.
_NUMBER = (
    "INSERT INTO call_sequences (org, sandbox, last) VALUES (?, ?, ?) "
    "ON CONFLICT (org, sandbox) DO UPDATE SET last = call_sequences.last + excluded.last "
    "RETURNING last"
)


def _line(line: RequestLine | None) -> tuple[str | None, ...]:
    if line is None:
        return (None, None, None, None)
    return (line.service, line.method, line.url, line.host)


def _ended(f: Finished, seq: int) -> tuple[object, ...]:
    return (seq, f.at, f.result.outcome.value, f.status, f.result.endpoint or None, f.kept)


def _numbers(conn: Connection, finished: Sequence[Finished]) -> dict[int, int]:
    """The number of each of ``finished`` (by ``id``) in its org and sandbox, in the order
    they ended. The counters are taken in one order, so that two writers of a shared
    database never wait for each other in a cycle."""
    counts: dict[tuple[str, str], int] = {}
    for f in finished:
        counts[f.org, f.sandbox] = counts.get((f.org, f.sandbox), 0) + 1
    first: dict[tuple[str, str], int] = {}
    for key in sorted(counts):
        last = conn.execute(_NUMBER, (*key, counts[key])).fetchone()[0]
        first[key] = int(last) - counts[key] + 1
    numbers = {}
    for f in finished:
        numbers[id(f)] = first[f.org, f.sandbox]
        first[f.org, f.sandbox] += 1
    return numbers


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
             a.callback_url, a.idempotency_key, a.created_at, a.replay_of, *_line(a.line))
            for a in accepted])  # fmt: skip
        conn.executemany("UPDATE calls SET state = 'queued' WHERE call_id = ? "
                         "AND state = 'accepted'", [(i,) for i in batch.queued])  # fmt: skip
        # Numbered last: in PostgreSQL the counter's row stays locked until the commit.
        seq = _numbers(conn, batch.finished) if batch.finished else {}
        conn.executemany(_WHOLE, [
            (a.call_id, a.org, a.sandbox, a.journey, a.callback_url, a.idempotency_key,
             a.created_at, f.json(), int(a.callback_url is not None), a.replay_of,
             *_line(a.line), *_ended(f, seq[id(f)]))
            for a, f in whole])  # fmt: skip
        conn.executemany(_DONE, [(f.call_id, f.org, f.sandbox, f.journey, f.at, f.json(),
                                  *_line(f.line), *_ended(f, seq[id(f)]))
                                 for f in ended.values()])  # fmt: skip
        for f in batch.finished:
            if not f.known:
                row = (f.call_id, f.org, f.sandbox, f.journey, f.at, f.json(), *_line(f.line),
                       *_ended(f, seq[id(f)]))  # fmt: skip
                written = conn.execute(_DONE_GUARDED if f.guarded else _DONE_LOOKUP, row)
                url = next(iter(written.fetchone() or ()), None)  # no row: not written
                if url is not None:
                    found[f.call_id] = url
        conn.executemany("UPDATE calls SET callback_due = 0 WHERE call_id = ?",
                         [(call_id,) for call_id in batch.settled])  # fmt: skip
        conn.executemany("DELETE FROM calls WHERE call_id = ? AND state != 'done'",
                         [(call_id,) for call_id in withdrawn])  # fmt: skip
    if prune is not None:  # apart: a large delete must not hold the counters' locks
        with conn:
            conn.execute("DELETE FROM calls WHERE state = 'done' AND callback_due = 0 "
                         "AND created_at < ?", (prune,))  # fmt: skip
    return found

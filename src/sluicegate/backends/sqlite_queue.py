"""The throttling queues of the SQLite backend: rows of ``queued_calls`` in ``seq`` order.

The schema is :mod:`.sqlite`'s. A queue's claimed calls are the rows at or before its
cursor, kept in memory: claiming writes nothing, and after a restart (cursor 0) every
call not removed is delivered again. With a :class:`~sluicegate.sealing.Sealer`, a row's
URL, headers and body are sealed in its ``body`` (its ``url`` and ``headers`` empty). A
paused queue is a row of ``paused_queues``, and a name in memory that claims read.
"""

from __future__ import annotations

import asyncio
import bisect
import itertools
import json
import logging
import sqlite3
from collections import defaultdict
from collections.abc import Sequence
from functools import partial
from typing import Any

from sluicegate.backends.commits import GroupCommit
from sluicegate.backends.database import Database
from sluicegate.call import Call, Service, is_text
from sluicegate.errors import InvalidCall, StorageError
from sluicegate.sealing import Sealer
from sluicegate.storage import QueuedCall, QueueDepth, Stored

_COLUMNS = (
    "call_id, queue, enqueued_at, rate, org, sandbox, journey, service, method, url, "
    "headers, body, timeout_seconds"
)
_PUSH = f"INSERT INTO queued_calls ({_COLUMNS}) VALUES ({', '.join('?' * 13)})"
_REMOVE = "DELETE FROM queued_calls WHERE call_id = ?"
#: The oldest and the newest sealed calls: both must open (a key rotation keeps both).
_SEALED_ENDS = ("SELECT call_id, body FROM queued_calls WHERE seq IN ("
                "(SELECT min(seq) FROM queued_calls WHERE headers = ''), "
                "(SELECT max(seq) FROM queued_calls WHERE headers = ''))")  # fmt: skip
_encode_json = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


log = logging.getLogger(__name__)


def _to_row(item: QueuedCall, sealer: Sealer | None) -> tuple[Any, ...]:
    """The row of ``item``; with a sealer, its URL, headers and body sealed in ``body``
    (``url`` and ``headers`` empty: a plain row's headers are never empty)."""
    call = item.call
    url, body = call.url, bytes(call.body)
    if sealer is None:
        headers = _encode_json(dict(call.headers)) if call.headers else "{}"
    else:
        secret = _encode_json([url, dict(call.headers)]).encode() + b"\n" + body
        url, headers, body = "", "", sealer.seal(secret, item.call_id)
    return (
        item.call_id, item.queue, item.enqueued_at, item.rate, call.org, call.sandbox,
        call.journey, str(call.service), call.method, url, headers, body, call.timeout_seconds,
    )  # fmt: skip


def _from_row(row: Sequence[Any], sealer: Sealer | None) -> QueuedCall:
    call_id, queue, enqueued_at, rate, org, sandbox, journey, service = row[:8]
    method, url, headers, body, timeout_seconds = row[8:13]
    try:
        if headers:
            headers = json.loads(headers)
        else:  # sealed (see _to_row)
            if sealer is None:
                raise StorageError(f"queued call {call_id!r} is sealed and no data key is given")
            meta, _, body = sealer.open(bytes(body), call_id).partition(b"\n")
            url, headers = json.loads(meta)
        call = Call(
            org=org, sandbox=sandbox, journey=journey, service=Service(service),
            method=method, url=url, headers=headers, body=bytes(body),
            timeout_seconds=timeout_seconds,
        )  # fmt: skip
    except ValueError as exc:
        raise StorageError(f"queued call {call_id!r} cannot be read back: {exc}") from exc
    return QueuedCall(call_id=call_id, queue=queue, call=call, enqueued_at=enqueued_at, rate=rate)


def _head(queue: str, after: int, count: int, conn: sqlite3.Connection) -> list[Any]:
    sql = (f"SELECT seq, {_COLUMNS} FROM queued_calls WHERE queue = ? AND seq > ? "
           "ORDER BY seq LIMIT ?")  # fmt: skip
    return conn.execute(sql, (queue, after, count)).fetchall()


def _claim(
    queue: str, returned: list[int], after: int, count: int, conn: sqlite3.Connection
) -> list[Any]:
    """The rows put back (``returned``), then the head after the cursor: ``count`` in all."""
    marks = ", ".join("?" * len(returned))
    sql = f"SELECT seq, {_COLUMNS} FROM queued_calls WHERE seq IN ({marks}) ORDER BY seq"
    rows = conn.execute(sql, returned).fetchall() if returned else []
    return rows + _head(queue, after, count - len(rows), conn)


def _purge(
    queue: str,
    returned: list[int],
    after: int,
    count: int,
    sealer: Sealer | None,
    conn: sqlite3.Connection,
) -> tuple[list[int], list[QueuedCall]]:
    """Delete the rows a claim would take: their seqs, and their calls. A row that cannot
    be read back (sealed with a key this process lacks) is logged and left out of the
    calls: it is purged all the same, as in the other stores."""
    rows = _claim(queue, returned, after, count, conn)
    items = []
    for row in rows:
        try:
            items.append(_from_row(row[1:], sealer))
        except StorageError as exc:
            log.error("purged call %s not reported: %s", row[1], exc)
    with conn:
        conn.executemany("DELETE FROM queued_calls WHERE seq = ?", [(r[0],) for r in rows])
    return [row[0] for row in rows], items


def _expire(
    queue: str, after: int, cutoff: float, conn: sqlite3.Connection
) -> tuple[list[Any], float | None]:
    """Delete the head rows enqueued at or before ``cutoff``: those rows, and the enqueue
    time of the new head (``None`` when none is left)."""
    expired = []
    while True:
        rows = _head(queue, after, 500, conn)
        old = list(itertools.takewhile(lambda row: row[3] <= cutoff, rows))
        if old:
            with conn:
                conn.executemany("DELETE FROM queued_calls WHERE seq = ?", [(r[0],) for r in old])
            expired += old
        if not rows:
            return expired, None
        if len(old) < len(rows):
            return expired, rows[len(old)][3]


class SqliteQueueStore:
    """Queues as rows ordered by ``seq``; the depth and cursor of each queue in memory."""

    shared = False

    def __init__(self, db: Database, commits: GroupCommit, sealer: Sealer | None) -> None:
        self._db = db
        self._commits = commits
        self._sealer = sealer
        self._depth: dict[str, int] = defaultdict(int)
        self._cursor: dict[str, int] = defaultdict(int)  # the last seq claimed
        self._claimed: set[str] = set()
        self._returned: dict[str, list[int]] = defaultdict(list)  # put back: claimed first
        self._paused: set[str] = set()
        self._claiming = asyncio.Lock()  # a claim moves the cursor after its read: no purge

    async def push(self, item: QueuedCall) -> None:
        # A string SQLite cannot encode would fail the whole group commit, every other
        # writer's rows with it: refused here, it fails its own call alone.
        try:
            row: tuple[Any, ...] | None = _to_row(item, self._sealer)
        except UnicodeEncodeError:  # sealing encodes the text itself
            row = None
        if row is None or not all(is_text(value) for value in row if isinstance(value, str)):
            raise InvalidCall("INVALID_CALL", "a queued call must be valid Unicode throughout")
        self._depth[item.queue] += 1
        batch = self._commits.add(_PUSH, row)
        try:
            await self._commits.committed(batch)
        except StorageError:
            self._depth[item.queue] -= 1
            raise

    async def claim(self, queue: str, count: int) -> list[QueuedCall]:
        async with self._claiming:
            if queue in self._paused:
                return []
            returned = self._returned[queue][:count]  # before the cursor: ahead of the others
            rows = await self._db.run(
                "claiming calls", partial(_claim, queue, returned, self._cursor[queue], count)
            )
            # First: a row it cannot read moves nothing.
            items = [_from_row(row[1:], self._sealer) for row in rows]
            if items:
                del self._returned[queue][: len(returned)]
                self._cursor[queue] = max(self._cursor[queue], rows[-1][0])
                self._depth[queue] -= len(rows)
                self._claimed.update(item.call_id for item in items)
            return items

    async def purge(self, queue: str, count: int) -> list[QueuedCall]:
        await self._commits.flush()  # every push that returned, or is being written, counts
        async with self._claiming:
            returned = self._returned[queue][:count]
            seqs, items = await self._db.run("purging calls", partial(
                _purge, queue, returned, self._cursor[queue], count, self._sealer))  # fmt: skip
            gone = set(seqs)
            self._returned[queue] = [seq for seq in self._returned[queue] if seq not in gone]
            self._depth[queue] -= len(seqs)
            return items

    async def pause(self, queue: str) -> None:
        sql = "INSERT INTO paused_queues (queue) VALUES (?) ON CONFLICT DO NOTHING"
        await self._db.execute("pausing a queue", sql, (queue,))
        self._paused.add(queue)

    async def resume(self, queue: str) -> None:
        sql = "DELETE FROM paused_queues WHERE queue = ?"
        await self._db.execute("resuming a queue", sql, (queue,))
        self._paused.discard(queue)

    def paused(self, queue: str) -> bool:
        return queue in self._paused

    def holds(self, queue: str) -> bool:
        """Whether ``queue`` holds newcomers back: calls wait in it, or it is paused."""
        return self._depth.get(queue, 0) > 0 or queue in self._paused

    async def expire(self, queue: str, cutoff: float) -> tuple[list[QueuedCall], float | None]:
        rows, head = await self._db.run(
            "expiring calls", partial(_expire, queue, self._cursor[queue], cutoff)
        )
        self._depth[queue] -= len(rows)
        return [_from_row(row[1:], self._sealer) for row in rows], head

    async def remove(self, call_id: str) -> None:
        if call_id in self._claimed:  # the usual case: a dispatched call ended
            self._claimed.discard(call_id)
            self._commits.add(_REMOVE, (call_id,))
            return
        await self._commits.flush()  # a push still being written must be seen
        sql = f"{_REMOVE} RETURNING seq, queue"
        rows = await self._db.execute("removing a call", sql, (call_id,))
        for seq, queue in rows:
            if seq > self._cursor[queue]:
                self._depth[queue] -= 1
            elif seq in self._returned[queue]:
                self._returned[queue].remove(seq)
                self._depth[queue] -= 1
            else:  # claimed meanwhile
                self._claimed.discard(call_id)

    async def unclaim(self, call_id: str) -> None:
        if call_id not in self._claimed:
            return
        rows = await self._db.execute(
            "putting a call back", "SELECT seq, queue FROM queued_calls WHERE call_id = ?",
            (call_id,),
        )  # fmt: skip
        self._claimed.discard(call_id)
        for seq, queue in rows:
            bisect.insort(self._returned[queue], seq)
            self._depth[queue] += 1

    async def reclaim(self) -> None:
        await self._commits.flush()
        rows = await self._db.execute(
            "counting queued calls", "SELECT queue, count(*) FROM queued_calls GROUP BY queue"
        )
        self._depth = defaultdict(int, rows)
        paused = await self._db.execute("reading paused queues", "SELECT queue FROM paused_queues")
        self._paused = {queue for (queue,) in paused}
        self._cursor.clear()
        self._claimed.clear()
        self._returned.clear()

    def depth(self, queue: str) -> int:
        return self._depth.get(queue, 0)

    async def queues(self) -> list[QueueDepth]:
        found = []
        names = [queue for queue, depth in self._depth.items() if depth > 0]
        for queue in names + sorted(self._paused.difference(names)):
            depth, paused = self._depth.get(queue, 0), queue in self._paused
            rows = [] if depth <= 0 else await self._db.run(
                "reading a queue", partial(_claim, queue, self._returned[queue][:1],
                                           self._cursor[queue], 1))  # fmt: skip
            if rows:
                found.append(QueueDepth(queue=queue, depth=depth, oldest=rows[0][3],
                                        rate=rows[0][4], paused=paused))  # fmt: skip
            elif paused:
                found.append(QueueDepth(queue=queue, depth=0, oldest=None, rate=0, paused=True))
        return found

    async def find(self, call_id: str) -> Stored | None:
        rows = await self._db.execute(
            "finding a call", "SELECT seq, queue FROM queued_calls WHERE call_id = ?", (call_id,)
        )
        if not rows:
            return None
        seq, queue = rows[0]
        if seq > self._cursor[queue] or seq in self._returned[queue]:
            return "queued"
        return "claimed" if call_id in self._claimed else None  # else: its removal is buffered


async def check_sealed(db: Database, sealer: Sealer | None) -> None:
    """Raise :class:`StorageError` unless ``sealer`` opens the oldest and the newest
    sealed calls of ``db``: calls it cannot open would be stuck (a wrong key, none, or a
    rotation that dropped a key still in use)."""
    for call_id, body in await db.execute("reading sealed calls", _SEALED_ENDS):
        if sealer is None:
            raise StorageError(f"{db.file} holds sealed calls: give its data key")
        sealer.open(bytes(body), call_id)

"""The embedded durable backend: one SQLite file, one writer thread, group commit.

Contract: a push that returned is committed and survives a SIGKILL of the process; so are
config writes and every slot reservation before its request leaves. Queued calls live in
the file, not in memory: a million of them cost disk, and a restart reads only the
depth of each queue. Choices:

* WAL with ``synchronous=NORMAL`` (see :mod:`sluicegate.backends.database`): a commit
  survives SIGKILL; only an OS crash or power loss can lose the last ones.
* ``locking_mode=EXCLUSIVE``: a data directory is held by one engine until it closes or dies.
  Two engines sharing a journal would both dispatch every queued call: the second one fails.
* Slots are decided in memory (one process owns its limiter) and journaled, each send
  time after its request left. A reservation is committed before its request is written,
  except that up to a limit's *spare* (1% of its count, at least 1) may leave while their
  commit is still on its way: the first reservation of a limit in a process waits for its
  commit, which also records the limit and its spare (``slot_spares``). After a crash a
  reservation never stamped counts as sent at the restart, and each recorded limit holds
  its spare slots as sent at the restart too, for one period: what may have left unwritten
  is counted, so the windows stay exact. A graceful stop, having written everything,
  clears ``slot_spares``. Requests then seldom wait for the disk: under load commits are
  shared anyway, and one call at a time no longer pays a whole commit (about 350 µs).
* A queue's claimed calls are the rows at or before its cursor, kept in memory: claiming
  writes nothing, and after a restart (cursor 0) every call not removed is delivered again.
"""

from __future__ import annotations

import bisect
import itertools
import json
import sqlite3
from collections import defaultdict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any

from sluicegate.backends.commits import GroupCommit
from sluicegate.backends.database import Database
from sluicegate.backends.sqlite_slots import SqliteSlotStore, recover_slots
from sluicegate.call import Call, Service, is_text
from sluicegate.connections import ConnectionLimits
from sluicegate.errors import InvalidCall, StorageError
from sluicegate.storage import QueuedCall, QueueDepth, Stored

DB_NAME = "sluicegate.db"
SCHEMA_VERSION = 2

_SCHEMA = """
CREATE TABLE IF NOT EXISTS queued_calls (seq INTEGER PRIMARY KEY AUTOINCREMENT,
    call_id TEXT NOT NULL UNIQUE, queue TEXT NOT NULL, enqueued_at REAL NOT NULL,
    rate INTEGER NOT NULL, org TEXT NOT NULL, sandbox TEXT NOT NULL, journey TEXT NOT NULL,
    service TEXT NOT NULL, method TEXT NOT NULL, url TEXT NOT NULL, headers TEXT NOT NULL,
    body BLOB NOT NULL, timeout_seconds REAL NOT NULL);
CREATE INDEX IF NOT EXISTS queued_by_queue ON queued_calls (queue, seq);
CREATE TABLE IF NOT EXISTS configs (seq INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL, uid TEXT NOT NULL, doc TEXT NOT NULL, UNIQUE (kind, uid));
CREATE TABLE IF NOT EXISTS slots (ticket INTEGER NOT NULL, key TEXT NOT NULL,
    count INTEGER NOT NULL, period_ms INTEGER NOT NULL, sent_ms INTEGER, expires_ms INTEGER,
    PRIMARY KEY (ticket, key)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS slots_by_expiry ON slots (expires_ms);
CREATE TABLE IF NOT EXISTS slot_spares (key TEXT PRIMARY KEY, count INTEGER NOT NULL,
    period_ms INTEGER NOT NULL, spare INTEGER NOT NULL) WITHOUT ROWID;
DROP TABLE IF EXISTS windows"""
_COLUMNS = (
    "call_id, queue, enqueued_at, rate, org, sandbox, journey, service, method, url, "
    "headers, body, timeout_seconds"
)
_PUSH = f"INSERT INTO queued_calls ({_COLUMNS}) VALUES ({', '.join('?' * 13)})"
_REMOVE = "DELETE FROM queued_calls WHERE call_id = ?"
_encode_headers = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def _to_row(item: QueuedCall) -> tuple[Any, ...]:
    call = item.call
    headers = _encode_headers(dict(call.headers)) if call.headers else "{}"
    return (
        item.call_id, item.queue, item.enqueued_at, item.rate, call.org, call.sandbox,
        call.journey, str(call.service), call.method, call.url, headers, bytes(call.body),
        call.timeout_seconds,
    )  # fmt: skip


def _from_row(row: Sequence[Any]) -> QueuedCall:
    call_id, queue, enqueued_at, rate, org, sandbox, journey, service = row[:8]
    method, url, headers, body, timeout_seconds = row[8:13]
    try:
        call = Call(
            org=org, sandbox=sandbox, journey=journey, service=Service(service),
            method=method, url=url, headers=json.loads(headers), body=bytes(body),
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

    def __init__(self, db: Database, commits: GroupCommit) -> None:
        self._db = db
        self._commits = commits
        self._depth: dict[str, int] = defaultdict(int)
        self._cursor: dict[str, int] = defaultdict(int)  # the last seq claimed
        self._claimed: set[str] = set()
        self._returned: dict[str, list[int]] = defaultdict(list)  # put back: claimed first

    async def push(self, item: QueuedCall) -> None:
        row = _to_row(item)
        # A string SQLite cannot encode would fail the whole group commit, every other
        # writer's rows with it: refused here, it fails its own call alone.
        if not all(is_text(value) for value in row if isinstance(value, str)):
            raise InvalidCall("INVALID_CALL", "a queued call must be valid Unicode throughout")
        self._depth[item.queue] += 1
        batch = self._commits.add(_PUSH, row)
        try:
            await self._commits.committed(batch)
        except StorageError:
            self._depth[item.queue] -= 1
            raise

    async def claim(self, queue: str, count: int) -> list[QueuedCall]:
        returned = self._returned[queue][:count]  # before the cursor: ahead of the others
        rows = await self._db.run(
            "claiming calls", partial(_claim, queue, returned, self._cursor[queue], count)
        )
        items = [_from_row(row[1:]) for row in rows]  # first: a row it cannot read moves nothing
        if items:
            del self._returned[queue][: len(returned)]
            self._cursor[queue] = max(self._cursor[queue], rows[-1][0])
            self._depth[queue] -= len(rows)
            self._claimed.update(item.call_id for item in items)
        return items

    async def expire(self, queue: str, cutoff: float) -> tuple[list[QueuedCall], float | None]:
        rows, head = await self._db.run(
            "expiring calls", partial(_expire, queue, self._cursor[queue], cutoff)
        )
        self._depth[queue] -= len(rows)
        return [_from_row(row[1:]) for row in rows], head

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
        self._cursor.clear()
        self._claimed.clear()
        self._returned.clear()

    def depth(self, queue: str) -> int:
        return self._depth.get(queue, 0)

    async def queues(self) -> list[QueueDepth]:
        found = []
        for queue, depth in list(self._depth.items()):
            if depth <= 0:
                continue
            rows = await self._db.run(
                "reading a queue", partial(_head, queue, self._cursor[queue], 1)
            )
            if rows:
                found.append(
                    QueueDepth(queue=queue, depth=depth, oldest=rows[0][3], rate=rows[0][4])
                )
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


class SqliteConfigStore:
    """Config documents as JSON rows; an upsert keeps a document's original place."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def save(self, kind: str, uid: str, doc: Mapping[str, Any]) -> None:
        try:
            text = json.dumps(dict(doc), ensure_ascii=False)
        except (TypeError, ValueError) as exc:
            raise StorageError(f"{kind} config {uid!r} is not JSON-ready: {exc}") from exc
        sql = (
            "INSERT INTO configs (kind, uid, doc) VALUES (?, ?, ?) "
            "ON CONFLICT (kind, uid) DO UPDATE SET doc = excluded.doc"
        )
        await self._db.execute(f"saving {kind} config {uid!r}", sql, (kind, uid, text))

    async def delete(self, kind: str, uid: str) -> None:
        sql = "DELETE FROM configs WHERE kind = ? AND uid = ?"
        await self._db.execute(f"deleting {kind} config {uid!r}", sql, (kind, uid))

    async def load(self) -> list[tuple[str, dict[str, Any]]]:
        rows = await self._db.execute(
            "loading configs", "SELECT kind, doc FROM configs ORDER BY seq"
        )
        return [(kind, json.loads(doc)) for kind, doc in rows]

    async def follow(self, changed: Callable[[], Awaitable[None]]) -> None:
        return None  # the file is held by this process alone


class SqliteBackend:
    """Queues, configs and the slot journal in ``<path>/sluicegate.db``. Build with
    :meth:`open`, then :meth:`recover` before use."""

    def __init__(self, db: Database) -> None:
        self.file = db.file
        self._db = db
        self._commits = GroupCommit(db)
        self.queue = SqliteQueueStore(db, self._commits)
        self.slots = SqliteSlotStore(self._commits, self.queue.depth)
        self.configs = SqliteConfigStore(db)
        self.connections = ConnectionLimits()
        self._closed = False

    @classmethod
    async def open(cls, path: Path) -> SqliteBackend:
        """Open (creating if missing) the data directory ``path`` and its database."""
        db = Database(Path(path) / DB_NAME, schema=_SCHEMA, version=SCHEMA_VERSION)
        await db.start(exclusive=True)
        return cls(db)

    async def recover(self, now_ms: int) -> None:
        rows, ticket = await self._db.run("recovering slots", partial(recover_slots, now_ms))
        self.slots.restore(rows, ticket)
        await self.queue.reclaim()

    async def aclose(self) -> None:
        """Write what is buffered, close the database, end its thread. Idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            await self._commits.aclose()
            if not self._commits.failures:  # everything reserved is written: no spare is owed
                await self._db.execute("clearing slot spares", "DELETE FROM slot_spares")
        finally:
            await self._db.aclose()

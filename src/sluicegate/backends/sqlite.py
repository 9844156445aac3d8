"""The embedded durable backend: one SQLite file, one writer thread, group commit.

Contract: a push that returned is committed and survives a SIGKILL of the process; so are
config writes. Slots stay in memory: in embedded mode one process owns its limiter. Choices:

* WAL with ``synchronous=NORMAL`` (see :mod:`sluicegate.backends.database`): a commit
  survives SIGKILL; only an OS crash or power loss can lose the last ones.
* ``locking_mode=EXCLUSIVE``: a data directory is held by one engine until it closes or dies.
  Two engines sharing a journal would both dispatch every queued call: the second one fails.
* One dedicated thread does all sqlite3 work, so the event loop never waits on disk; and
  pushes made during a commit share the next one (group commit, see SqliteQueueStore).
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
from collections.abc import Mapping
from functools import partial
from pathlib import Path
from typing import Any

from sluicegate.backends.database import Database
from sluicegate.backends.memory import MemorySlotStore
from sluicegate.call import Call, Service
from sluicegate.errors import StorageError
from sluicegate.storage import QueuedCall

DB_NAME = "sluicegate.db"
SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS queued_calls (seq INTEGER PRIMARY KEY AUTOINCREMENT,
    call_id TEXT NOT NULL UNIQUE, queue TEXT NOT NULL, enqueued_at REAL NOT NULL,
    rate INTEGER NOT NULL, org TEXT NOT NULL, sandbox TEXT NOT NULL, journey TEXT NOT NULL,
    service TEXT NOT NULL, method TEXT NOT NULL, url TEXT NOT NULL, headers TEXT NOT NULL,
    body BLOB NOT NULL, timeout_seconds REAL NOT NULL);
CREATE TABLE IF NOT EXISTS configs (seq INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL, uid TEXT NOT NULL, doc TEXT NOT NULL, UNIQUE (kind, uid));
CREATE TABLE IF NOT EXISTS windows (key TEXT PRIMARY KEY, count INTEGER NOT NULL,
    period_ms INTEGER NOT NULL, grants TEXT NOT NULL);"""
_COLUMNS = (
    "call_id, queue, enqueued_at, rate, org, sandbox, journey, service, method, url, "
    "headers, body, timeout_seconds"
)
# A re-pushed call id keeps its place (``seq``) and takes the new content, as in memory.
_PUSH = (
    f"INSERT INTO queued_calls ({_COLUMNS}) VALUES ({', '.join('?' * 13)}) "
    "ON CONFLICT (call_id) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in _COLUMNS.split(", ")[1:])
)
_REMOVE = "DELETE FROM queued_calls WHERE call_id = ?"
_Run = tuple[str, list[tuple[Any, ...]]]  # consecutive writes of one statement
_encode_headers = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
log = logging.getLogger(__name__)


def _to_row(item: QueuedCall) -> tuple[Any, ...]:
    call = item.call
    headers = _encode_headers(dict(call.headers)) if call.headers else "{}"
    return (
        item.call_id, item.queue, item.enqueued_at, item.rate, call.org, call.sandbox,
        call.journey, str(call.service), call.method, call.url, headers, bytes(call.body),
        call.timeout_seconds,
    )  # fmt: skip


def _from_row(row: tuple[Any, ...]) -> QueuedCall:
    call_id, queue, enqueued_at, rate, org, sandbox, journey, service = row[:8]
    method, url, headers, body, timeout_seconds = row[8:]
    try:
        call = Call(
            org=org, sandbox=sandbox, journey=journey, service=Service(service),
            method=method, url=url, headers=json.loads(headers), body=bytes(body),
            timeout_seconds=timeout_seconds,
        )  # fmt: skip
    except ValueError as exc:
        raise StorageError(f"queued call {call_id!r} cannot be read back: {exc}") from exc
    return QueuedCall(call_id=call_id, queue=queue, call=call, enqueued_at=enqueued_at, rate=rate)


def _commit_batch(runs: list[_Run], conn: sqlite3.Connection) -> None:
    with conn:  # one transaction; runs in call order, so remove-then-push stays a push
        for sql, params in runs:
            conn.executemany(sql, params)


def _save_windows(
    windows: list[tuple[str, int, int, list[tuple[int, int]]]], conn: sqlite3.Connection
) -> None:
    """Replace the saved windows: the grants a graceful restart must not forget."""
    with conn:
        conn.execute("DELETE FROM windows")
        conn.executemany(
            "INSERT INTO windows (key, count, period_ms, grants) VALUES (?, ?, ?, ?)",
            [(key, count, period, json.dumps(grants)) for key, count, period, grants in windows],
        )


class SqliteQueueStore:
    """The queue journal, written by group commit.

    ``push`` buffers its row with a future of its own (so a pusher can be cancelled alone)
    and returns once the batch holding it is committed. ``remove`` buffers and returns at
    once (a lost removal only means a redelivery); the drainer task writes it with the next
    batch, which starts right away. ``pending`` first waits for every buffered write.
    """

    def __init__(self, writer: Database) -> None:
        self._writer = writer
        self._runs: list[_Run] = []
        self._waiters: list[asyncio.Future[None]] = []
        self._drainer: asyncio.Task[None] | None = None  # None exactly when nothing is pending
        self._closed = False

    def _add(self, sql: str, params: tuple[Any, ...]) -> None:
        if self._closed:
            raise StorageError("the SQLite queue store is closed")
        if self._drainer is None:
            self._drainer = asyncio.create_task(self._drain())
        if self._runs and self._runs[-1][0] is sql:
            self._runs[-1][1].append(params)
        else:
            self._runs.append((sql, [params]))

    def _waiter(self) -> asyncio.Future[None]:
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        return waiter

    async def _drain(self) -> None:
        waiters: list[asyncio.Future[None]] = []
        try:
            while self._waiters or self._runs:
                runs, waiters, self._runs, self._waiters = self._runs, self._waiters, [], []
                error: Exception | None = None
                try:
                    await self._writer.run("writing queue", partial(_commit_batch, runs))
                except Exception as exc:
                    log.error("queue: a batch for %d waiters failed: %s", len(waiters), exc)
                    error = exc
                for waiter in (w for w in waiters if not w.done()):  # done: pusher cancelled
                    if error is None:
                        waiter.set_result(None)
                    else:
                        waiter.set_exception(error)
        finally:
            # Normally a no-op; when cancelled (loop shutdown), no pusher is left waiting.
            for waiter in (*waiters, *self._waiters):
                waiter.cancel()
            self._runs, self._waiters, self._drainer = [], [], None

    async def push(self, item: QueuedCall) -> None:
        self._add(_PUSH, _to_row(item))
        await self._waiter()

    async def remove(self, call_id: str) -> None:
        self._add(_REMOVE, (call_id,))

    async def flush(self) -> None:
        """Return once every write buffered or in flight before this call is committed."""
        if self._drainer is not None:  # a waiter alone: it is answered after the next batch
            await self._waiter()

    async def pending(self) -> list[QueuedCall]:
        await self.flush()
        sql = f"SELECT {_COLUMNS} FROM queued_calls ORDER BY seq"
        rows = await self._writer.execute("reading the queue", sql)
        return [_from_row(row) for row in rows]

    async def aclose(self) -> None:
        """Refuse new writes and wait until the buffered ones are written."""
        self._closed = True
        if self._drainer is not None:
            await asyncio.wait({self._drainer})


class SqliteConfigStore:
    """Config documents as JSON rows; an upsert keeps a document's original place."""

    def __init__(self, writer: Database) -> None:
        self._writer = writer

    async def save(self, kind: str, uid: str, doc: Mapping[str, Any]) -> None:
        try:
            text = json.dumps(dict(doc), ensure_ascii=False)
        except (TypeError, ValueError) as exc:
            raise StorageError(f"{kind} config {uid!r} is not JSON-ready: {exc}") from exc
        sql = (
            "INSERT INTO configs (kind, uid, doc) VALUES (?, ?, ?) "
            "ON CONFLICT (kind, uid) DO UPDATE SET doc = excluded.doc"
        )
        await self._writer.execute(f"saving {kind} config {uid!r}", sql, (kind, uid, text))

    async def delete(self, kind: str, uid: str) -> None:
        sql = "DELETE FROM configs WHERE kind = ? AND uid = ?"
        await self._writer.execute(f"deleting {kind} config {uid!r}", sql, (kind, uid))

    async def load(self) -> list[tuple[str, dict[str, Any]]]:
        rows = await self._writer.execute(
            "loading configs", "SELECT kind, doc FROM configs ORDER BY seq"
        )
        return [(kind, json.loads(doc)) for kind, doc in rows]


class SqliteBackend:
    """Queues and configs in ``<path>/sluicegate.db``; slots in memory, saved on close and
    restored on open, so a graceful restart keeps every window exact. Build with :meth:`open`.
    """

    def __init__(self, writer: Database) -> None:
        self.file = writer.file
        self.slots = MemorySlotStore()
        self.queue = SqliteQueueStore(writer)
        self.configs = SqliteConfigStore(writer)
        self._writer = writer
        self._closed = False

    @classmethod
    async def open(cls, path: Path) -> SqliteBackend:
        """Open (creating if missing) the data directory ``path`` and its database."""
        writer = Database(Path(path) / DB_NAME, schema=_SCHEMA, version=SCHEMA_VERSION)
        await writer.start(exclusive=True)
        backend = cls(writer)
        rows = await writer.execute("reading windows", "SELECT * FROM windows")
        backend.slots.restore([(k, n, p, json.loads(g)) for k, n, p, g in rows])
        return backend

    async def aclose(self) -> None:
        """Flush buffered writes, close the database, end the writer thread. Idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            await self.queue.aclose()
            await self._writer.run("saving windows", partial(_save_windows, self.slots.snapshot()))
        finally:
            await self._writer.aclose()

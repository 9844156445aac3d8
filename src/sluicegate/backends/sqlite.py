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
* Queues are rows of ``queued_calls`` (:mod:`.sqlite_queue`); claiming writes nothing.
  A paused queue is a row of ``paused_queues``.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from functools import partial
from pathlib import Path
from typing import Any

from sluicegate.backends.commits import GroupCommit
from sluicegate.backends.database import Database
from sluicegate.backends.sqlite_queue import SqliteQueueStore, check_sealed
from sluicegate.backends.sqlite_slots import SqliteSlotStore, recover_slots
from sluicegate.connections import ConnectionLimits
from sluicegate.errors import StorageError
from sluicegate.sealing import Sealer

DB_NAME = "sluicegate.db"
SCHEMA_VERSION = 3  # 3: paused_queues (a sluicegate that ignores pauses refuses the file)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS queued_calls (seq INTEGER PRIMARY KEY AUTOINCREMENT,
    call_id TEXT NOT NULL UNIQUE, queue TEXT NOT NULL, enqueued_at REAL NOT NULL,
    rate INTEGER NOT NULL, org TEXT NOT NULL, sandbox TEXT NOT NULL, journey TEXT NOT NULL,
    service TEXT NOT NULL, method TEXT NOT NULL, url TEXT NOT NULL, headers TEXT NOT NULL,
    body BLOB NOT NULL, timeout_seconds REAL NOT NULL);
CREATE INDEX IF NOT EXISTS queued_by_queue ON queued_calls (queue, seq);
CREATE INDEX IF NOT EXISTS queued_sealed ON queued_calls (seq) WHERE headers = '';
CREATE TABLE IF NOT EXISTS paused_queues (queue TEXT PRIMARY KEY) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS configs (seq INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL, uid TEXT NOT NULL, doc TEXT NOT NULL, UNIQUE (kind, uid));
CREATE TABLE IF NOT EXISTS slots (ticket INTEGER NOT NULL, key TEXT NOT NULL,
    count INTEGER NOT NULL, period_ms INTEGER NOT NULL, sent_ms INTEGER, expires_ms INTEGER,
    PRIMARY KEY (ticket, key)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS slots_by_expiry ON slots (expires_ms);
CREATE TABLE IF NOT EXISTS slot_spares (key TEXT PRIMARY KEY, count INTEGER NOT NULL,
    period_ms INTEGER NOT NULL, spare INTEGER NOT NULL) WITHOUT ROWID;
DROP TABLE IF EXISTS windows"""


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

    def __init__(self, db: Database, sealer: Sealer | None = None) -> None:
        self.file = db.file
        self._db = db
        self._commits = GroupCommit(db)
        self.queue = SqliteQueueStore(db, self._commits, sealer)
        self.slots = SqliteSlotStore(self._commits, self.queue.holds)
        self.configs = SqliteConfigStore(db)
        self.connections = ConnectionLimits()
        self._closed = False

    @classmethod
    async def open(cls, path: Path, sealer: Sealer | None = None) -> SqliteBackend:
        """Open (creating if missing) the data directory ``path`` and its database; with
        ``sealer``, queued calls are sealed (:mod:`sluicegate.sealing`). Calls sealed with
        a key ``sealer`` lacks refuse the open (they would be stuck): the oldest and the
        newest sealed ones are tried, so a rotation that dropped a key still in use is
        caught, and a wrong key or none."""
        db = Database(Path(path) / DB_NAME, schema=_SCHEMA, version=SCHEMA_VERSION)
        await db.start(exclusive=True)
        try:
            await check_sealed(db, sealer)
        except BaseException:
            await db.aclose()
            raise
        return cls(db, sealer)

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

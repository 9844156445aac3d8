"""PostgreSQL: what several instances share besides slots and queues.

The engine keeps its configs here (:class:`PostgresConfigStore`) and the service its
keys, sandboxes, journeys, call results and report buckets, through the same
:class:`PostgresDatabase`. Choices:

* **One thread, one connection** per database object, like SQLite's
  (:mod:`sluicegate.backends.database`): the stores run the same SQL, with ``?``
  parameters, through an adapter that speaks sqlite3's API. Writes are batched by the
  stores, so one connection carries an instance's load.
* **Migrations** are numbered scripts per component, applied once each, in order, under
  an advisory lock, so instances starting together do not race.
* **Changes are announced** with ``NOTIFY`` in the transaction that makes them; every
  other instance ``LISTEN``\\ s and reloads (within milliseconds). After its listening
  connection was lost, an instance reloads once it is back, since notices sent meanwhile
  are gone.
* **Unavailable**: a failed statement is a :class:`~sluicegate.errors.StorageError`; the
  connection is opened again on the next statement, so the stores recover on their own.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import secrets
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from types import TracebackType
from typing import Any, TypeVar

import psycopg

from sluicegate.backends.database import Connection, Rows
from sluicegate.errors import StorageError

_T = TypeVar("_T")
#: How long to wait before listening again after the connection was lost.
RELISTEN_AFTER = 1.0
log = logging.getLogger(__name__)

CONFIG_MIGRATIONS = (
    """CREATE TABLE IF NOT EXISTS configs (seq BIGSERIAL PRIMARY KEY, kind TEXT NOT NULL,
        uid TEXT NOT NULL, doc TEXT NOT NULL, UNIQUE (kind, uid))""",
)


@functools.lru_cache(maxsize=256)
def _translate(sql: str) -> str:
    """sqlite3's ``?`` parameters as psycopg's ``%s`` (and a literal ``%`` doubled)."""
    return sql.replace("%", "%%").replace("?", "%s")


class _Rows:
    def __init__(self, cursor: psycopg.Cursor[Any]) -> None:
        self._cursor = cursor

    def fetchall(self) -> list[Any]:
        return self._cursor.fetchall() if self._cursor.description else []

    def fetchone(self) -> Any:
        return self._cursor.fetchone() if self._cursor.description else None


class _Connection:
    """A psycopg connection behind sqlite3's API (see :class:`~.database.Connection`):
    autocommit, and ``with conn:`` is one transaction."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.conn = conn
        self._transactions: list[AbstractContextManager[Any]] = []

    def execute(self, sql: str, parameters: Sequence[Any] = (), /) -> Rows:
        return _Rows(self.conn.execute(_translate(sql), parameters))

    def executemany(self, sql: str, parameters: Iterable[Sequence[Any]], /) -> Any:
        rows = list(parameters)
        if rows:
            with self.conn.cursor() as cursor:
                cursor.executemany(_translate(sql), rows)

    def __enter__(self) -> _Connection:
        transaction = self.conn.transaction()
        transaction.__enter__()
        self._transactions.append(transaction)
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
        /,
    ) -> None:
        self._transactions.pop().__exit__(kind, value, traceback)


def _migrate(conn: psycopg.Connection[Any], component: str, steps: Sequence[str]) -> None:
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtext('sluicegate migrations'))")
        conn.execute(
            "CREATE TABLE IF NOT EXISTS sluicegate_migrations (component TEXT NOT NULL, "
            "version INTEGER NOT NULL, PRIMARY KEY (component, version))"
        )
        found = conn.execute(
            "SELECT coalesce(max(version), 0) FROM sluicegate_migrations WHERE component = %s",
            (component,),
        ).fetchone()
        done = found[0] if found else 0
        if done > len(steps):
            raise StorageError(f"the {component} tables were written by a newer sluicegate")
        for version, step in enumerate(steps[done:], start=done + 1):
            conn.execute(step)
            conn.execute("INSERT INTO sluicegate_migrations VALUES (%s, %s)", (component, version))


class PostgresDatabase:
    """One connection to PostgreSQL on its own thread; see the module docstring."""

    shared = True

    def __init__(self, url: str, *, component: str, migrations: Sequence[str]) -> None:
        self.url = url
        self.instance = secrets.token_hex(6)  # names this process in its notices
        self._component = component
        self._migrations = migrations
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sluicegate-pg")
        self._conn: _Connection | None = None
        self._closed = False

    def _connection(self) -> _Connection:
        if self._conn is None or self._conn.conn.closed:
            self._conn = _Connection(psycopg.connect(self.url, autocommit=True, connect_timeout=3))
        return self._conn

    def _call(self, what: str, fn: Callable[[Connection], _T]) -> _T:
        try:
            return fn(self._connection())
        except psycopg.Error as exc:
            if self._conn is not None and self._conn.conn.broken:
                self._conn.conn.close()  # opened again by the next statement
            raise StorageError(f"{what} failed on PostgreSQL: {exc}") from exc

    async def run(self, what: str, fn: Callable[[Connection], _T]) -> _T:
        """Run ``fn(connection)`` on the thread; psycopg errors become StorageError."""
        if self._closed:
            raise StorageError(f"{what}: the PostgreSQL store is closed")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._call, what, fn)

    async def execute(self, what: str, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
        return await self.run(what, lambda conn: conn.execute(sql, params).fetchall())

    async def start(self) -> None:
        """Connect and bring the component's tables up to date."""

        def migrate(conn: Connection) -> None:
            assert isinstance(conn, _Connection)
            _migrate(conn.conn, self._component, self._migrations)

        await self.run(f"migrating the {self._component} tables", migrate)

    def channel(self, topic: str) -> str:
        return f"sluicegate_{topic}"

    async def notify(self, topic: str) -> None:
        await self.execute(
            f"announcing a change of {topic}",
            "SELECT pg_notify(?, ?)",
            (self.channel(topic), self.instance),
        )

    async def listen(self, topic: str, changed: Callable[[], Any]) -> None:
        """Call ``changed()`` (awaited if it returns an awaitable) on every notice of
        ``topic`` from another process, and once each time it starts listening (a change
        made between the caller's first load and the first ``LISTEN``, or while the
        connection was lost, sent a notice no one heard). A ``changed()`` that fails (the
        database gone meanwhile, say) is called again once listening resumes: a notice is
        never dropped on the floor."""
        lost = False
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(
                    self.url, autocommit=True, connect_timeout=3
                ) as conn:
                    await conn.execute(f"LISTEN {self.channel(topic)}")
                    await _maybe_await(changed())
                    lost = False
                    async for notice in conn.notifies():
                        if notice.payload != self.instance:
                            await _maybe_await(changed())
            except Exception as exc:  # psycopg's, the network's, or changed()'s own
                if not lost:
                    log.warning("not hearing of %s changes (listening again): %s", topic, exc)
                lost = True
                await asyncio.sleep(RELISTEN_AFTER)

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True

        def close() -> None:
            if self._conn is not None:
                self._conn.conn.close()

        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, close)
        self._executor.shutdown(wait=True)


async def _maybe_await(value: Any) -> None:
    if isinstance(value, Awaitable):
        await value


class PostgresConfigStore:
    """Config documents as JSON rows; every change is announced to the other instances."""

    def __init__(self, db: PostgresDatabase) -> None:
        self._db = db

    async def _write(self, what: str, sql: str, params: tuple[Any, ...]) -> None:
        channel, instance = self._db.channel("configs"), self._db.instance

        def write(conn: Connection) -> None:
            with conn:
                conn.execute(sql, params)
                conn.execute("SELECT pg_notify(?, ?)", (channel, instance))

        await self._db.run(what, write)

    async def save(self, kind: str, uid: str, doc: Mapping[str, Any]) -> None:
        try:
            text = json.dumps(dict(doc), ensure_ascii=False)
        except (TypeError, ValueError) as exc:
            raise StorageError(f"{kind} config {uid!r} is not JSON-ready: {exc}") from exc
        sql = ("INSERT INTO configs (kind, uid, doc) VALUES (?, ?, ?) "
               "ON CONFLICT (kind, uid) DO UPDATE SET doc = excluded.doc")  # fmt: skip
        await self._write(f"saving {kind} config {uid!r}", sql, (kind, uid, text))

    async def delete(self, kind: str, uid: str) -> None:
        sql = "DELETE FROM configs WHERE kind = ? AND uid = ?"
        await self._write(f"deleting {kind} config {uid!r}", sql, (kind, uid))

    async def load(self) -> list[tuple[str, dict[str, Any]]]:
        rows = await self._db.execute(
            "loading configs", "SELECT kind, doc FROM configs ORDER BY seq"
        )
        return [(kind, json.loads(doc)) for kind, doc in rows]

    async def follow(self, changed: Callable[[], Awaitable[None]]) -> None:
        await self._db.listen("configs", changed)

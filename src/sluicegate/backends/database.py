"""One SQLite file served by one thread: the event loop never waits on disk.

Every store built on SQLite (the engine's queues and configs, the service's tenants and
reports) goes through a :class:`Database`. Its choices:

* ``journal_mode=WAL``, ``synchronous=NORMAL``: a WAL commit is complete once its frames are
  written to the WAL file; NORMAL only skips the fsync. Written pages sit in the kernel's page
  cache, which a killed process cannot take with it, so a commit survives SIGKILL; only an OS
  crash or power loss can lose the last ones. FULL would add an fsync to every commit.
* ``exclusive``: the file is held by one process until it closes or dies.
* Each schema is a script of ``CREATE ... IF NOT EXISTS`` statements and a version number
  kept in ``user_version``; a file written by a newer sluicegate is refused, not guessed at.
* Only its owner reads it: a data directory it creates is ``0700``, a file ``0600`` (made
  so, or made so at open; SQLite gives its ``-wal`` and ``-shm`` files the file's mode).
  Queued calls hold partners' headers and bodies.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol, TypeVar

from sluicegate.errors import StorageError

_T = TypeVar("_T")


class Rows(Protocol):
    def fetchall(self) -> list[Any]: ...

    def fetchone(self) -> Any: ...


class Connection(Protocol):
    """What the SQL of the stores may use of a connection: sqlite3's own API, which the
    PostgreSQL connection (:mod:`sluicegate.backends.postgres`) speaks too. SQL written
    for both uses ``?`` parameters and the syntax both accept."""

    def execute(self, sql: str, parameters: Sequence[Any] = ..., /) -> Rows: ...

    def executemany(self, sql: str, parameters: Iterable[Sequence[Any]], /) -> Any: ...

    def __enter__(self) -> Any: ...

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
        /,
    ) -> Any: ...


class SqlDatabase(Protocol):
    """A database the service's stores write through: SQLite or PostgreSQL."""

    @property
    def shared(self) -> bool:
        """Whether other running instances write it too (PostgreSQL), not one (SQLite)."""
        ...

    async def run(self, what: str, fn: Callable[[Connection], _T]) -> _T: ...

    async def execute(self, what: str, sql: str, params: tuple[Any, ...] = ()) -> list[Any]: ...

    async def notify(self, topic: str) -> None:
        """Tell the other processes on this database that ``topic`` changed."""
        ...

    async def listen(self, topic: str, changed: Callable[[], Any]) -> None:
        """Call ``changed()`` whenever another process notifies ``topic``, until cancelled."""
        ...

    async def aclose(self) -> None: ...


def _connect(file: Path, schema: str, version: int, exclusive: bool) -> sqlite3.Connection:
    """Open ``file`` in WAL mode and bring its schema up to ``version``."""
    conn = None
    try:
        file.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.close(os.open(file, os.O_CREAT | os.O_RDWR, 0o600))
        os.chmod(file, 0o600)  # a file of an earlier version may be readable by others
        conn = sqlite3.connect(file, timeout=5.0, check_same_thread=False)
        if exclusive:
            conn.execute("PRAGMA locking_mode = EXCLUSIVE")
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        conn.execute("PRAGMA synchronous = NORMAL")
        found = conn.execute("PRAGMA user_version").fetchone()[0]
        if mode != "wal" or found > version:  # no WAL, or a newer sluicegate wrote it
            raise sqlite3.DatabaseError(f"want WAL, schema <= {version}; got {mode}, {found}")
        conn.executescript(f"BEGIN IMMEDIATE; {schema}; PRAGMA user_version = {version}; COMMIT;")
        return conn
    except BaseException as exc:
        if conn is not None:
            conn.close()
        if not isinstance(exc, OSError | sqlite3.Error):
            raise
        held = " (is another sluicegate process using it?)" if "locked" in str(exc) else ""
        raise StorageError(f"cannot open {file}{held}: {exc}") from exc


class Database:
    """The thread that owns the connection: every database call goes through :meth:`run`."""

    shared = False

    def __init__(self, file: Path, *, schema: str, version: int) -> None:
        self.file = file
        self._schema = schema
        self._version = version
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sluicegate-db")
        self._conn: sqlite3.Connection | None = None  # set on open, cleared on close

    def _call(self, what: str, fn: Callable[[sqlite3.Connection], _T]) -> _T:
        assert self._conn is not None  # run() refuses to submit work before start()
        try:
            return fn(self._conn)
        except sqlite3.Error as exc:
            raise StorageError(f"{what} failed on {self.file}: {exc}") from exc

    async def run(self, what: str, fn: Callable[[sqlite3.Connection], _T]) -> _T:
        """Run ``fn(connection)`` on the writer thread; sqlite3 errors become StorageError."""
        if self._conn is None:
            raise StorageError(f"{what}: the SQLite backend on {self.file} is closed")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._call, what, fn)

    async def execute(self, what: str, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
        return await self.run(what, partial(_execute, sql, params))

    async def notify(self, topic: str) -> None:
        return None  # one process writes the file at a time; keys come from the CLI

    async def listen(self, topic: str, changed: Callable[[], Any]) -> None:
        return None

    async def start(self, *, exclusive: bool = False) -> None:
        """Open the file on the thread, creating it and its schema if needed."""
        loop = asyncio.get_running_loop()
        connect = partial(_connect, self.file, self._schema, self._version, exclusive)
        try:
            self._conn = await loop.run_in_executor(self._executor, connect)
        except BaseException:
            self._executor.shutdown(wait=True)  # the thread is idle: this returns at once
            raise

    async def aclose(self) -> None:
        if self._conn is None:
            return
        try:
            await self.run("closing the database", sqlite3.Connection.close)
        finally:
            self._conn = None
            self._executor.shutdown(wait=True)


def _execute(sql: str, params: tuple[Any, ...], conn: sqlite3.Connection) -> list[Any]:
    with conn:  # a transaction for writes; a no-op for reads
        return conn.execute(sql, params).fetchall()

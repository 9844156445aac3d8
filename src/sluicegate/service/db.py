"""The service's own SQLite file: tenants, journeys, call results and report buckets.

It is a separate file from the engine's journal (``sluicegate.db``, held exclusively by
the running engine) so that ``sluicegate keys`` can add, list and revoke keys while the
service runs; WAL lets both processes write it.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from sluicegate.backends.database import Database, SqlDatabase
from sluicegate.errors import InvalidInput
from sluicegate.reporting import COUNT_COLUMNS
from sluicegate.wiring import Shared

DB_NAME = "service.db"
SCHEMA_VERSION = 4
SCHEMA = """
CREATE TABLE IF NOT EXISTS sandboxes (org TEXT NOT NULL, name TEXT NOT NULL,
    type TEXT NOT NULL, created_at REAL NOT NULL, PRIMARY KEY (org, name));
CREATE TABLE IF NOT EXISTS api_keys (token_hash TEXT PRIMARY KEY, org TEXT NOT NULL,
    role TEXT NOT NULL, created_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS journeys (org TEXT NOT NULL, sandbox TEXT NOT NULL,
    journey TEXT NOT NULL, timeout_seconds INTEGER NOT NULL, updated_at REAL NOT NULL,
    PRIMARY KEY (org, sandbox, journey));
CREATE TABLE IF NOT EXISTS calls (call_id TEXT PRIMARY KEY, org TEXT NOT NULL,
    sandbox TEXT NOT NULL, journey TEXT NOT NULL, state TEXT NOT NULL,
    callback_url TEXT, idempotency_key TEXT, created_at REAL NOT NULL, result TEXT,
    callback_due INTEGER NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS calls_by_key ON calls (org, sandbox, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE INDEX IF NOT EXISTS calls_by_age ON calls (created_at);
DROP INDEX IF EXISTS calls_unfinished;
CREATE INDEX IF NOT EXISTS calls_accepted ON calls (call_id) WHERE state = 'accepted';
CREATE INDEX IF NOT EXISTS calls_callback_due ON calls (call_id) WHERE callback_due = 1;
"""
#: Report buckets (see :mod:`sluicegate.service.buckets`): one row per org, sandbox, second,
#: journey, service, endpoint and outcome, one column per count of a
#: :class:`~sluicegate.reporting.Tally`; the index on ``second`` serves compaction.
REPORT_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS report_buckets (org TEXT NOT NULL, sandbox TEXT NOT NULL,
    journey TEXT NOT NULL, service TEXT NOT NULL, endpoint TEXT NOT NULL,
    outcome TEXT NOT NULL, second INTEGER NOT NULL,
    {", ".join(f"{column} NUMERIC NOT NULL DEFAULT 0" for column in COUNT_COLUMNS)},
    PRIMARY KEY (org, sandbox, second, journey, service, endpoint, outcome));
CREATE INDEX IF NOT EXISTS report_buckets_by_second ON report_buckets (second);
"""


#: What schema 3 added to ``api_keys`` (see :mod:`sluicegate.service.tenants`): the key's
#: public id, an optional name, when it expires and when it was revoked. A key made before
#: gets the id a new key would have had: ``key_`` and the first 12 hex digits of its hash.
KEY_COLUMNS = (("key_id", "TEXT"), ("name", "TEXT"), ("expires_at", "REAL"),
               ("revoked_at", "REAL"))  # fmt: skip
KEY_IDS = """
UPDATE api_keys SET key_id = 'key_' || substr(token_hash, 1, 12) WHERE key_id IS NULL;
CREATE UNIQUE INDEX IF NOT EXISTS api_keys_by_id ON api_keys (key_id);
"""

#: What schema 4 added to ``calls`` (see :mod:`sluicegate.service.callrows`): what a
#: listing shows and filters on, ``seq`` (the order results were written, counted per org
#: and sandbox in ``call_sequences``), the request kept for a replay, the call replayed.
CALL_COLUMNS = (("seq", "BIGINT"), ("ended_at", "REAL"), ("outcome", "TEXT"),
                ("status", "INTEGER"), ("endpoint", "TEXT"), ("service", "TEXT"),
                ("method", "TEXT"), ("url", "TEXT"), ("host", "TEXT"), ("replay_of", "TEXT"),
                ("request", "BLOB"))  # fmt: skip
#: The counters of ``seq``, and the listing's indexes (see :mod:`sluicegate.service.calllist`).
CALL_SEQUENCES = """
CREATE TABLE IF NOT EXISTS call_sequences (org TEXT NOT NULL, sandbox TEXT NOT NULL,
    last BIGINT NOT NULL, PRIMARY KEY (org, sandbox));
"""
#: Partial: a call is listed once it ended, so rows of calls still running or queued (and
#: the writes that make and end them) cost these indexes nothing.
CALL_INDEXES = """
CREATE INDEX IF NOT EXISTS calls_listed ON calls (org, sandbox, seq) WHERE seq IS NOT NULL;
CREATE INDEX IF NOT EXISTS calls_listed_by_journey ON calls (org, sandbox, journey, seq)
    WHERE seq IS NOT NULL;
CREATE INDEX IF NOT EXISTS calls_listed_by_outcome ON calls (org, sandbox, outcome, seq)
    WHERE seq IS NOT NULL;
"""
#: Results written before schema 4 get a number in the order their calls were accepted,
#: their outcome and status from their result view, and their end time: when accepted.
CALL_NUMBERS = """
UPDATE calls SET outcome = {outcome}, status = {status}, ended_at = created_at
    WHERE state = 'done' AND seq IS NULL;
UPDATE calls SET seq = numbered.n FROM (SELECT call_id, row_number() OVER (
    PARTITION BY org, sandbox ORDER BY created_at, call_id) AS n FROM calls
    WHERE state = 'done' AND seq IS NULL) AS numbered WHERE calls.call_id = numbered.call_id;
INSERT INTO call_sequences (org, sandbox, last)
    SELECT org, sandbox, max(seq) FROM calls WHERE seq IS NOT NULL GROUP BY org, sandbox;
"""
SQLITE_VIEW = {"outcome": "json_extract(result, '$.outcome')",
               "status": "json_extract(result, '$.response.status')"}  # fmt: skip
# jsonb refuses the escape of NUL, which a result may hold (a response body with one).
_JSONB = r"(replace(result, '\u0000', '')::jsonb)"
POSTGRES_VIEW = {"outcome": f"{_JSONB} ->> 'outcome'",
                 "status": f"({_JSONB} -> 'response' ->> 'status')::integer"}  # fmt: skip

#: The same tables in PostgreSQL, for instances that share them: one migration per
#: version, in order (a new version appends a step; a step is never edited).
POSTGRES_MIGRATIONS = (
    (SCHEMA + REPORT_SCHEMA)
    .replace(" REAL ", " DOUBLE PRECISION ")
    .replace(" NUMERIC ", " DOUBLE PRECISION ")
    .replace("second INTEGER", "second BIGINT"),
    "".join(f"ALTER TABLE api_keys ADD COLUMN IF NOT EXISTS {name} {kind};\n"
            for name, kind in KEY_COLUMNS).replace(" REAL;", " DOUBLE PRECISION;")
    + KEY_IDS,
    "".join(f"ALTER TABLE calls ADD COLUMN IF NOT EXISTS {name} {kind};\n"
            for name, kind in CALL_COLUMNS).replace(" REAL;", " DOUBLE PRECISION;")
    .replace(" BLOB;", " BYTEA;")
    + CALL_SEQUENCES + CALL_NUMBERS.format_map(POSTGRES_VIEW) + CALL_INDEXES,
)  # fmt: skip


def existing(data_dir: Path, *, create: bool) -> Path:
    """``data_dir``, which must be a directory unless ``create`` (it is then made when the
    database opens). A mistyped path must not silently become a new, empty service: a
    missing one is an ``InvalidInput`` naming it (``DATA_DIR_NOT_FOUND``)."""
    if data_dir.is_dir() or (create and not data_dir.exists()):
        return data_dir
    if data_dir.exists():
        raise InvalidInput("DATA_DIR_INVALID", f"the data dir {data_dir} is not a directory")
    message = f"the data dir {data_dir} does not exist (give --create to make it)"
    raise InvalidInput("DATA_DIR_NOT_FOUND", message)


@contextmanager
def _immediate(conn: sqlite3.Connection) -> Iterator[None]:
    """One write transaction, taken at once: all of it or nothing."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        conn.rollback()
        raise
    conn.commit()


def _add_columns(conn: sqlite3.Connection, table: str, columns: Sequence[tuple[str, str]]) -> bool:
    """Add the ``columns`` that ``table`` lacks (SQLite has no ``ADD COLUMN IF NOT
    EXISTS``: the columns present are read first); whether any were."""
    present = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
    missing = [(name, kind) for name, kind in columns if name not in present]
    for name, kind in missing:
        conn.execute(f"ALTER TABLE {table} ADD COLUMN {name} {kind}")
    return bool(missing)


def _run(conn: sqlite3.Connection, script: str) -> None:
    for statement in filter(str.strip, script.split(";")):
        conn.execute(statement)


def _upgrade_keys(conn: sqlite3.Connection) -> None:
    """Bring ``api_keys`` of a file made before schema 3 up to it, in one transaction."""
    with _immediate(conn):
        _add_columns(conn, "api_keys", KEY_COLUMNS)
        _run(conn, KEY_IDS)


def upgrade_calls(conn: sqlite3.Connection) -> None:
    """Bring ``calls`` of a file made before schema 4 up to it, in one transaction: its
    columns, its results numbered (once, when the columns are added), its indexes."""
    with _immediate(conn):
        numbering = CALL_NUMBERS.format_map(SQLITE_VIEW)
        added = _add_columns(conn, "calls", CALL_COLUMNS)
        _run(conn, CALL_SEQUENCES + (numbering if added else "") + CALL_INDEXES)


async def open_db(where: str | Path | Shared) -> SqlDatabase:
    """Open (creating if needed) the service database: SQLite in a data directory, or
    the shared PostgreSQL database; either is brought up to the current schema."""
    if isinstance(where, Shared):
        from sluicegate.backends.postgres import PostgresDatabase

        shared = PostgresDatabase(
            where.postgres_url, component="service", migrations=POSTGRES_MIGRATIONS
        )
        try:
            await shared.start()
        except BaseException:
            await shared.aclose()
            raise
        return shared
    db = Database(Path(where) / DB_NAME, schema=SCHEMA + REPORT_SCHEMA, version=SCHEMA_VERSION)
    await db.start()
    try:
        await db.run("upgrading the keys table", _upgrade_keys)
        await db.run("upgrading the calls table", upgrade_calls)
    except BaseException:
        await db.aclose()
        raise
    return db

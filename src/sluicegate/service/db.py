"""The service's own SQLite file: tenants, journeys, call results and report buckets.

It is a separate file from the engine's journal (``sluicegate.db``, held exclusively by
the running engine) so that ``sluicegate keys create`` can add a key while the service
runs; WAL lets both processes write it.
"""

from __future__ import annotations

from pathlib import Path

from sluicegate.backends.database import Database, SqlDatabase
from sluicegate.reporting import COUNT_COLUMNS
from sluicegate.wiring import Shared

DB_NAME = "service.db"
SCHEMA_VERSION = 2
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


#: The same tables in PostgreSQL, for instances that share them: one migration per
#: version, in order (a new version appends a step; a step is never edited).
POSTGRES_MIGRATIONS = (
    (SCHEMA + REPORT_SCHEMA)
    .replace(" REAL ", " DOUBLE PRECISION ")
    .replace(" NUMERIC ", " DOUBLE PRECISION ")
    .replace("second INTEGER", "second BIGINT"),
)


async def open_db(where: str | Path | Shared) -> SqlDatabase:
    """Open (creating if needed) the service database: SQLite in a data directory, or
    the shared PostgreSQL database."""
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
    return db

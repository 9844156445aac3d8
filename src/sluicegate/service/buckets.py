"""Report buckets: every finished call counted per second, in memory, then in SQLite.

The gate hands each finished call to :meth:`ReportBook.record`, synchronously and exactly
once. It is counted in the bucket of its org, sandbox, journey, service, endpoint, outcome
and the second it ended (clock time), in memory. Every :data:`FLUSH_SECONDS` of clock time,
and on close, the buckets gathered since the last flush are added to the
``report_buckets`` table in one transaction, so a restart keeps everything but the last
second of a killed process.

Reads are exact: a query adds the stored rows and the part not yet flushed. Reads and
flushes take turns on one lock, so a batch being written is never missed nor counted twice.

Storage stays bounded: rows older than :data:`FINE_SECONDS` are folded into one row per
minute (a 1 s time series of older times shows each minute at its first second), and rows
older than :data:`RETENTION_SECONDS` are deleted.

For Prometheus, running totals per org, sandbox, service, endpoint and outcome (no
journey: bounded cardinality) are kept in memory, loaded from the table at start.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sluicegate.backends.database import Connection, SqlDatabase
from sluicegate.call import Call
from sluicegate.clock import Clock
from sluicegate.outcomes import CallResult
from sluicegate.reporting import COUNT_COLUMNS, Tally

FLUSH_SECONDS = 1.0
#: Flushes between two compactions (about a minute).
COMPACT_EVERY = 60
FINE_SECONDS = 24 * 3600
RETENTION_SECONDS = 30 * 24 * 3600

log = logging.getLogger(__name__)

#: org, sandbox, journey, service, endpoint, outcome, second
_Key = tuple[str, str, str, str, str, str, int]
#: org, sandbox, service, endpoint, outcome
TotalKey = tuple[str, str, str, str, str]
_NAMES = ("org", "sandbox", "journey", "service", "endpoint", "outcome")
#: The key fields a query may group by.
GROUPS = frozenset({"journey", "service", "endpoint", "outcome"})

_PK = "org, sandbox, second, journey, service, endpoint, outcome"
_ADD = ", ".join(f"{c} = report_buckets.{c} + excluded.{c}" for c in COUNT_COLUMNS)
_SUMS = ", ".join(f"SUM({c})" for c in COUNT_COLUMNS)
_UPSERT = (
    f"INSERT INTO report_buckets ({', '.join(_NAMES)}, second, {', '.join(COUNT_COLUMNS)}) "
    f"VALUES ({', '.join('?' * (len(_NAMES) + 1 + len(COUNT_COLUMNS)))}) "
    f"ON CONFLICT ({_PK}) DO UPDATE SET {_ADD}"
)
_FOLD = (
    f"INSERT INTO report_buckets ({', '.join(_NAMES)}, second, {', '.join(COUNT_COLUMNS)}) "
    f"SELECT {', '.join(_NAMES)}, second - second % 60, {_SUMS} FROM report_buckets "
    "WHERE second >= ? AND second < ? AND second % 60 != 0 "
    f"GROUP BY {', '.join(_NAMES)}, second - second % 60 "
    f"ON CONFLICT ({_PK}) DO UPDATE SET {_ADD}"
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Selection:
    """The buckets of one org and sandbox with ``since <= second < until``, optionally
    narrowed to one journey, service or endpoint."""

    org: str
    sandbox: str
    since: int
    until: int
    journey: str | None = None
    service: str | None = None
    endpoint: str | None = None

    def where(self) -> tuple[str, list[Any]]:
        sql = "org = ? AND sandbox = ? AND second >= ? AND second < ?"
        params: list[Any] = [self.org, self.sandbox, self.since, self.until]
        for name in ("journey", "service", "endpoint"):
            value = getattr(self, name)
            if value is not None:
                sql += f" AND {name} = ?"
                params.append(value)
        return sql, params

    def matches(self, key: _Key) -> bool:
        org, sandbox, journey, service, endpoint, _, second = key
        return (
            (org, sandbox) == (self.org, self.sandbox)
            and self.since <= second < self.until
            and self.journey in (None, journey)
            and self.service in (None, service)
            and self.endpoint in (None, endpoint)
        )


class ReportBook:
    """The report buckets of every org: recorded in memory, flushed to the service DB."""

    def __init__(self, db: SqlDatabase, clock: Clock) -> None:
        self._db = db
        self._clock = clock
        self._pending: dict[_Key, Tally] = {}
        self._totals: dict[TotalKey, Tally] = {}
        self._lock = asyncio.Lock()
        self.failures = 0  # flushes failed since the start (a metrics series)
        self._task: asyncio.Task[None] | None = None
        self._folded_to = 0  # rows before this second are already folded into minutes

    async def start(self) -> None:
        """Load the running totals, compact, then flush every :data:`FLUSH_SECONDS`.

        Calls recovered by the gate may be recorded before this runs; they are kept.
        """
        async with self._lock:  # the totals are the stored rows plus the unflushed part
            rows = await self._db.execute(
                "reading report totals",
                f"SELECT org, sandbox, service, endpoint, outcome, {_SUMS} FROM report_buckets "
                "GROUP BY org, sandbox, service, endpoint, outcome",
            )
            self._totals = {}
            for row in rows:
                key = (row[0], row[1], row[2], row[3], row[4])
                self._total(key).merge(Tally.from_values(row[5:]))
            for (org, sandbox, _, service, endpoint, outcome, _), tally in self._pending.items():
                self._total((org, sandbox, service, endpoint, outcome)).merge(tally)
        await self.compact()
        self._task = asyncio.create_task(self._run(), name="report flush")

    async def written(self) -> None:
        """Buckets are written on their own schedule: a crash loses the last seconds of
        counts, never a call's result (the call log keeps those)."""

    def record(self, call: Call, result: CallResult) -> None:
        """Count one finished call; never awaits, never raises on valid results."""
        second = int(self._clock.now())
        service = call.service.value
        key = (call.org, call.sandbox, call.journey, service, result.endpoint,
               result.outcome.value, second)  # fmt: skip
        tally = self._pending.get(key)
        if tally is None:
            tally = self._pending[key] = Tally()
        tally.add(result)
        total = (call.org, call.sandbox, service, result.endpoint, result.outcome.value)
        self._total(total).add(result)

    def _total(self, key: TotalKey) -> Tally:
        tally = self._totals.get(key)
        if tally is None:
            tally = self._totals[key] = Tally()
        return tally

    def totals(self, org: str, sandbox: str | None = None) -> list[tuple[TotalKey, Tally]]:
        """Running totals of ``org`` (and ``sandbox``) since the oldest bucket kept at start.
        Buckets dropped by retention while running stay counted, so counters never drop."""
        return [
            (key, tally)
            for key, tally in self._totals.items()
            if key[0] == org and sandbox in (None, key[1])
        ]

    async def query(
        self, selection: Selection, *, by: Sequence[str], step: int | None = None
    ) -> dict[tuple[int | str, ...], Tally]:
        """Tallies of the selected buckets, grouped by the key fields ``by`` (of
        :data:`GROUPS`), and first by the ``step``-second interval (epoch-aligned) when
        ``step`` is given: ``{(interval start, *by values): tally}``."""
        if not set(by) <= GROUPS:
            raise ValueError(f"cannot group by {set(by) - GROUPS}")
        columns = [*([f"second - second % {int(step)}"] if step else []), *by]
        where, params = selection.where()
        sql = f"SELECT {', '.join([*columns, _SUMS])} FROM report_buckets WHERE {where}"
        if columns:
            sql += f" GROUP BY {', '.join(columns)}"
        found: dict[tuple[int | str, ...], Tally] = {}
        async with self._lock:
            for row in await self._db.execute("reading reports", sql, tuple(params)):
                group, counts = tuple(row[: len(columns)]), row[len(columns) :]
                if counts[0]:  # SUM over no rows is NULL; a group always has calls
                    _into(found, group).merge(Tally.from_values(counts))
            for key, tally in self._pending.items():
                if selection.matches(key):
                    second = key[6]
                    head = (second - second % step,) if step else ()
                    values = (key[_NAMES.index(name)] for name in by)
                    _into(found, (*head, *values)).merge(tally)
        return found

    def seen(self, org: str, sandbox: str) -> set[tuple[str, str]]:
        """Every ``(service, endpoint)`` of ``org`` and ``sandbox`` in the running totals:
        counted since the oldest bucket kept at start, read without touching the table."""
        return {(k[2], k[3]) for k in self._totals if (k[0], k[1]) == (org, sandbox)}

    def alive(self) -> bool:
        """Whether the flush loop runs (it survives any error; it ends only at close)."""
        return self._task is not None and not self._task.done()

    async def flush(self) -> None:
        """Add the buckets gathered since the last flush to the table, in one transaction.
        On failure they are kept for the next flush and the error is raised."""
        async with self._lock:
            batch, self._pending = self._pending, {}
            if not batch:
                return
            try:
                await self._db.run("saving report buckets", lambda conn: _upsert(conn, batch))
            except Exception:  # a cancelled write may still commit: it is not put back
                for key, tally in self._pending.items():  # recorded during the write
                    _merge_into(batch, key, tally)
                self._pending = batch
                raise

    async def compact(self) -> None:
        """Fold rows older than :data:`FINE_SECONDS` into minutes; drop rows older than
        :data:`RETENTION_SECONDS`. Rows are folded in whole minutes, once each."""
        now = int(self._clock.now())
        horizon = (now - FINE_SECONDS) // 60 * 60
        if horizon <= self._folded_to:
            return
        since, cutoff = self._folded_to, now - RETENTION_SECONDS
        await self._db.run(
            "compacting report buckets",
            lambda conn: _compact(conn, since, horizon, cutoff, self._db.shared),
        )
        self._folded_to = horizon

    async def _run(self) -> None:
        flushes = 0
        while True:
            await self._clock.sleep(FLUSH_SECONDS)
            flushes += 1
            try:
                await self.flush()
                if flushes % COMPACT_EVERY == 0:
                    await self.compact()
            except Exception as exc:  # any: kept in memory; the next flush tries again
                self.failures += 1
                log.error("report buckets not saved yet: %r", exc)

    async def aclose(self) -> None:
        """Stop the flush loop and write what is left."""
        if self._task is not None:
            async with self._lock:  # never cancel a flush halfway: its write may commit
                self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        try:
            await self.flush()
        except Exception as exc:
            calls = sum(tally.calls for tally in self._pending.values())
            log.error("report buckets of %d calls lost at close: %r", calls, exc)


def _into(found: dict[tuple[int | str, ...], Tally], group: tuple[int | str, ...]) -> Tally:
    tally = found.get(group)
    if tally is None:
        tally = found[group] = Tally()
    return tally


def _merge_into(target: dict[_Key, Tally], key: _Key, tally: Tally) -> None:
    found = target.get(key)
    if found is None:
        target[key] = tally
    else:
        found.merge(tally)


def _upsert(conn: Connection, batch: dict[_Key, Tally]) -> None:
    rows: Iterable[tuple[Any, ...]] = ((*key, *tally.values()) for key, tally in batch.items())
    with conn:
        conn.executemany(_UPSERT, rows)


def _compact(conn: Connection, since: int, horizon: int, cutoff: int, shared: bool) -> None:
    with conn:
        if shared:  # instances compact one at a time: a fold done twice would count twice
            conn.execute("SELECT pg_advisory_xact_lock(hashtext('sluicegate compaction'))")
        conn.execute(_FOLD, (since, horizon))
        conn.execute(
            "DELETE FROM report_buckets WHERE second >= ? AND second < ? AND second % 60 != 0",
            (since, horizon),
        )
        conn.execute("DELETE FROM report_buckets WHERE second < ?", (cutoff,))

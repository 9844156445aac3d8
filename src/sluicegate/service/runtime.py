"""Everything a running service holds, opened and closed together.

The gate (engine journal ``sluicegate.db``) and the service database (``service.db``)
live in one data directory. Every finished call, including calls recovered from the
journal after a restart, reaches the call log (results, callbacks) and the report
buckets through the gate's reporter.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from sluicegate.backends.database import SqlDatabase
from sluicegate.call import Call
from sluicegate.clock import Clock, SystemClock
from sluicegate.errors import StorageError
from sluicegate.gate import Gate
from sluicegate.outcomes import CallResult
from sluicegate.reporting import Reporter
from sluicegate.service.buckets import ReportBook
from sluicegate.service.calllog import CallLog
from sluicegate.service.db import open_db
from sluicegate.service.journeys import Journeys
from sluicegate.service.tenants import Tenants
from sluicegate.settings import Settings
from sluicegate.transport import Transport
from sluicegate.wiring import Shared


@dataclass(frozen=True, slots=True, kw_only=True)
class Runtime:
    """The service's parts. Routes reach them through their request context."""

    gate: Gate
    tenants: Tenants
    journeys: Journeys
    calls: CallLog
    reports: ReportBook
    clock: Clock
    settings: Settings
    dev: bool
    db: SqlDatabase

    async def readiness(self) -> dict[str, str]:
        """Each dependency and background writer: ``"ok"``, or what is wrong with it."""
        checks: dict[str, str] = {}
        probes: dict[str, Callable[[], Awaitable[object]]] = {
            "database": lambda: self.db.execute("checking", "SELECT 1"),
            "engine store": self.gate.queues,
        }
        for name, probe in probes.items():
            try:
                await probe()
                checks[name] = "ok"
            except StorageError as exc:
                checks[name] = str(exc)
        for name, alive in (("call log writer", self.calls.alive()),
                            ("report writer", self.reports.alive())):  # fmt: skip
            checks[name] = "ok" if alive else "stopped"
        return checks


class _Fanout:
    """One reporter that hands every finished call to several."""

    def __init__(self, *reporters: Reporter) -> None:
        self._reporters = reporters

    def record(self, call: Call, result: CallResult) -> None:
        for reporter in self._reporters:
            reporter.record(call, result)

    async def written(self) -> None:
        for reporter in self._reporters:
            await reporter.written()


@asynccontextmanager
async def open_runtime(
    data_dir: str | Path | Shared,
    *,
    dev: bool = False,
    settings: Settings | None = None,
    clock: Clock | None = None,
    transport: Transport | None = None,
    reporters: Sequence[Reporter] = (),
) -> AsyncIterator[Runtime]:
    """Open the service on ``data_dir`` (SQLite), or on storage shared with other
    instances. ``dev`` allows egress to loopback and any port."""
    clock = clock or SystemClock()
    settings = settings or Settings(allow_loopback=dev)
    db = await open_db(data_dir)
    try:
        calls = CallLog(db, clock)
        reports = ReportBook(db, clock)
        reporter = _Fanout(calls, reports, *reporters)
        try:
            async with Gate.open(
                data_dir, settings=settings, clock=clock, transport=transport, reporter=reporter
            ) as gate:
                await calls.start(gate)
                await reports.start()
                journeys = Journeys(db, clock)
                following = asyncio.create_task(journeys.follow(), name="journey changes")
                try:
                    yield Runtime(
                        gate=gate, tenants=Tenants(db, clock), journeys=journeys,
                        calls=calls, reports=reports, clock=clock, settings=settings, dev=dev,
                        db=db,
                    )  # fmt: skip
                finally:
                    following.cancel()
                    await asyncio.gather(following, return_exceptions=True)
                    calls.stopping()
        finally:
            await calls.aclose()
            await reports.aclose()
    finally:
        await db.aclose()

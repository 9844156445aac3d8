"""Journeys: the one property sluicegate keeps of them, ``timeoutSeconds`` (1..30).

A journey never declared has the default, 30 s. Its routes are in
:mod:`sluicegate.service.routes.journeys`. On a shared database, an instance that changes a
timeout tells the others, which forget what they cached (:meth:`Journeys.follow`).
"""

from __future__ import annotations

from sluicegate.backends.database import SqlDatabase
from sluicegate.call import DEFAULT_TIMEOUT_SECONDS
from sluicegate.clock import Clock


class Journeys:
    """Journey timeouts in the service database, cached: every call reads one."""

    def __init__(self, db: SqlDatabase, clock: Clock) -> None:
        self._db = db
        self._clock = clock
        self._cache: dict[tuple[str, str, str], int] = {}

    async def timeout(self, org: str, sandbox: str, journey: str) -> int:
        """The journey's ``timeoutSeconds``, the default when it was never declared."""
        key = (org, sandbox, journey)
        found = self._cache.get(key)
        if found is None:
            rows = await self._db.execute(
                "reading a journey",
                "SELECT timeout_seconds FROM journeys WHERE org = ? AND sandbox = ? "
                "AND journey = ?",
                key,
            )
            found = self._cache[key] = rows[0][0] if rows else DEFAULT_TIMEOUT_SECONDS
        return found

    async def declared(self, org: str, sandbox: str) -> list[tuple[str, int]]:
        """Every journey declared in ``org`` and ``sandbox`` and its ``timeoutSeconds``,
        sorted by id (in Python: SQLite and PostgreSQL collate text differently). A journey
        never declared is not listed: it has the default."""
        rows = await self._db.execute(
            "listing journeys",
            "SELECT journey, timeout_seconds FROM journeys WHERE org = ? AND sandbox = ?",
            (org, sandbox),
        )
        return sorted((str(journey), int(seconds)) for journey, seconds in rows)

    async def set_timeout(self, org: str, sandbox: str, journey: str, seconds: int) -> None:
        await self._db.execute(
            "saving a journey",
            "INSERT INTO journeys (org, sandbox, journey, timeout_seconds, updated_at) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT (org, sandbox, journey) "
            "DO UPDATE SET timeout_seconds = excluded.timeout_seconds, "
            "updated_at = excluded.updated_at",
            (org, sandbox, journey, seconds, self._clock.now()),
        )
        self._cache[(org, sandbox, journey)] = seconds
        await self._db.notify("journeys")

    async def follow(self) -> None:
        """Forget the cached timeouts whenever another instance changes one; until
        cancelled."""
        await self._db.listen("journeys", self._cache.clear)

"""Journeys: the one property sluicegate keeps of them, ``timeoutSeconds`` (1..30).

A journey never declared has the default, 30 s. Routes: ``PUT`` and ``GET``
``/v1/journeys/{journeyId}``, per org and sandbox.
"""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, Field

from sluicegate.backends.database import Database
from sluicegate.call import DEFAULT_TIMEOUT_SECONDS, MAX_TIMEOUT_SECONDS, MIN_TIMEOUT_SECONDS
from sluicegate.clock import Clock
from sluicegate.service.context import Editor, Reader
from sluicegate.service.problems import responses


class Journeys:
    """Journey timeouts in the service database, cached: every call reads one."""

    def __init__(self, db: Database, clock: Clock) -> None:
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


class JourneyIn(BaseModel):
    timeoutSeconds: int = Field(ge=MIN_TIMEOUT_SECONDS, le=MAX_TIMEOUT_SECONDS, strict=True)


class JourneyOut(BaseModel):
    journeyId: str
    timeoutSeconds: int


router = APIRouter(prefix="/v1/journeys", tags=["journeys"], responses=responses())


@router.put("/{journeyId}", response_model=JourneyOut)
async def put_journey(journeyId: str, body: JourneyIn, ctx: Editor) -> JourneyOut:
    """Declare a journey's timeout (1..30 s); it applies to calls made from then on."""
    await ctx.runtime.journeys.set_timeout(ctx.org, ctx.sandbox.name, journeyId,
                                           body.timeoutSeconds)  # fmt: skip
    return JourneyOut(journeyId=journeyId, timeoutSeconds=body.timeoutSeconds)


@router.get("/{journeyId}", response_model=JourneyOut)
async def get_journey(journeyId: str, ctx: Reader) -> JourneyOut:
    """A journey's timeout; 30 s for a journey never declared."""
    seconds = await ctx.runtime.journeys.timeout(ctx.org, ctx.sandbox.name, journeyId)
    return JourneyOut(journeyId=journeyId, timeoutSeconds=seconds)

"""``PUT`` and ``GET /v1/journeys/{journeyId}``: a journey's ``timeoutSeconds``, per org
and sandbox; ``GET /v1/journeys``: every journey declared in the sandbox (what
``sluicegate get journeys`` and ``apply`` read)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter
from pydantic import BaseModel, BeforeValidator, Field

from sluicegate.call import MAX_TIMEOUT_SECONDS, MIN_TIMEOUT_SECONDS
from sluicegate.service.bodies import JsonRoute
from sluicegate.service.context import Editor, Reader
from sluicegate.service.problems import responses


def _whole(value: object) -> object:
    """``5.0`` as ``5``: JSON Schema's integer is any number without a fraction."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


class JourneyIn(BaseModel):
    timeoutSeconds: Annotated[int, BeforeValidator(_whole)] = Field(
        ge=MIN_TIMEOUT_SECONDS, le=MAX_TIMEOUT_SECONDS, strict=True
    )


class JourneyOut(BaseModel):
    journeyId: str
    timeoutSeconds: int


class JourneyList(BaseModel):
    results: list[JourneyOut]


router = APIRouter(
    route_class=JsonRoute, prefix="/v1/journeys", tags=["journeys"], responses=responses()
)


@router.get("", response_model=JourneyList)
async def list_journeys(ctx: Reader) -> JourneyList:
    """Every journey declared in the org and sandbox, by id. A journey never declared is
    not listed: its timeout is the default, 30 s."""
    declared = await ctx.runtime.journeys.declared(ctx.org, ctx.sandbox.name)
    return JourneyList(results=[JourneyOut(journeyId=journey, timeoutSeconds=seconds)
                                for journey, seconds in declared])  # fmt: skip


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

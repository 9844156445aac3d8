"""``/v1/calls``: one HTTP call runs a guarded call and gets its outcome.

These routes declare the call API for OpenAPI and serve it through the framework; under
load the same paths are served by :mod:`~sluicegate.service.fastpath`, which reaches the
same :mod:`~sluicegate.service.callflow` without the framework's per-request work. The
listing (:mod:`~sluicegate.service.calllist`) and the replay are served here only.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Response

from sluicegate.errors import InvalidInput
from sluicegate.service import callflow
from sluicegate.service.bodies import JsonRoute
from sluicegate.service.calllist import DEFAULT_LIMIT, MAX_LIMIT, CallQuery, Cursor, list_calls
from sluicegate.service.context import CALL, READ, Caller, Context, allow
from sluicegate.service.problems import responses
from sluicegate.service.routes.call_models import (
    BatchIn,
    BatchOut,
    CallIn,
    CallList,
    CallPending,
    CallView,
    Outcome,
    ReplayIn,
)
from sluicegate.service.routes.reports import parse_time

_ERRORS = responses({404: "Unknown sandbox or call",
                     429: "The org is over its quota of calls in flight or queued; "
                          "try again after Retry-After",
                     503: "Storage unavailable, service busy, or shutting down"})  # fmt: skip
_PENDING_HEADERS = {
    "Location": {"description": "Where the outcome will be: /v1/calls/{callId}",
                 "schema": {"type": "string"}},
    "Retry-After": {"description": "Seconds to wait before asking", "schema": {"type": "integer"}},
}  # fmt: skip
_RESULTS: dict[int | str, dict[str, Any]] = {
    200: {"model": CallView, "description": "The call ended"},
    202: {"model": CallPending, "description": "The call has not ended yet",
          "headers": _PENDING_HEADERS},
}  # fmt: skip
#: Any role reads the list: callers follow their calls, readers watch them.
Lister = Annotated[Context, Depends(allow(READ | CALL))]
#: Query text: no NUL, which no store takes.
_TEXT = r"^[^\x00]*$"

router = APIRouter(route_class=JsonRoute, prefix="/v1/calls", tags=["calls"])


def _json(answer: callflow.Answer) -> Response:
    return Response(answer.text, status_code=answer.status, media_type="application/json",
                    headers=answer.headers())  # fmt: skip


@router.post("", response_model=None, responses=_RESULTS | _ERRORS)
async def make_call(body: CallIn, ctx: Caller) -> Response:
    """Run a call through the guardrails; wait up to ``waitSeconds`` for its outcome."""
    return _json(await callflow.make(ctx, body))


_BATCH: dict[int | str, dict[str, Any]] = {
    200: {"model": BatchOut, "description": "One entry per call, in order"}
}


@router.post(":batch", response_model=None, responses=_BATCH | _ERRORS)
async def make_calls(body: BatchIn, ctx: Caller) -> Response:
    """Run up to 1,000 calls; wait up to ``waitSeconds`` for all of their outcomes. Each
    call is answered on its own: its result view (ended), its state (``queued`` or
    ``running``: ask ``GET /v1/calls/{callId}``), or ``refused`` with its error."""
    return _json(await callflow.batch(ctx, body))


@router.get("", response_model=CallList, responses=responses())
async def list_ended_calls(
    ctx: Lister,
    journey: Annotated[str | None, Query(alias="journeyId", min_length=1, max_length=256,
                                         pattern=_TEXT, description="One journey")] = None,
    outcome: Annotated[Outcome | None, Query(description="One outcome")] = None,
    endpoint: Annotated[str | None, Query(
        max_length=2048, pattern=_TEXT,
        description="A capping config uid, or the host of calls without one")] = None,
    host: Annotated[str | None, Query(max_length=2048, pattern=_TEXT,
                                      description="The host called")] = None,
    since: Annotated[str | None, Query(alias="from", description=(
        "Ended at or after: ISO-8601 or epoch seconds"))] = None,
    until: Annotated[str | None, Query(alias="to", description=(
        "Ended before: ISO-8601 or epoch seconds"))] = None,
    order: Annotated[Literal["newest", "oldest"], Query(
        description="newest first, or oldest first (a cursor keeps its own)")] = "newest",
    cursor: Annotated[str | None, Query(max_length=64, description="From a previous answer's "
                                        "next or tail")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT, description="Calls per page")] = DEFAULT_LIMIT,
) -> CallList:  # fmt: skip
    """Ended calls of the org and sandbox, newest first (or oldest first), a page at a
    time; ``tail`` lists, oldest first, those that end later."""
    start = parse_time("from", since) if since else None
    end = parse_time("to", until) if until else None
    if start is not None and end is not None and start >= end:
        raise InvalidInput("INVALID_RANGE", "'from' must be before 'to'")
    place = Cursor.parse(cursor) if cursor else None
    query = CallQuery(org=ctx.org, sandbox=ctx.sandbox.name, journey=journey, outcome=outcome,
                      endpoint=endpoint, host=host, since=start, until=end,
                      oldest_first=order == "oldest", cursor=place, limit=limit)  # fmt: skip
    await ctx.runtime.calls.flush()
    page = await list_calls(ctx.runtime.db, query)
    return CallList.model_validate({"calls": page.calls, "next": page.next, "tail": page.tail})


@router.get("/{callId}", response_model=None, responses=_RESULTS | _ERRORS)
async def get_call(callId: str, ctx: Caller) -> Response:
    """A call's result view (200) once it ended, else its state (202); 404 if unknown."""
    return _json(await callflow.get(ctx, callId))


_REPLAY_ERRORS = responses({
    404: "Unknown sandbox or call",
    409: "The call has not ended, succeeded, or its request was not kept",
    429: "The org is over its quota of calls in flight or queued; try again after Retry-After",
    503: "Storage unavailable, service busy, or shutting down",
})  # fmt: skip


@router.post("/{callId}:replay", response_model=None, responses=_RESULTS | _REPLAY_ERRORS)
async def replay_call(callId: str, ctx: Caller, body: ReplayIn | None = None) -> Response:
    """Make a new call (a new id) with the request of a call that ended in another outcome
    than ``success``; answered as ``POST /v1/calls``."""
    wait = (body or ReplayIn()).waitSeconds
    return _json(await callflow.replay(ctx, callId, wait))

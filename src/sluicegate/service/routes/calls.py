"""``/v1/calls``: one HTTP call runs a guarded call and gets its outcome.

These routes declare the call API for OpenAPI and serve it through the framework; under
load the same paths are served by :mod:`~sluicegate.service.fastpath`, which reaches the
same :mod:`~sluicegate.service.callflow` without the framework's per-request work.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response

from sluicegate.service import callflow
from sluicegate.service.bodies import JsonRoute
from sluicegate.service.context import Caller
from sluicegate.service.problems import responses
from sluicegate.service.routes.call_models import BatchIn, BatchOut, CallIn, CallPending, CallView

_ERRORS = responses({404: "Unknown sandbox or call",
                     429: "The org is over its quota of calls in flight or queued; "
                          "try again after Retry-After",
                     503: "Storage unavailable, service busy, or shutting down"})  # fmt: skip
_RESULTS: dict[int | str, dict[str, Any]] = {
    200: {"model": CallView, "description": "The call ended"},
    202: {"model": CallPending, "description": "The call has not ended yet"},
}

router = APIRouter(route_class=JsonRoute, prefix="/v1/calls", tags=["calls"])


def _json(answer: callflow.Answer) -> Response:
    status, text = answer
    return Response(text, status_code=status, media_type="application/json")


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


@router.get("/{callId}", response_model=None, responses=_RESULTS | _ERRORS)
async def get_call(callId: str, ctx: Caller) -> Response:
    """A call's result view (200) once it ended, else its state (202); 404 if unknown."""
    return _json(await callflow.get(ctx, callId))

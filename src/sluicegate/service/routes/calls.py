"""``/v1/calls``: one HTTP call runs a guarded call and gets its outcome.

``POST /v1/calls`` validates and builds the call, honours the idempotency key, records the
call, submits it to the gate under an id chosen here, then waits up to ``waitSeconds`` for
its end: 200 with the result view when it ended, else 202 ``{callId, state}``. Only the
request waiting holds the call's future: a queued call whose request has answered holds
nothing in memory. ``GET /v1/calls/{callId}`` answers the same way later. The call's
timeout is its journey's declared ``timeoutSeconds``. Routes return JSON they build
themselves (the result view is stored as JSON and served as it is); the models below
document it in OpenAPI.
"""

from __future__ import annotations

import asyncio
import json
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Response
from pydantic import BaseModel, ConfigDict, Field, JsonValue, WithJsonSchema

from sluicegate.call import METHOD_ALIASES, METHODS, Call, Service, check_url, new_call_id
from sluicegate.errors import InvalidCall
from sluicegate.handle import CallHandle
from sluicegate.service.calllog import CallLog
from sluicegate.service.callrows import Accepted, Found
from sluicegate.service.callview import view_json
from sluicegate.service.context import Caller, Context
from sluicegate.service.problems import Problem, responses

MAX_WAIT_SECONDS = 60
DEFAULT_WAIT_SECONDS = 30


# The schema documents what Call.build accepts, so schema-valid input is never refused;
# the checks stay in the core, so that refusals carry its codes (INVALID_URL, ...).
URL_PATTERN = r"^https?://[A-Za-z0-9.-]+(:[0-9]{1,4})?([/?#][!-~]*)?$"
_METHODS: list[JsonValue] = [*sorted(METHODS | METHOD_ALIASES.keys())]
_SERVICES: list[JsonValue] = [service.value for service in Service]
Headers = Annotated[dict[str, str], WithJsonSchema({
    "type": "object",
    "propertyNames": {"pattern": r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$"},
    "additionalProperties": {"type": "string", "pattern": r"^[^\r\n\x00]*$"},
})]  # fmt: skip


class HttpRequestIn(BaseModel):
    """The request to make. A string ``body`` is sent as it is; any other JSON value is
    sent as JSON, with ``Content-Type: application/json`` unless a Content-Type is given."""

    model_config = ConfigDict(extra="forbid")
    method: str = Field(
        description="The HTTP method; Adobe's OPTION means OPTIONS",
        json_schema_extra={"enum": _METHODS},
    )
    url: str = Field(
        max_length=8192, examples=["https://api.example.org/v1/send"],
        description="Absolute http(s) URL; the egress policy may still refuse it (blocked)",
        json_schema_extra={"pattern": URL_PATTERN},
    )  # fmt: skip
    headers: Headers | None = None
    body: Any = Field(None, description="A string is sent as is; other JSON as JSON")


class CallIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    journeyId: str = Field(min_length=1, max_length=256)
    service: str = Field(description="action (custom action) or dataSource",
                         json_schema_extra={"enum": _SERVICES})  # fmt: skip
    request: HttpRequestIn
    waitSeconds: float = Field(
        DEFAULT_WAIT_SECONDS, ge=0, le=MAX_WAIT_SECONDS, strict=True,
        description="How long to hold the response for the outcome, in seconds",
    )  # fmt: skip
    callbackUrl: str | None = Field(
        None, max_length=2048, json_schema_extra={"pattern": URL_PATTERN},
        description="Where to POST the result view when the call ends (http or https)",
    )  # fmt: skip
    idempotencyKey: str | None = Field(
        None, min_length=1, max_length=255,
        description="A key seen in the last 24 h answers with that first call",
    )  # fmt: skip


class ErrorOut(BaseModel):
    kind: Literal["http", "error", "timedout", "capped", "expired", "blocked"]
    message: str
    status: int | None


class ResponseOut(BaseModel):
    status: int
    headers: dict[str, str]
    body: Any = Field(description="Read according to encoding")
    encoding: Literal["json", "text", "base64"]
    truncated: bool


class CallView(BaseModel):
    """A finished call."""

    callId: str
    state: Literal["done"]
    outcome: Literal["success", "capped", "expired", "timedout", "http_error",
                     "network_error", "blocked"]  # fmt: skip
    joStatusCode: str | None
    attempts: int = Field(description="Requests sent: first attempt, retries, redirect hops")
    retries: int = Field(description="Retries made (at most 3)")
    slots: int
    queuedMs: float
    executionMs: float
    response: ResponseOut | None
    error: ErrorOut | None
    originError: ErrorOut | None


class CallPending(BaseModel):
    """A call that has not ended yet: ask again with ``GET /v1/calls/{callId}``."""

    callId: str
    state: Literal["queued", "running"]


_ERRORS = responses({404: "Unknown sandbox or call",
                     503: "Storage unavailable, or shutting down"})  # fmt: skip
_RESULTS: dict[int | str, dict[str, Any]] = {
    200: {"model": CallView, "description": "The call ended"},
    202: {"model": CallPending, "description": "The call has not ended yet"},
}

router = APIRouter(prefix="/v1/calls", tags=["calls"])


@router.post("", response_model=None, responses=_RESULTS | _ERRORS)
async def make_call(body: CallIn, ctx: Caller) -> Response:
    """Run a call through the guardrails; wait up to ``waitSeconds`` for its outcome."""
    log, org, sandbox = ctx.runtime.calls, ctx.org, ctx.sandbox.name
    if body.idempotencyKey is not None:
        first = await log.find_key(org, sandbox, body.idempotencyKey)
        if first is not None:
            return await _replay(ctx, first, body.waitSeconds)
    timeout = await ctx.runtime.journeys.timeout(org, sandbox, body.journeyId)
    method, url, headers, payload = _request(body.request)
    call = Call.build(org=org, sandbox=sandbox, journey=body.journeyId, service=body.service,
                      method=method, url=url, headers=headers, body=payload,
                      timeout_seconds=timeout)  # fmt: skip
    if body.callbackUrl is not None:
        _check_callback(body.callbackUrl)
    now = ctx.runtime.clock.now()
    entry = Accepted(call_id=new_call_id(now), org=org, sandbox=sandbox, journey=body.journeyId,
                     created_at=now, callback_url=body.callbackUrl,
                     idempotency_key=body.idempotencyKey)  # fmt: skip
    durable = body.callbackUrl is not None or body.idempotencyKey is not None
    start = _start(ctx, log, entry, call, durable)
    # Once the row is being written the call must be submitted, even if this request is
    # cancelled: shield the two together.
    started = await (asyncio.shield(start) if durable else start)
    if isinstance(started, str):  # the same idempotency key, a moment earlier
        return await _replay(ctx, started, body.waitSeconds)
    return await _answer(ctx, started, body.waitSeconds)


@router.get("/{callId}", response_model=None, responses=_RESULTS | _ERRORS)
async def get_call(callId: str, ctx: Caller) -> Response:
    """A call's result view (200) once it ended, else its state (202); 404 if unknown."""
    found = await ctx.runtime.calls.find(ctx.org, ctx.sandbox.name, callId)
    if found is None:
        raise Problem(404, "CALL_NOT_FOUND", f"no call {callId!r} in this org and sandbox")
    return _found(found)


async def _start(
    ctx: Context, log: CallLog, entry: Accepted, call: Call, durable: bool
) -> CallHandle | str:
    """Record then submit; the id of an earlier call when the idempotency key was taken."""
    first = await log.accept(entry, durable=durable)
    if first is not None:
        return first
    try:
        handle = await ctx.runtime.gate.submit(call, call_id=entry.call_id)
    except BaseException:
        log.withdraw(entry)
        raise
    if handle.state == "queued":
        log.queued(entry)
    return handle


async def _answer(ctx: Context, handle: CallHandle, wait: float) -> Response:
    """200 with the view once ``handle`` ended (waiting at most ``wait`` s), else 202."""
    if wait > 0 and not handle.done():
        clock = ctx.runtime.clock
        try:
            async with clock.deadline(clock.now() + wait):
                await handle.result()
        except TimeoutError:
            pass
        except asyncio.CancelledError:
            if _cancelled_here():
                raise
    if not handle.done():
        return _json(202, {"callId": handle.call_id, "state": handle.state})
    try:
        result = await handle.result()
    except asyncio.CancelledError:
        if _cancelled_here():
            raise
        raise Problem(503, "SHUTTING_DOWN", "the service stopped during the call; "
                      "ask for it again after the restart") from None  # fmt: skip
    text = ctx.runtime.calls.finished_json(handle.call_id) or view_json(result)
    return Response(text, status_code=200, media_type="application/json")


async def _replay(ctx: Context, call_id: str, wait: float) -> Response:
    """Answer a repeated idempotency key with the first call, never calling again."""
    handle = ctx.runtime.gate.watch(call_id)  # first, so that an end from now on is seen
    found = await ctx.runtime.calls.find(ctx.org, ctx.sandbox.name, call_id)
    if found is None or found.json is not None:
        return _found(found or Found(call_id, "queued"))
    return await _answer(ctx, handle, wait)


def _found(found: Found) -> Response:
    if found.json is None:
        return _json(202, {"callId": found.call_id, "state": found.state})
    return Response(found.json, status_code=200, media_type="application/json")


def _json(status: int, content: dict[str, Any]) -> Response:
    return Response(json.dumps(content), status_code=status, media_type="application/json")


def _request(request: HttpRequestIn) -> tuple[str, str, dict[str, str], str | None]:
    """Method, URL, headers and body of the request to make, the body as text."""
    headers = dict(request.headers or {})
    body = request.body
    if body is None or isinstance(body, str):
        return request.method, request.url, headers, body
    if not any(name.lower() == "content-type" for name in headers):
        headers["Content-Type"] = "application/json"
    try:
        text = json.dumps(body, separators=(",", ":"), allow_nan=False)
    except ValueError:
        raise InvalidCall("INVALID_BODY", "body holds NaN or Infinity, not JSON") from None
    return request.method, request.url, headers, text


def _check_callback(url: str) -> None:
    """Refuse a callback URL that is not an absolute http(s) URL. The egress policy judges
    it when the callback is sent: a refusal then is logged and counted."""
    try:
        parts = check_url(url)
    except InvalidCall as exc:
        raise InvalidCall("INVALID_CALLBACK_URL", f"callbackUrl: {exc.message}") from None
    if parts.scheme not in ("http", "https"):
        raise InvalidCall("INVALID_CALLBACK_URL", "callbackUrl must be http or https")


def _cancelled_here() -> bool:
    """Whether this request's own task is being cancelled (not the call it waits for)."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0

"""The wire format of ``/v1/calls``: request bodies, the views answered, for OpenAPI.

The schema documents what :meth:`~sluicegate.call.Call.build` accepts, so schema-valid
input is never refused; the checks stay in the core, so that refusals carry its codes
(``INVALID_URL``, ...). Answers are JSON the call flow builds itself (a result view is
stored as JSON and served as it is); the response models below document it.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue, WithJsonSchema

from sluicegate.call import METHOD_ALIASES, METHODS, Service

MAX_WAIT_SECONDS = 60
DEFAULT_WAIT_SECONDS = 30
#: Calls in one ``POST /v1/calls:batch``.
MAX_BATCH = 1000

URL_PATTERN = r"^https?://[A-Za-z0-9.-]+(:[0-9]{1,4})?([/?#][!-~]*)?$"
_METHODS: list[JsonValue] = [*sorted(METHODS | METHOD_ALIASES.keys())]
_SERVICES: list[JsonValue] = [service.value for service in Service]
Headers = Annotated[dict[str, str], WithJsonSchema({
    "type": "object",
    "propertyNames": {"pattern": r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$"},
    "additionalProperties": {"type": "string", "pattern": r"^[^\r\n\x00]*$"},
})]  # fmt: skip
Wait = Annotated[float, Field(
    ge=0, le=MAX_WAIT_SECONDS, strict=True,
    description="How long to hold the response for the outcome, in seconds",
)]  # fmt: skip
CallbackUrl = Annotated[str | None, Field(
    max_length=2048, json_schema_extra={"pattern": URL_PATTERN},
    description="Where to POST the result view when the call ends (http or https)",
)]  # fmt: skip


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


class CallItem(BaseModel):
    """One call: what to request, for which journey, and what to do with its end."""

    model_config = ConfigDict(extra="forbid")
    journeyId: str = Field(min_length=1, max_length=256)
    service: str = Field(description="action (custom action) or dataSource",
                         json_schema_extra={"enum": _SERVICES})  # fmt: skip
    request: HttpRequestIn
    callbackUrl: CallbackUrl = None
    idempotencyKey: str | None = Field(
        None, min_length=1, max_length=255,
        description="A key seen in the last 24 h answers with that first call",
    )  # fmt: skip


class CallIn(CallItem):
    waitSeconds: Wait = DEFAULT_WAIT_SECONDS


def _inline(schema: Any, defs: dict[str, Any]) -> Any:
    """``schema`` with every local ``$ref`` replaced by its definition."""
    if isinstance(schema, list):
        return [_inline(item, defs) for item in schema]
    if not isinstance(schema, dict):
        return schema
    if "$ref" in schema:
        return _inline(defs[schema["$ref"].rsplit("/", 1)[-1]], defs)
    return {key: _inline(value, defs) for key, value in schema.items() if key != "$defs"}


_ITEM = CallItem.model_json_schema()
# Each call is read on its own (an invalid one is refused alone, the others run), so the
# batch takes any JSON objects and documents them as calls.
Items = Annotated[list[dict[str, Any]], WithJsonSchema(
    {"type": "array", "minItems": 1, "maxItems": MAX_BATCH,
     "items": _inline(_ITEM, _ITEM.get("$defs", {}))},
)]  # fmt: skip


class BatchIn(BaseModel):
    """Up to :data:`MAX_BATCH` calls; ``callbackUrl`` applies to those without their own."""

    model_config = ConfigDict(extra="forbid")
    calls: Items = Field(min_length=1, max_length=MAX_BATCH)
    waitSeconds: Wait = DEFAULT_WAIT_SECONDS
    callbackUrl: CallbackUrl = None


Outcome = Literal["success", "capped", "expired", "timedout", "http_error", "network_error",
                  "blocked"]  # fmt: skip


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
    outcome: Outcome
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


class CallRefused(BaseModel):
    """A call of a batch that was not made: its error, as a request of its own gets it."""

    state: Literal["refused"]
    status: int
    code: str
    message: str


class BatchOut(BaseModel):
    """One entry per call of the batch, in its order."""

    results: list[CallView | CallPending | CallRefused]


class ReplayIn(BaseModel):
    """How long to hold the response of a replay for the new call's outcome."""

    model_config = ConfigDict(extra="forbid")
    waitSeconds: Wait = DEFAULT_WAIT_SECONDS


class CallSummary(BaseModel):
    """An ended call as listings show it: no headers, no bodies, no query string."""

    callId: str
    journeyId: str
    service: str | None = Field(description="action or dataSource; null when not known")
    method: str | None
    url: str | None = Field(description="Without userinfo, query or fragment")
    host: str | None
    endpoint: str | None = Field(description="The capping config uid that applied, else the host")
    outcome: Outcome
    status: int | None = Field(description="The last response's HTTP status; null without one")
    createdAt: str = Field(description="When the service accepted the call (ISO-8601, UTC)")
    endedAt: str = Field(description="When the call ended (ISO-8601, UTC)")
    replayOf: str | None = Field(description="The call this one replays")


class CallList(BaseModel):
    """A page of ended calls, in the order asked for."""

    calls: list[CallSummary]
    next: str | None = Field(
        description="The cursor of the next page; newest first, null "
        "after the oldest; oldest first, never null (ask later for more)"
    )
    tail: str = Field(description="A cursor listing, oldest first, the calls that end from now")

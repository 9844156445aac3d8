"""What ``/v1/calls`` does, whichever door a request came in by (:mod:`.fastpath`, or the
framework's routes in :mod:`.routes.calls`): each answers an :class:`Answer`.

A call is validated and built, its idempotency key honoured, recorded, submitted to the
gate under an id chosen here; the request then waits up to ``waitSeconds`` for its end:
200 with the result view when it ended, else 202 ``{callId, state}`` with ``Location``
(where its outcome will be) and ``Retry-After`` (when to ask). Only the request waiting
holds the call's future: a queued call whose request has answered holds nothing in
memory. The call's timeout is its journey's declared ``timeoutSeconds``.

A replay makes a new call (a new id) with the kept request of one that ended in another
outcome than ``success`` (:mod:`~sluicegate.service.replays`), and answers as a call:
its journey's timeout as it is now, its original's callback URL, no idempotency key.

A batch runs each of its calls the same way, submitted together in the batch's order,
and answers one entry per call: its result view, its state, or its refusal (an invalid
call, or one the call log could not record, is refused alone; the others run). What
concerns the whole request (auth, a body that is not a batch) answers the request, as
for a single call.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple
from urllib.parse import quote

from pydantic import ValidationError

from sluicegate.call import Call, check_url, new_call_id
from sluicegate.errors import InvalidCall
from sluicegate.handle import CallHandle, ended
from sluicegate.service.callrows import Accepted, Found, RequestLine
from sluicegate.service.callview import view_json
from sluicegate.service.context import Context
from sluicegate.service.problems import Problem, answer, invalid
from sluicegate.service.routes.call_models import BatchIn, CallIn, CallItem, HttpRequestIn

#: Seconds a client waits before asking again for a call that has not ended.
RETRY_AFTER = 1


class Answer(NamedTuple):
    """A status and its JSON; ``pending`` is the id of a call that has not ended (202)."""

    status: int
    text: str
    pending: str | None = None

    def headers(self) -> dict[str, str]:
        """``Location`` and ``Retry-After`` for a 202, none otherwise."""
        if self.pending is None:
            return {}
        return {"Location": f"/v1/calls/{quote(self.pending, safe='')}",
                "Retry-After": str(RETRY_AFTER)}  # fmt: skip


async def make(ctx: Context, body: CallIn) -> Answer:
    """``POST /v1/calls``."""
    started = await _begin(ctx, body, body.callbackUrl)
    if isinstance(started, str):  # the same idempotency key: that first call
        return await _repeat(ctx, started, body.waitSeconds)
    await _wait(ctx, (started,), body.waitSeconds)
    return await _ended(ctx, started)


async def get(ctx: Context, call_id: str) -> Answer:
    """``GET /v1/calls/{callId}``: the result view once ended (200), else its state (202)."""
    found = await ctx.runtime.calls.find(ctx.org, ctx.sandbox.name, call_id)
    if found is None:
        raise Problem(404, "CALL_NOT_FOUND", f"no call {call_id!r} in this org and sandbox")
    return _found(found)


async def replay(ctx: Context, call_id: str, wait: float) -> Answer:
    """``POST /v1/calls/{callId}:replay``: 404 for a call unknown here, 409 for one that
    has not ended, succeeded, or whose request was not kept."""
    log, org, sandbox = ctx.runtime.calls, ctx.org, ctx.sandbox.name
    found = await log.find(org, sandbox, call_id)
    if found is None:
        raise Problem(404, "CALL_NOT_FOUND", f"no call {call_id!r} in this org and sandbox")
    original = await log.original(org, sandbox, call_id) if found.json is not None else None
    if original is None:
        raise Problem(409, "CALL_NOT_ENDED", f"call {call_id!r} has not ended; replay it "
                      "once it has")  # fmt: skip
    kept = original.request
    if kept is None:
        raise Problem(409, "CALL_NOT_REPLAYABLE",
                      f"call {call_id!r} cannot be replayed: {original.missing}")  # fmt: skip
    started = await _accept(ctx, original.journey, service=kept.service, method=kept.method,
                            url=kept.url, headers=kept.headers, body=kept.body,
                            callback=original.callback_url, replay_of=call_id)  # fmt: skip
    assert isinstance(started, CallHandle)  # no idempotency key: always a new call
    await _wait(ctx, (started,), wait)
    return await _ended(ctx, started)


async def batch(ctx: Context, body: BatchIn) -> Answer:
    """``POST /v1/calls:batch``."""
    items = [_item(raw) for raw in body.calls]
    begun = iter(await asyncio.gather(*(
        _begin_one(ctx, item, body.callbackUrl) for item in items if isinstance(item, CallItem)
    )))  # fmt: skip
    entries = [item if isinstance(item, str) else next(begun) for item in items]
    await _wait(ctx, [entry for entry in entries if isinstance(entry, CallHandle)],
                body.waitSeconds)  # fmt: skip
    parts = []
    for entry in entries:
        if isinstance(entry, CallHandle):
            entry = (await _ended(ctx, entry)).text
        elif isinstance(entry, Found):
            entry = (await _repeat(ctx, entry.call_id, 0)).text
        parts.append(entry)
    return Answer(200, '{"results":[' + ",".join(parts) + "]}")


def _item(raw: dict[str, Any]) -> CallItem | str:
    """``raw`` as a call, or the JSON of its refusal."""
    try:
        return CallItem.model_validate(raw)
    except ValidationError as exc:
        return _refusal(400, {"code": "INVALID_REQUEST", "message": invalid(exc.errors())[0]})


async def _begin_one(
    ctx: Context, item: CallItem, callback: str | None
) -> CallHandle | Found | str:
    """One call of a batch: its handle, the first call of its idempotency key, or the JSON
    of its refusal. A refusal concerns this call alone (others run), whatever its cause."""
    try:
        started = await _begin(ctx, item, item.callbackUrl or callback)
    except Exception as exc:
        found = answer(exc, "/v1/calls")
        if found is None:
            raise
        return _refusal(*found)
    return Found(started, "queued") if isinstance(started, str) else started


def _refusal(status: int, problem: dict[str, Any]) -> str:
    doc = {"state": "refused", "status": status, "code": problem["code"],
           "message": problem["message"]}  # fmt: skip
    return json.dumps(doc, separators=(",", ":"))


async def _begin(ctx: Context, item: CallItem, callback: str | None) -> CallHandle | str:
    """Build, record and submit ``item``; the id of the first call of its idempotency key
    when one was made."""
    log, org, sandbox = ctx.runtime.calls, ctx.org, ctx.sandbox.name
    if item.idempotencyKey is not None:
        first = await log.find_key(org, sandbox, item.idempotencyKey)
        if first is not None:
            return first
    method, url, headers, payload = _request(item.request)
    return await _accept(ctx, item.journeyId, service=item.service, method=method, url=url,
                         headers=headers, body=payload, callback=callback,
                         key=item.idempotencyKey)  # fmt: skip


async def _accept(
    ctx: Context,
    journey: str,
    *,
    service: str,
    method: str,
    url: str,
    headers: Mapping[str, str],
    body: bytes | str | None,
    callback: str | None,
    key: str | None = None,
    replay_of: str | None = None,
) -> CallHandle | str:
    """Build a call of ``journey`` with the journey's timeout, record it and submit it:
    a new call, or a replay of ``replay_of``."""
    org, sandbox = ctx.org, ctx.sandbox.name
    timeout = await ctx.runtime.journeys.timeout(org, sandbox, journey)
    call = Call.build(org=org, sandbox=sandbox, journey=journey, service=service, method=method,
                      url=url, headers=headers, body=body, timeout_seconds=timeout)  # fmt: skip
    if callback is not None:
        _check_callback(callback)
    now = ctx.runtime.clock.now()
    entry = Accepted(call_id=new_call_id(now), org=org, sandbox=sandbox, journey=journey,
                     created_at=now, line=RequestLine.of(call), callback_url=callback,
                     idempotency_key=key, replay_of=replay_of)  # fmt: skip
    return await _launch(ctx, entry, call, callback is not None or key is not None)


async def _launch(ctx: Context, entry: Accepted, call: Call, durable: bool) -> CallHandle | str:
    """Record and submit ``call`` as ``entry``, the two shielded together when durable."""
    start = _start(ctx, entry, call, durable)
    # Once the row is being written the call must be submitted, even if this request is
    # cancelled: shield the two together.
    return await (asyncio.shield(start) if durable else start)


async def _start(ctx: Context, entry: Accepted, call: Call, durable: bool) -> CallHandle | str:
    """Record then submit; the id of an earlier call when the idempotency key was taken."""
    log = ctx.runtime.calls
    ctx.runtime.gate.quotas.check(entry.org, throttled=False)  # before anything is kept
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


async def _wait(ctx: Context, handles: Iterable[CallHandle], wait: float) -> None:
    """Wait at most ``wait`` seconds for every one of ``handles`` to end."""
    pending = [handle for handle in handles if not handle.done()]
    if wait <= 0 or not pending:
        return
    clock = ctx.runtime.clock
    try:
        async with clock.deadline(clock.now() + wait):
            await ended(pending)
    except TimeoutError:
        pass
    except asyncio.CancelledError:
        if _cancelled_here():
            raise


async def _ended(ctx: Context, handle: CallHandle) -> Answer:
    """200 with the view of ``handle`` if it ended, else 202 with its state."""
    if not handle.done():
        return _pending(handle.call_id, handle.state)
    try:
        result = await handle.result()
    except asyncio.CancelledError:
        raise Problem(503, "SHUTTING_DOWN", "the service stopped during the call; "
                      "ask for it again after the restart") from None  # fmt: skip
    return Answer(200, ctx.runtime.calls.finished_json(handle.call_id) or view_json(result))


async def _repeat(ctx: Context, call_id: str, wait: float) -> Answer:
    """Answer a repeated idempotency key with the first call, never calling again."""
    handle = ctx.runtime.gate.watch(call_id)  # first, so that an end from now on is seen
    found = await ctx.runtime.calls.find(ctx.org, ctx.sandbox.name, call_id)
    if found is None or found.json is not None:
        return _found(found or Found(call_id, "queued"))
    await _wait(ctx, (handle,), wait)
    return await _ended(ctx, handle)


def _found(found: Found) -> Answer:
    if found.json is None:
        return _pending(found.call_id, found.state)
    return Answer(200, found.json)


def _pending(call_id: str, state: str) -> Answer:
    return Answer(202, json.dumps({"callId": call_id, "state": state}), pending=call_id)


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

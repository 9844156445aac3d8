"""The call routes without the framework: ``POST /v1/calls``, ``POST /v1/calls:batch`` and
``GET /v1/calls/{callId}`` answered straight from ASGI.

They are the service's hot path: every call of a journey is one request. The framework's
per-request work (middleware, routing, dependency solving) cost more than the guardrails
themselves, so this door takes the well-formed request (a bearer token, the org and
sandbox headers, a JSON body the models accept) to the same checks
(:func:`~sluicegate.service.context.identify`, :func:`~sluicegate.service.context.admit`),
models and :mod:`~sluicegate.service.callflow` as the routes of
:mod:`~sluicegate.service.routes.calls`, and answers errors through the one mapping of
:mod:`~sluicegate.service.problems`. Whatever else comes (a header missing, a body the
models refuse, another route) goes on to the framework, with the body already read, so
that it is answered exactly as before, from one definition of each rule. The routes that
are not on the hot path go there too: the listing ``GET /v1/calls`` (its query string is
not part of the path matched here) and ``POST /v1/calls/{callId}:replay``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from pydantic import BaseModel, ValidationError
from starlette.types import ASGIApp, Receive, Scope, Send

from sluicegate.service import callflow
from sluicegate.service.context import CALL, Context, admit, identify
from sluicegate.service.limits import replay, send_json
from sluicegate.service.problems import answer, render
from sluicegate.service.routes.call_models import BatchIn, CallIn
from sluicegate.service.runtime import Runtime

PREFIX = "/v1/calls"
M = TypeVar("M", bound=BaseModel)


class FastPath:
    """ASGI: the call routes served here, everything else by ``app``."""

    def __init__(self, app: ASGIApp, runtime: Runtime) -> None:
        self.app = app
        self.runtime = runtime

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = _route(scope) if scope["type"] == "http" else None
        if route is None:
            await self.app(scope, receive, send)
            return
        headers: dict[bytes, bytes] = dict(scope["headers"])
        token = _bearer(headers.get(b"authorization"))
        org, sandbox = headers.get(b"x-gw-ims-org-id"), headers.get(b"x-sandbox-name")
        if token is None or org is None or sandbox is None or not _json(headers):
            await self.app(scope, receive, send)
            return
        body = await _body(receive) if scope["method"] == "POST" else b""
        if body is None:  # the client went away
            return
        try:
            who = await identify(self.runtime, token)
            ctx = await admit(self.runtime, who, org.decode("latin-1"),
                              sandbox.decode("latin-1"), CALL)  # fmt: skip
            reply = await route(ctx, body)
        except _Refused:
            await self.app(scope, replay(body, receive), send)
            return
        except Exception as exc:
            found = answer(exc, scope["path"])
            if found is None:
                raise
            await send_json(send, found[0], render(found[1]))
            return
        await send_json(send, reply.status, reply.text.encode(), extra=reply.headers())


class _Refused(Exception):
    """The models refused the body: the framework answers it, with every detail."""


def _parsed(model: type[M], body: bytes) -> M:
    try:
        return model.model_validate_json(body)
    except ValidationError:
        raise _Refused from None


async def _make(ctx: Context, body: bytes) -> callflow.Answer:
    return await callflow.make(ctx, _parsed(CallIn, body))


async def _batch(ctx: Context, body: bytes) -> callflow.Answer:
    return await callflow.batch(ctx, _parsed(BatchIn, body))


Route = Callable[[Context, bytes], Awaitable[callflow.Answer]]


def _route(scope: Scope) -> Route | None:
    """The route served here, or None for the framework's (``GET /v1/calls`` lists, and
    ``POST /v1/calls/{callId}:replay`` replays, there)."""
    path: str = scope["path"]
    if not path.startswith(PREFIX):
        return None
    method, rest = scope["method"], path[len(PREFIX) :]
    if method == "POST":
        return _make if rest == "" else _batch if rest == ":batch" else None
    if method == "GET" and rest.startswith("/") and len(rest) > 1 and "/" not in rest[1:]:
        call_id = rest[1:]
        scope["path_template"] = f"{PREFIX}/{{callId}}"  # for the access log: no router here

        async def get(ctx: Context, _: bytes) -> callflow.Answer:
            return await callflow.get(ctx, call_id)

        return get
    return None


def _bearer(value: bytes | None) -> str | None:
    """The token of ``Bearer <token>``; None for anything else (the framework judges it)."""
    if value is None:
        return None
    scheme, _, token = value.decode("latin-1").partition(" ")
    return token if scheme.lower() == "bearer" and token else None


def _json(headers: dict[bytes, bytes]) -> bool:
    """Whether the body is read as JSON: no content type, or a JSON one (as the framework)."""
    kind = headers.get(b"content-type")
    if kind is None:
        return True
    main = kind.split(b";", 1)[0].strip().lower()
    return main == b"application/json" or (main.startswith(b"application/")
                                           and main.endswith(b"+json"))  # fmt: skip


async def _body(receive: Receive) -> bytes | None:
    """The whole request body (read, and bounded, by :mod:`.limits`); None when the client
    disconnected."""
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)

"""How much a request may carry, checked before anything reads it.

Every request passes here first. Headers: at most :data:`MAX_HEADERS` of them and
``Settings.max_header_bytes`` in all, else 431. Body: at most ``Settings.max_request_bytes``
(``max_batch_bytes`` for ``POST /v1/calls:batch``), else 413, judged by its
``Content-Length`` before a byte is read, and while it is read when it has none. All the
bodies held at once (read, or being handled: a call waiting for its outcome holds its
request's body): at most ``Settings.max_bodies_bytes``, else 503 ``SERVER_BUSY`` with
``Retry-After``. Each answers with the JSON error model
(:mod:`~sluicegate.service.problems`). The body, read whole, is handed on to the routes;
memory for bodies is bounded by these limits. An error nothing expected, before the
answer started, is logged and answered 500 in the same model: the server's plain-text
page is never sent.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sluicegate.service.problems import Problem, advice, answer, render, unexpected
from sluicegate.settings import Settings

MAX_HEADERS = 100
BATCH_PATH = "/v1/calls:batch"
log = logging.getLogger(__name__)


class Limits:
    """ASGI: refuse what is too large, then hand the request, its body read, to ``app``."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self._body = settings.max_request_bytes
        self._batch = settings.max_batch_bytes
        self._budget = settings.max_bodies_bytes
        self._headers = settings.max_header_bytes
        self._held = 0  # bytes of the bodies of requests being read or handled

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self._batch if scope["path"] == BATCH_PATH else self._body
        try:
            _check_headers(scope, self._headers)
            body, held = await self._read(scope, receive, limit)
        except Problem as problem:
            found = answer(problem, scope["path"])
            assert found is not None
            await send_json(send, found[0], render(found[1]), close=True)
            return
        try:
            if body is not None:  # else the client went away
                await self._handle(scope, replay(body, receive), send)
        finally:
            self._held -= held

    async def _handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = False

        async def sending(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, sending)
        except Exception:
            if started:
                raise
            log.exception("%s %s failed", scope["method"], scope["path"])
            status, content = unexpected(scope["path"])
            await send_json(send, status, render(content), close=True)

    def _hold(self, size: int) -> None:
        """Take ``size`` more bytes of the budget of all bodies (503 beyond it)."""
        if self._held + size > self._budget:
            raise Problem(503, "SERVER_BUSY", "the service holds as many request bodies as "
                          "it may; try again after Retry-After")  # fmt: skip
        self._held += size

    async def _read(self, scope: Scope, receive: Receive, limit: int) -> tuple[bytes | None, int]:
        """The whole body (None if the client left), at most ``limit`` bytes (413 beyond),
        and the bytes of the budget it holds from now on: its declared length or more."""
        held = 0
        try:
            for name, value in scope["headers"]:
                if name == b"content-length" and value.isdigit():
                    declared = int(value)
                    if declared > limit:
                        raise _too_large(limit)
                    self._hold(declared)
                    held = declared
            chunks, size = [], 0
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return None, held
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > limit:
                    raise _too_large(limit)
                if size > held:  # more than it said, or no length said
                    self._hold(size - held)
                    held = size
                chunks.append(chunk)
                if not message.get("more_body", False):
                    return (chunks[0] if len(chunks) == 1 else b"".join(chunks)), held
        except BaseException:
            self._held -= held
            raise


async def send_json(send: Send, status: int, body: bytes, *, close: bool = False,
                    extra: Mapping[str, str] | None = None) -> None:  # fmt: skip
    """Answer ``body`` (JSON) with ``status``, the advice headers of that status
    (``Retry-After``) or the ``extra`` headers given instead; ``close`` the connection
    after it when the request may be left unread."""
    headers = [(b"content-type", b"application/json"),
               (b"content-length", str(len(body)).encode())]  # fmt: skip
    given = advice(status) if extra is None else extra
    headers += [(name.lower().encode(), value.encode()) for name, value in given.items()]
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _check_headers(scope: Scope, max_bytes: int) -> None:
    headers = scope["headers"]
    if len(headers) > MAX_HEADERS:
        raise Problem(
            431, "HEADERS_TOO_LARGE", f"at most {MAX_HEADERS} headers, not {len(headers)}"
        )
    size = sum(len(name) + len(value) for name, value in headers)
    if size > max_bytes:
        raise Problem(431, "HEADERS_TOO_LARGE",
                      f"at most {max_bytes:,} bytes of headers, not {size:,}")  # fmt: skip


def _too_large(limit: int) -> Problem:
    return Problem(413, "PAYLOAD_TOO_LARGE", f"the request body may be at most {limit:,} bytes")


def replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that gives ``body`` once, then what ``receive`` gives."""
    sent = False

    async def again() -> Message:
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return again
